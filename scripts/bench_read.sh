#!/usr/bin/env bash
# make bench-read: venv, services, then the read-side benchmark (scripts/bench_read.py):
# projection, rebuild of 1,000,000 events, GET latencies, beside the raw ceilings.
# ARGS="..." passes its options, e.g. make bench-read ARGS="--write-docs".
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
ensure_services
say "read-side benchmark (scripts/bench_read.py $*)"
exec "$PY" scripts/bench_read.py "$@"
