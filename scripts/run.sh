#!/usr/bin/env bash
# make run: venv, services, migrations, then the supervised processes (python -m app dev).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
ensure_services
export APP_ENV="${APP_ENV:-dev}"
say "migrating (python -m app migrate)"
"$PY" -m app migrate
say "starting the processes (python -m app dev); Ctrl-C stops them"
exec "$PY" -m app dev
