"""The migration runner: create, apply once, in order, safely in parallel, never edited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from app.store.migrate import (
    LATEST,
    MigrationError,
    database_name,
    ensure_database,
    migrate,
    migrations,
    schema_status,
)

NAMES = [m.name for m in migrations()]


def test_the_files_are_numbered_without_gaps() -> None:
    assert LATEST == len(NAMES) >= 2
    assert [m.number for m in migrations()] == list(range(1, LATEST + 1))
    assert NAMES[0] == "0001_schema"


def test_database_name_from_a_dsn() -> None:
    assert database_name("postgresql://u:p@h:5432/atelier?sslmode=disable") == "atelier"
    assert database_name("postgresql://h/odd%20name") == "odd name"
    assert database_name("postgresql://h/?dbname=other") == "other"
    with pytest.raises(MigrationError, match="names no database"):
        database_name("postgresql://u:secret@h:5432")


async def test_create_migrate_and_rerun(scratch_dsn: Callable[[], str]) -> None:
    dsn = scratch_dsn()
    assert await ensure_database(dsn) is True
    assert await ensure_database(dsn) is False
    conn = await asyncpg.connect(dsn)
    try:
        assert await schema_status(conn) == (0, LATEST)
        assert await migrate(dsn) == NAMES
        assert await migrate(dsn) == []
        assert await schema_status(conn) == (LATEST, LATEST)
        rows = await conn.fetch("SELECT name, checksum, applied_at FROM schema_migrations")
        assert [r["name"] for r in rows] == NAMES
        assert all(len(r["checksum"]) == 64 and r["applied_at"] for r in rows)
        # The schema it made is the one the store expects.
        assert await conn.fetchval("SELECT last_position FROM log_head") == 0
        assert await conn.fetchval("SELECT epoch FROM store_meta") == 1
    finally:
        await conn.close()


async def test_two_processes_migrating_at_once(scratch_dsn: Callable[[], str]) -> None:
    dsn = scratch_dsn()
    await ensure_database(dsn)
    results = await asyncio.gather(*(migrate(dsn) for _ in range(3)))
    assert sorted(results, key=len) == [[], [], NAMES]
    conn = await asyncpg.connect(dsn)
    try:
        assert await schema_status(conn) == (LATEST, LATEST)
    finally:
        await conn.close()


async def test_two_processes_creating_the_database_at_once(
    scratch_dsn: Callable[[], str],
) -> None:
    dsn = scratch_dsn()
    created = await asyncio.gather(*(ensure_database(dsn) for _ in range(3)))
    assert sorted(created) == [False, False, True]


async def test_an_edited_migration_is_refused(scratch_dsn: Callable[[], str]) -> None:
    dsn = scratch_dsn()
    await ensure_database(dsn)
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE number = 1")
        with pytest.raises(MigrationError, match=r"0001_schema.*must never change"):
            await migrate(dsn)
        # A missing later migration is not applied past the mismatch either.
        await conn.execute("DELETE FROM schema_migrations WHERE number = $1", LATEST)
        with pytest.raises(MigrationError):
            await migrate(dsn)
        assert await schema_status(conn) == (LATEST - 1, LATEST)
    finally:
        await conn.close()
