#!/usr/bin/env bash
# PostgreSQL and Redis for development and tests; see scripts/services.py.
#   scripts/services.sh [start]   print `export DATABASE_URL=...` and `export REDIS_URL=...`
#                                 (eval "$(scripts/services.sh)" to use them)
#   scripts/services.sh stop      stop the project-local instances under .data/
#   scripts/services.sh status    say which project-local instances run
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
exec "$PY" "$ROOT/scripts/services.py" "${1:-start}"
