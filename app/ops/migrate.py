"""``python -m app migrate``: create the database if it is missing, then apply migrations.

The work is ``app.store.migrate``'s (numbered SQL files under an advisory lock); this
runner only reports what happened, in words an operator can act on.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from app.config import Settings
from app.errors import AppError
from app.store.migrate import MigrationError, ensure_database, migrate

__all__ = ["redact", "run"]


def redact(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***``, fit for a log line or a message."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def _apply(dsn: str) -> tuple[bool, list[str]]:
    created = await ensure_database(dsn)
    applied = await migrate(dsn)
    return created, applied


def run(settings: Settings, *, out: TextIO | None = None) -> int:
    """Bring the database at ``settings.database_url`` to the latest schema."""
    out = out or sys.stdout
    dsn = settings.database_url
    database = urlsplit(dsn).path.lstrip("/") or "(default)"
    try:
        created, applied = asyncio.run(_apply(dsn))
    except (OSError, TimeoutError, AppError, MigrationError) as exc:
        print(
            f"atelier: cannot migrate the database at {redact(dsn)} (DATABASE_URL): {exc}",
            file=sys.stderr,
        )
        return 1
    if created:
        print(f"created database {database}", file=out)
    for name in applied:
        print(f"applied {name}", file=out)
    if not applied:
        print(f"database {database} is up to date", file=out)
    return 0
