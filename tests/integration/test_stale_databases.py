"""The test suite's own hygiene: a killed session's throwaway database is dropped by a
later session, and nothing in use or recent is (tests/conftest.py)."""

from __future__ import annotations

import time
import uuid

import asyncpg

from tests.conftest import STALE_AFTER, drop_stale_databases, throwaway_name, with_database


async def test_only_old_unused_throwaway_databases_are_dropped(pg_admin_dsn: str) -> None:
    now = time.time()
    old = f"atelier_test_{int(now - STALE_AFTER - 60):08x}_{uuid.uuid4().hex[:8]}"
    old_in_use = f"atelier_test_{int(now - STALE_AFTER - 60):08x}_{uuid.uuid4().hex[:8]}"
    recent = throwaway_name()
    other = f"atelier_test_other_{uuid.uuid4().hex[:8]}"  # not of this form: never touched
    names = [old, old_in_use, recent, other]
    admin = await asyncpg.connect(pg_admin_dsn)
    user = None
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        user = await asyncpg.connect(with_database(pg_admin_dsn, old_in_use))
        dropped = await drop_stale_databases(pg_admin_dsn, now)
        left = {
            row["datname"]
            for row in await admin.fetch(
                "SELECT datname FROM pg_database WHERE datname = ANY($1)", names
            )
        }
        assert old in dropped and old not in left
        assert {old_in_use, recent, other} <= left
        assert not {old_in_use, recent, other} & set(dropped)
    finally:
        if user is not None:
            await user.close()
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
