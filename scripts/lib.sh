# Shared by the scripts in this folder: `source "$(dirname "$0")/lib.sh"`.
# Puts the shell in the project root and defines say, die, ensure_venv, ensure_services.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The virtualenv, created and installed when missing or when pyproject.toml changed.
ensure_venv() { "$ROOT/scripts/install.sh"; }

# PostgreSQL and Redis that answer, started when needed; exports DATABASE_URL, REDIS_URL.
ensure_services() {
    local exports
    exports="$("$PY" "$ROOT/scripts/services.py" start)" || die "could not settle on PostgreSQL and Redis (see above)"
    eval "$exports"
    say "DATABASE_URL=$DATABASE_URL"
    say "REDIS_URL=$REDIS_URL"
}

# Chromium for the browser tests (tests/browser): the system's package, never a browser
# download of Playwright's own. When it is missing: as root on a Debian-like system,
# `apt-get install -y chromium`; otherwise a line saying what to install (the browser
# tests then fail, saying the same: they never skip).
ensure_browser() {
    if [[ -n "${ATELIER_CHROMIUM:-}" ]]; then
        return 0
    fi
    local name
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$name" >/dev/null 2>&1; then
            return 0
        fi
    done
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing Debian's chromium for the browser tests (apt-get install -y chromium)"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
            apt-get update -qq >/dev/null 2>&1 || true
            apt-get install -y -qq chromium >/dev/null ||
                say "could not install chromium: the browser tests will fail"
        fi
    else
        say "Chromium is not installed: the browser tests need it (Debian/Ubuntu: sudo apt-get install chromium; or set ATELIER_CHROMIUM=/path/to/chrome)"
    fi
}
