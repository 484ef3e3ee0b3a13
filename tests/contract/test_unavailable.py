"""When PostgreSQL cannot answer, the store says ``Unavailable`` and writes nothing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import asyncpg
import pytest

from app.errors import Unavailable
from app.store.follow import LogFollower
from app.store.migrate import ensure_database, migrate
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from tests.contract.helpers import (
    assert_log_consistent,
    create_doc,
    request,
    wait_for_lock_waiters,
)


@pytest.fixture
def closed_port_dsn() -> Iterator[str]:
    """A DSN whose port refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        yield f"postgresql://postgres@127.0.0.1:{port}/atelier"


async def test_unreachable_server(closed_port_dsn: str) -> None:
    with pytest.raises(Unavailable) as caught:
        await create_pool(closed_port_dsn, 2)
    assert isinstance(caught.value.__cause__, OSError)
    for attempt in (ensure_database(closed_port_dsn), migrate(closed_port_dsn)):
        with pytest.raises(Unavailable):
            await attempt
    with pytest.raises(Unavailable):
        await LogFollower(closed_port_dsn).connect()


async def test_every_store_call_maps_a_dead_pool_to_unavailable(closed_port_dsn: str) -> None:
    pool = await create_pool(closed_port_dsn, 2, min_size=0)  # connects lazily
    store = PostgresStore(pool)
    try:
        calls = [
            store.append([request("d1", 1, "op")]),
            create_doc(store, "d1"),
            store.get_document("d1"),
            store.find_op("d1", "alice", "op"),
            store.read_stream("d1"),
            store.head(),
            store.read_log(0, 10),
            store.put_asset("0" * 64, "x", b""),  # hashed first: Invalid, not Unavailable
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert [type(o).__name__ for o in outcomes[:-1]] == ["Unavailable"] * (len(calls) - 1)
        assert type(outcomes[-1]).__name__ == "Invalid"
    finally:
        await pool.close()


async def test_a_connection_killed_mid_append_commits_nothing(
    store: PostgresStore, pg_dsn: str
) -> None:
    """The appender waits on a document lock held elsewhere; its backend is terminated.
    The caller gets Unavailable, nothing of its batch is stored, and the log goes on
    without a hole."""
    await create_doc(store, "d1")
    await create_doc(store, "d2")
    holder, admin = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM documents WHERE id = 'd1' FOR UPDATE")
        doomed = asyncio.create_task(
            store.append([request("d2", 1, "d2-op"), request("d1", 1, "d1-op")])
        )
        await wait_for_lock_waiters(admin, 1)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        with pytest.raises(Unavailable):
            await doomed
        await tx.rollback()
        assert await store.find_op("d2", "alice", "d2-op") is None
        assert await store.head() == 2
        # The client retries with the same op ids: stored once, densely.
        results = await store.append([request("d2", 1, "d2-op"), request("d1", 1, "d1-op")])
        assert [(r.status, r.position) for r in results] == [("ok", 3), ("ok", 4)]
        assert await assert_log_consistent(store.pool) == 4
    finally:
        await holder.close()
        await admin.close()


async def test_lock_timeout_bounds_the_wait_on_a_stuck_writer(pg_clean: str) -> None:
    pool = await create_pool(pg_clean, 2, server_settings={"lock_timeout": "200ms"})
    store = PostgresStore(pool)
    holder = await asyncpg.connect(pg_clean)
    try:
        await create_doc(store, "d1")
        tx = holder.transaction()
        await tx.start()
        await holder.execute("UPDATE log_head SET last_position = last_position")  # stuck
        with pytest.raises(Unavailable) as caught:
            await store.append([request("d1", 1, "op")])
        assert isinstance(caught.value.__cause__, asyncpg.LockNotAvailableError)
        await tx.rollback()
        [result] = await store.append([request("d1", 1, "op")])
        assert (result.status, result.position) == ("ok", 2)
    finally:
        await holder.close()
        await pool.close()
