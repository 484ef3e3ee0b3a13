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
