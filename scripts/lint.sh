#!/usr/bin/env bash
# Static checks (CI runs them before the tests): formatting and style with ruff, types with mypy, and the import
# structure with import-linter (no cycles; the layers cli > use cases > registry > modalities > engine > core; vision and
# text independent; no timm, transformers, torchvision or PIL in the engine and the core), and size limits (scripts/check_size.py).
# Settings: pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff format --check src tests benchmarks scripts examples
.venv/bin/ruff check src tests benchmarks scripts examples
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
.venv/bin/python scripts/check_size.py
