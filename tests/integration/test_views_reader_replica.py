"""The read side's queries on a streaming replica (``pg_replica``: a primary and a hot
standby of it): the views read on the replica after its replay are the primary's;
time travel answers a version the replica has not replayed yet from the primary's
events; ``ReadPool`` falls back to the primary while the replica cannot answer and
tries it again later; ``ReadWatch`` with ``ReplicaReplay`` wakes a waiter when the
replica has replayed the batch the primary notified, not before (its re-check is set
far beyond the test's timings, so only the replay can wake it this soon)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.command import CommandHandler
from app.domain import Document
from app.errors import Timeout
from app.ops.pgtools import free_port
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from app.store.readpool import ReadPool
from app.views.project import fold
from app.views.reader import ReadViews
from app.views.replay import ReplicaReplay
from app.views.timetravel import ReplicaStreams, TimeTravel
from app.views.watch import ReadWatch
from app.views.writer import catch_up
from tests.support.pgreplica import ReplicaPair
from tests.support.worker import create_docs, workload


@pytest.fixture(scope="module")
def pg_dsn(pg_replica: ReplicaPair) -> str:
    return pg_replica.primary_url


@pytest.fixture
async def replica(pg_replica: ReplicaPair, pg_clean: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(pg_replica.replica_url, 4)
    try:
        yield pool
    finally:
        await pool.close()
        await pg_replica.resume_replay()


async def test_the_replicas_views_are_the_primarys_once_replayed(
    handler: CommandHandler, store: PostgresStore, replica: asyncpg.Pool, pg_replica: ReplicaPair
) -> None:
    docs = ["d1", "d2", "d3"]
    await create_docs(handler, docs)
    await workload(handler, docs, 60, seed=2)
    await store.set_member("d2", "bob", "viewer")
    await catch_up(store.pool)
    await pg_replica.replayed()
    primary, standby = ReadViews(store.pool), ReadViews(replica)
    assert await replica.fetchval("SELECT pg_is_in_recovery()")
    assert await standby.catalog("alice", 10) == await primary.catalog("alice", 10)
    assert [e.id for e in await standby.catalog("bob", 10)] == ["d2"]
    for doc in docs:
        assert await standby.state(doc) == await primary.state(doc)
        assert await standby.activity(doc, 5) == await primary.activity(doc, 5)
    # Replay paused: the primary moves on, the replica's views stay where they were.
    await pg_replica.pause_replay()
    replayed = await standby.version("d1")
    await workload(handler, ["d1"], 10, seed=3)
    await catch_up(store.pool)
    events = await store.read_stream("d1")
    head = events[-1].v
    assert replayed is not None and replayed < head == await primary.version("d1")
    assert await standby.version("d1") == replayed
    # Time travel on the replica: its bases, and the primary's events past its own.
    travel = TimeTravel(standby, ReplicaStreams(PostgresStore(replica), store))
    for v in (1, replayed, replayed + 1, head):
        assert await travel.state_at("d1", v) == fold(Document("d1"), events[:v]).state, v


async def test_the_read_pool_falls_back_to_the_primary_and_tries_the_replica_again(
    store: PostgresStore, replica: asyncpg.Pool
) -> None:
    now = [0.0]
    absent = await create_pool(
        f"postgresql://postgres@127.0.0.1:{free_port()}/atelier", 2, min_size=0
    )
    try:
        reads = ReadPool(absent, store.pool, retry_after=5.0, clock=lambda: now[0])
        assert await reads.fetchval("SELECT pg_is_in_recovery()") is False  # the primary
        assert reads.replica_down and reads.fallbacks == 1
        now[0] = 4.9
        assert await reads.fetchrow("SELECT 1 AS one") is not None
        assert reads.fallbacks == 2
        now[0] = 5.1  # tried again, still down: the primary again, for 5 s more
        assert await reads.fetch("SELECT 1") is not None
        assert reads.fallbacks == 3 and reads.replica_down
        # A bug is not an outage: it propagates, and the primary is not asked.
        healthy = ReadPool(replica, store.pool)
        with pytest.raises(asyncpg.PostgresSyntaxError):
            await healthy.fetchval("SELEC 1")
        assert await healthy.fetchval("SELECT pg_is_in_recovery()") is True
        assert healthy.fallbacks == 0 and not healthy.replica_down
        # A primary has no replay position: it has everything, nothing to wait for.
        async with asyncio.timeout(2):
            await ReplicaReplay(store.pool, reads).caught_up()
    finally:
        await absent.close()


async def test_the_watch_wakes_a_waiter_once_the_replica_has_replayed_the_batch(
    pg_replica: ReplicaPair, handler: CommandHandler, store: PostgresStore, replica: asyncpg.Pool
) -> None:
    await create_docs(handler, ["d1", "d2"])  # v = 2 each, not yet in the views
    await pg_replica.replayed()
    watch = ReadWatch(
        pg_replica.primary_url,
        ReadViews(replica).version,
        recheck=30.0,
        replay=ReplicaReplay(store.pool, replica).caught_up,
    )
    watch.start()
    try:
        async with asyncio.timeout(10):
            await watch.listening.wait()
        # Streaming: the primary's notification, the replica's replay, the waiter.
        waiter = asyncio.create_task(watch.wait_for("d1", 2, within=5))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        started = time.monotonic()
        await catch_up(store.pool)
        assert await waiter == 2
        assert time.monotonic() - started < 1.0
        # Paused: the notification comes, the replica does not move: Timeout.
        await pg_replica.pause_replay()
        await workload(handler, ["d2"], 3, seed=1)
        target = (await store.read_stream("d2"))[-1].v
        late = asyncio.create_task(watch.wait_for("d2", target, within=0.8))
        await catch_up(store.pool)
        with pytest.raises(Timeout):
            await late
        # Resumed: a waiter is woken as soon as the replica has replayed the batch.
        waiter = asyncio.create_task(watch.wait_for("d2", target, within=10))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        resumed = time.monotonic()
        await pg_replica.resume_replay()
        assert await waiter == target
        assert time.monotonic() - resumed < 1.0
        assert watch.waiting == 0
    finally:
        await watch.close()


async def test_a_waiter_that_comes_after_the_notification_is_woken_by_the_replay(
    pg_replica: ReplicaPair, handler: CommandHandler, store: PostgresStore, replica: asyncpg.Pool
) -> None:
    """The batch is notified while nobody waits and the replica's replay is paused; a
    waiter that comes then reads the replica behind, and is woken once it replays."""
    await create_docs(handler, ["d1"])
    watch = ReadWatch(
        pg_replica.primary_url,
        ReadViews(replica).version,
        recheck=30.0,
        replay=ReplicaReplay(store.pool, replica).caught_up,
    )
    watch.start()
    try:
        async with asyncio.timeout(10):
            await watch.listening.wait()
        await pg_replica.pause_replay()
        await catch_up(store.pool)  # notified now, with no waiter
        await asyncio.sleep(0.3)
        waiter = asyncio.create_task(watch.wait_for("d1", 2, within=10))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        resumed = time.monotonic()
        await pg_replica.resume_replay()
        assert await waiter == 2
        assert time.monotonic() - resumed < 1.0
    finally:
        await watch.close()
