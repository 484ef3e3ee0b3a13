"""Plans made on a new store, kept as it grows.

A prepared statement keeps the generic plan it was given after its first runs (and the
followers' force it from the first), made from the statistics of that moment. On a new
store, whose tables migration 0006 analyzed empty, the cheapest plan of every read of
``events`` is a sequential scan and a sort; kept, it reads the whole table (or a whole
partition) on every call as the log grows, until an ``ANALYZE`` replans it, which with
autovacuum off never comes. The servers' sessions (the pool of app/store/pool.py, the
followers of app/store/follow.py, the workers' lease connection) leave the indexes as
the only way to read. Each test makes the plans on a freshly migrated, empty, analyzed
store, appends 300 events, and reads the plans it kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from app.store._rows import EVENT_COLUMNS
from app.store.follow import READ, SESSION
from app.store.migrate import ensure_database, migrate
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from tests.contract.helpers import create_doc, request

# The hot reads of events on the servers' pool: a document's events after a version
# (PostgresStore.read_stream: catch-up, write models), before one (the worker's
# replay), the log by position (read_log), the lag's probe by position.
POOL_READS = {
    "read_stream": (
        f"SELECT {EVENT_COLUMNS} FROM events WHERE doc_id = $1 AND v > $2 ORDER BY v LIMIT $3",
        "(text, bigint, bigint)",
        "('d1', 0, 5)",
        "('d1', 250, 10)",
    ),
    "before_v": (
        f"SELECT {EVENT_COLUMNS} FROM events WHERE doc_id = $1 AND v < $2 ORDER BY v",
        "(text, bigint)",
        "('d1', 2)",
        "('d1', 10)",
    ),
    "read_log": (
        f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
        "(bigint, bigint)",
        "(0, 500)",
        "(250, 500)",
    ),
    "at_positions": (
        "SELECT position, atelier_ms(ts) AS ts FROM events WHERE position = ANY($1::bigint[])",
        "(bigint[])",
        "(ARRAY[1]::bigint[])",
        "(ARRAY[250]::bigint[])",
    ),
}


@pytest.fixture
async def new_store(scratch_dsn: Callable[[], str]) -> AsyncIterator[str]:
    """A migrated store whose statistics say every table is empty."""
    dsn = scratch_dsn()
    await ensure_database(dsn)
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    yield dsn


async def _grow(dsn: str) -> None:
    """One document of 301 events, appended after the plans were made; no ANALYZE."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        store = PostgresStore(pool)
        await create_doc(store, "d1")
        for v in range(1, 300, 50):
            await store.append([request("d1", v + k) for k in range(50)])
    finally:
        await pool.close()


async def _kept_plan(conn: asyncpg.Connection, name: str, args: str) -> str:
    return "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN EXECUTE {name}{args}"))


async def test_the_pool_keeps_index_plans(new_store: str) -> None:
    pool = await create_pool(new_store, 1, min_size=1)
    try:
        async with pool.acquire() as conn:
            for name, (sql, types, early, _) in POOL_READS.items():
                await conn.execute(f"PREPARE {name}{types} AS {sql}")
                for _ in range(10):  # past plan_cache_mode = auto's five custom plans
                    await conn.execute(f"EXECUTE {name}{early}")
            await _grow(new_store)
            plans = {
                name: await _kept_plan(conn, name, late)
                for name, (_, _, _, late) in POOL_READS.items()
            }
            for name in POOL_READS:
                await conn.execute(f"DEALLOCATE {name}")
    finally:
        await pool.close()
    for name, plan in plans.items():
        assert "Seq Scan" not in plan, (name, plan)
        assert "Index" in plan, (name, plan)


async def test_the_followers_session_keeps_index_plans(new_store: str) -> None:
    # A session as the follower opens it (its statement is prepared by asyncpg, unnamed
    # to SQL; this one is named, in the same plan cache under the same settings).
    conn = await asyncpg.connect(new_store, server_settings=SESSION)
    try:
        await conn.execute(f"PREPARE follow(bigint, bigint) AS {READ}")
        assert await conn.fetch("EXECUTE follow(0, 500)") == []  # planned now, generic
        await _grow(new_store)
        assert len(await conn.fetch("EXECUTE follow(0, 500)")) == 301
        plan = await _kept_plan(conn, "follow", "(300, 500)")
    finally:
        await conn.close()
    assert "Seq Scan" not in plan, plan
    assert plan.count("Index Scan using events_p") == 16, plan


async def test_a_query_that_can_only_scan_is_not_compiled(new_store: str) -> None:
    """With sequential scans off, a query with no index to take (the store's one-row
    tables, read by every follower as it connects) still scans, priced at PostgreSQL's
    "disabled" cost, which is over every JIT threshold: compiled, it took 140-200 ms
    instead of 0.2. The servers' sessions run without JIT. (On a server built without
    JIT this cannot show the difference.)"""
    meta = "SELECT m.store_id::text, m.epoch, h.last_position FROM store_meta AS m, log_head AS h"
    pool = await create_pool(new_store, 1, min_size=1)
    follower = await asyncpg.connect(new_store, server_settings=SESSION)
    try:
        for session in (pool, follower):
            plan = "\n".join(r[0] for r in await session.fetch(f"EXPLAIN (ANALYZE) {meta}"))
            assert "Seq Scan" in plan, plan  # the only way, so taken
            assert "JIT" not in plan, plan
    finally:
        await follower.close()
        await pool.close()
