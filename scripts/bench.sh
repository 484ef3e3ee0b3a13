#!/usr/bin/env bash
# make bench: venv, services, then the write-side benchmark (scripts/bench_write.py).
# ARGS="..." passes its options, e.g. make bench ARGS="--seconds 10 --write-docs".
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
ensure_services
say "write-side benchmark (scripts/bench_write.py $*)"
exec "$PY" scripts/bench_write.py "$@"
