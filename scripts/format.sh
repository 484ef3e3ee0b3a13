#!/usr/bin/env bash
# make format: rewrite the code the way `make check` wants it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
"$VENV/bin/ruff" format app tests
"$VENV/bin/ruff" check --fix app tests
