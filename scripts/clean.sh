#!/usr/bin/env bash
# make clean: remove caches and build leftovers. Keeps .venv and .data (the
# project-local databases); `make services-stop && rm -rf .data .venv` resets everything.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache .coverage htmlcov build dist ./*.egg-info
find app tests scripts -name __pycache__ -type d -prune -exec rm -rf {} +
say "removed caches (.venv and .data kept)"
