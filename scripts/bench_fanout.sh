#!/usr/bin/env bash
# make bench-fanout: venv, services, then the real-time fan-out benchmark
# (scripts/bench_fanout.py). ARGS="..." passes its options, e.g.
# make bench-fanout ARGS="--seconds 10 --viewers-scale 0.2" or ARGS="--write-docs".
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
ensure_services
say "fan-out benchmark (scripts/bench_fanout.py $*)"
exec "$PY" scripts/bench_fanout.py "$@"
