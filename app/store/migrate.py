"""Numbered SQL migrations: create the database, apply what is pending, report status.

The files are ``app/store/migrations/NNNN_name.sql``, numbered 1..n without gaps.
Each is applied in its own transaction and recorded in ``schema_migrations`` with a
SHA-256 checksum; an applied file is never edited (write a new migration instead), and
a changed checksum stops ``migrate`` before anything else is applied, because the
database would no longer be what the files say it is.

Two processes may migrate at once (two servers starting, ``make run`` and a test):
the whole run holds a session advisory lock, so the second waits and then finds
nothing pending.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from app.store._errors import translate_errors

__all__ = [
    "LATEST",
    "Migration",
    "MigrationError",
    "ensure_database",
    "migrate",
    "migrations",
    "schema_status",
]

# pg_advisory_lock key for "someone is migrating this database" ('atlm' in ASCII).
_LOCK_KEY: Final = 0x61746C6D
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# A migration waiting this long for a table lock fails instead of stalling every
# writer queued behind it; rerun it when the database is quieter.
_LOCK_TIMEOUT: Final = "15s"

_CREATE_LEDGER: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    number      integer     PRIMARY KEY,
    name        text        NOT NULL UNIQUE,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The migration files or the database's record of them are inconsistent."""


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str  # the file name without ".sql", e.g. "0001_schema"
    sql: str
    checksum: str  # SHA-256 hex of the file's bytes


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """The migration files in order; raises ``MigrationError`` on a gap or a bad name."""
    folder = resources.files("app.store") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"bad migration file name {entry.name!r} (want NNNN_name.sql)")
        data = entry.read_bytes()
        found.append(
            Migration(
                number=int(match.group(1)),
                name=entry.name.removesuffix(".sql"),
                sql=data.decode("utf-8"),
                checksum=hashlib.sha256(data).hexdigest(),
            )
        )
    found.sort(key=lambda m: m.number)
    for expected, migration in enumerate(found, start=1):
        if migration.number != expected:
            raise MigrationError(f"migration {expected:04d} is missing (found {migration.name})")
    return tuple(found)


LATEST: Final[int] = len(migrations())


def database_name(dsn: str) -> str:
    """The database a ``postgresql://`` DSN names (path, or ``dbname``/``database``)."""
    parts = urlsplit(dsn)
    name = unquote(parts.path.lstrip("/"))
    if not name:
        query = parse_qs(parts.query)
        name = (query.get("dbname") or query.get("database") or [""])[0]
    if not name:
        raise MigrationError(f"the DSN names no database: {_redact(dsn)}")
    return name


async def ensure_database(dsn: str) -> bool:
    """Create the DSN's database when it does not exist; True when it was created.

    Connects to the same server's ``postgres`` database to do it. Losing a race with
    another process creating it counts as "already there".
    """
    name = database_name(dsn)
    with translate_errors("ensure_database"):
        conn = await asyncpg.connect(dsn, database="postgres")
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if exists:
                return False
            try:
                await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                # Lost the race to another creator: the catalog's unique index on the
                # name can fire before the friendlier duplicate-database check.
                return False
            return True
        finally:
            await conn.close()


async def migrate(dsn: str, *, upto: int | None = None) -> list[str]:
    """Apply the pending migrations in order; return the names applied (maybe none).

    ``upto`` stops after that migration number (a database at an older schema, as the
    tests of a migration over existing data need); by default every file is applied.
    Raises ``MigrationError`` when an applied migration's checksum differs from its
    file, and ``Unavailable`` when the database cannot be reached.
    """
    with translate_errors("migrate"):
        conn = await asyncpg.connect(dsn)
        try:
            return await _migrate(conn, LATEST if upto is None else upto)
        finally:
            await conn.close()


async def _migrate(conn: asyncpg.Connection, upto: int) -> list[str]:
    # A session-level lock, released when migrate() closes the connection, whatever
    # happened in between. Everything below, creating the ledger table included, runs
    # under it (two concurrent CREATE TABLE IF NOT EXISTS can collide on the catalog).
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    await conn.execute(_CREATE_LEDGER)
    rows = await conn.fetch("SELECT number, name, checksum FROM schema_migrations")
    applied = {int(row["number"]): (str(row["name"]), str(row["checksum"])) for row in rows}
    known = migrations()
    for migration in known:
        record = applied.get(migration.number)
        if record is not None and record != (migration.name, migration.checksum):
            raise MigrationError(
                f"migration {migration.name} was applied as {record[0]} with checksum "
                f"{record[1][:12]}..., the file now has {migration.checksum[:12]}...: "
                "applied migrations must never change; write a new one"
            )
    done: list[str] = []
    for migration in known:
        if migration.number in applied or migration.number > upto:
            continue
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (number, name, checksum) VALUES ($1, $2, $3)",
                migration.number,
                migration.name,
                migration.checksum,
            )
        done.append(migration.name)
    return done


async def schema_status(conn: Any) -> tuple[int, int]:
    """``(applied, known)``: migrations recorded in the database and files in this
    build. ``/readyz`` wants ``applied == known``. ``conn`` is an asyncpg connection
    or pool (anything with ``fetchval``)."""
    with translate_errors("schema_status"):
        table = await conn.fetchval("SELECT to_regclass('schema_migrations')")
        applied = 0
        if table is not None:
            applied = int(await conn.fetchval("SELECT count(*) FROM schema_migrations"))
    return applied, LATEST


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    return dsn.replace(f":{parts.password}@", ":***@", 1)
