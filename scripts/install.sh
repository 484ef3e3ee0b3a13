#!/usr/bin/env bash
# Create .venv with python3.11 and install the project into it (pip install -e '.[dev]').
# The install is skipped while pyproject.toml is unchanged since the last one (a stamp
# file in .venv records its hash). PYTHON=/path/to/python3.11 picks another interpreter.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

STAMP="$VENV/.installed-pyproject"
if command -v sha256sum >/dev/null 2>&1; then
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
else  # macOS
    want="$(shasum -a 256 pyproject.toml | cut -d' ' -f1)"
fi

is_311() { "$1" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }

if [[ -x "$PY" ]] && ! is_311 "$PY"; then
    say "$VENV is not a working Python 3.11 virtualenv; creating it again"
    rm -rf "$VENV"
fi

if [[ ! -x "$PY" ]]; then
    python="${PYTHON:-python3.11}"
    if ! command -v "$python" >/dev/null 2>&1 || ! is_311 "$python"; then
        die "Python 3.11 is needed and \`$python\` is not it. Install it:
    Debian/Ubuntu:  sudo apt-get install python3.11 python3.11-venv
    Fedora/RHEL:    sudo dnf install python3.11
    macOS:          brew install python@3.11
    any system:     pyenv install 3.11
or run again with PYTHON=/path/to/python3.11"
    fi
    say "creating $VENV with $(command -v "$python")"
    "$python" -m venv "$VENV" || die "\`$python -m venv\` failed; on Debian/Ubuntu install python3.11-venv"
fi

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi
say "installing the project into .venv (pip install -e '.[dev]')"
# -qq: only errors; a machine's pip configuration can be chatty (missing local indexes).
"$PY" -m pip install --disable-pip-version-check --no-input -qq -e '.[dev]'
echo "$want" > "$STAMP"
say "installed; pyproject.toml hash recorded in ${STAMP#"$ROOT"/}"
