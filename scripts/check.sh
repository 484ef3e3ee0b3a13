#!/usr/bin/env bash
# make check: formatting, lint, types and import contracts; fails on the first problem.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
BIN="$VENV/bin"
say "ruff format --check"
"$BIN/ruff" format --check app tests
say "ruff check app tests"
"$BIN/ruff" check app tests
say "mypy --strict app"
"$BIN/mypy" --strict app
say "import contracts (lint-imports)"
"$BIN/lint-imports"
