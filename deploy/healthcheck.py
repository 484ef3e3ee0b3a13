"""The image's HEALTHCHECK: GET /healthz on the port of the command this container runs.

One image runs every Atelier process, each answering /healthz on its own port:

    serve        APP_PORT                  (default 8000)
    relay        RELAY_METRICS_PORT        (default 9101)
    snapshotter  SNAPSHOTTER_METRICS_PORT  (default 9102)
    worker       WORKER_METRICS_PORT       (default 9103)

The command is read from PID 1's argv (``python -m app relay``, or behind an init such
as ``docker-init -- python -m app relay``). A command that serves nothing (migrate,
token, settings) or a listener turned ``off`` has nothing to check: exit 0. Exit 1 when
/healthz does not answer 200 within the timeout. Standard library only: the slim image
has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence

# command -> (setting naming its port, that setting's default in app/config.py)
PORTS: dict[str, tuple[str, str]] = {
    "serve": ("APP_PORT", "8000"),
    "relay": ("RELAY_METRICS_PORT", "9101"),
    "snapshotter": ("SNAPSHOTTER_METRICS_PORT", "9102"),
    "worker": ("WORKER_METRICS_PORT", "9103"),
}
# command -> setting naming the address it binds (its default: 127.0.0.1)
HOSTS: dict[str, str] = {"serve": "APP_HOST"}
_ANY = {"", "0.0.0.0", "127.0.0.1", "localhost"}
TIMEOUT = 2.5


def command_of(argv: Sequence[str]) -> str | None:
    """The Atelier command in ``argv`` (the first word after ``app``), or None."""
    words = list(argv)
    for i, word in enumerate(words[:-1]):
        if word == "app" or word.endswith("/atelier"):
            return words[i + 1]
    return None


def health_url(command: str | None, env: Mapping[str, str]) -> str | None:
    """The /healthz URL of ``command`` under ``env``; None when there is nothing to check."""
    if command not in PORTS:
        return None
    name, default = PORTS[command]
    raw = (env.get(name) or default).strip()
    if not raw.isdigit() or int(raw) == 0:  # off (no listener), any free port, or bad
        return None
    host = (env.get(HOSTS.get(command, "METRICS_HOST")) or "").strip()
    if host in _ANY:
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{int(raw)}/healthz"


def _pid1_argv() -> list[str]:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def main() -> int:
    url = health_url(command_of(_pid1_argv()), os.environ)
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
