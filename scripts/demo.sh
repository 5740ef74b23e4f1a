#!/usr/bin/env bash
# Set up, then fine-tune EfficientNet-Lite0 (offline ImageNet weights) on Fashion-MNIST with 20
# training images per class with the default recipe; prints the test accuracy on the
# official 10k test images and the run folder. Extra arguments go to `tunelab fit`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tunelab fit examples/default.yaml "$@"
