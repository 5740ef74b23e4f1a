#!/usr/bin/env bash
# Set up, then run the test suite (unit tests on tiny models, end-to-end tests on the real
# offline assets). Extra arguments go to pytest, e.g. `-m "not e2e"` for the fast part only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
