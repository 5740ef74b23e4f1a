#!/usr/bin/env bash
# Static checks (CI runs them before the tests): formatting and style with ruff, types with mypy, and the import
# structure with import-linter (no cycles; the engine imports no modality), and size limits (scripts/check_size.py).
# Settings: pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff format --check src tests benchmarks scripts examples
.venv/bin/ruff check src tests benchmarks scripts examples
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
.venv/bin/python scripts/check_size.py
