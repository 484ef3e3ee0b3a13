"""PostgreSQL's own tools for ``backup`` and ``restore-drill``: find them, run them.

The binaries are looked up on PATH, then under /usr/lib/postgresql/*/bin (newest
first). A server will not run as root, so as root the scratch cluster of a drill
belongs to the ``postgres`` system user and ``pg_ctl`` runs through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["as_server_user", "find_pg_bin", "free_port", "initdb_argv", "with_host_port"]


def find_pg_bin(name: str) -> str:
    """The path of PostgreSQL's ``name`` (``pg_basebackup``, ``pg_ctl``...)."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = shutil.which(name) or (candidates[0] if candidates else None)
    if found is None:
        raise FileNotFoundError(
            f"{name} not found on PATH nor under /usr/lib/postgresql/*/bin:"
            " install PostgreSQL's client and server binaries (e.g. postgresql-15)"
        )
    return found


def as_server_user() -> list[str]:
    """The prefix that runs a server command as ``postgres`` when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"]
    return []


def initdb_argv(data: Path) -> list[str]:
    """``initdb`` for a scratch cluster in ``data``: superuser ``postgres``, trust
    authentication (it listens on loopback only), UTF8, no fsync of the new files."""
    return [
        find_pg_bin("initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=trust",
        "--no-sync",
        "-E",
        "UTF8",
    ]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_host_port(dsn: str, host: str, port: int) -> str:
    """``dsn`` with another host and port, same user, password, database and query."""
    parts = urlsplit(dsn)
    netloc = ""
    if parts.username is not None:
        netloc = parts.username
        if parts.password is not None:
            netloc += f":{parts.password}"
        netloc += "@"
    netloc += f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))
