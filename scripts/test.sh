#!/usr/bin/env bash
# make test and its variants. Without options: venv, services, Chromium for the browser
# tests (ensure_browser), `make check`, then the whole pytest suite against the real
# services. Options:
#   --unit    tests/unit only: no services, no check
#   --debug   the whole suite with PYTHONASYNCIODEBUG=1 (asyncio debug mode)
#   --cov     the whole suite under coverage, with branches; report in the terminal
#             (no check: it is a report, not a gate)
# Anything after the options goes to pytest (e.g. scripts/test.sh -- -k token).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mode=all debug=0 cov=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --unit) mode=unit ;;
        --debug) debug=1 ;;
        --cov) cov=1 ;;
        --) shift; break ;;
        *) break ;;
    esac
    shift
done

ensure_venv
if [[ $mode == unit ]]; then
    paths=(tests/unit)
else
    ensure_services
    ensure_browser
    if [[ $cov == 0 ]]; then
        "$ROOT/scripts/check.sh"
    fi
    paths=()
fi

# Debug mode slows asyncio down a lot; it is on only when asked for.
unset PYTHONASYNCIODEBUG
prefix=""
if [[ $debug == 1 ]]; then
    export PYTHONASYNCIODEBUG=1
    prefix="PYTHONASYNCIODEBUG=1 "
fi

if [[ $cov == 1 ]]; then
    runner=("$PY" -m coverage run -m pytest)
else
    runner=("$PY" -m pytest)
fi
say "${prefix}${runner[*]##*/} -q${paths[*]+ ${paths[*]}}${*:+ $*}"
set +e
"${runner[@]}" -q ${paths[@]+"${paths[@]}"} "$@"
status=$?
set -e
if [[ $status == 5 ]]; then
    die "pytest collected no tests: that is a failure, not a pass"
fi
if [[ $status == 0 && $cov == 1 ]]; then
    "$PY" -m coverage report
fi
exit "$status"
