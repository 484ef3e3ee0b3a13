"""Read workers in this process against the real PostgreSQL: a zombie (its fencing
bumped under it) cannot write; a lost lease connection stops the writes and the
worker comes back with a new fencing; workers added and removed rebalance the shards;
a restored store (a new epoch) stops the worker."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.command import CommandHandler
from app.observability import metrics
from app.store.follow import EpochChanged
from app.store.postgres import PostgresStore
from app.views.rebuild import rebuild
from app.views.schema import VIEWS
from app.views.shards import shard_of
from app.views.writer import catch_up
from app.workers import Worker
from tests.support.relay import wait_until
from tests.support.worker import (
    RunningWorker,
    assert_views_exact,
    create_docs,
    fast_config,
    fencings,
    wait_caught_up,
    workload,
)

DOCS = [f"doc{i}" for i in range(10)]


def _cas_failures() -> float:
    return metrics.REGISTRY.get_sample_value("atelier_worker_cas_failures_total") or 0.0


async def test_a_zombie_whose_fencing_moved_cannot_write(
    handler: CommandHandler, store: PostgresStore, conn: asyncpg.Connection, pg_clean: str
) -> None:
    await create_docs(handler, DOCS)
    # A lease interval longer than the test: the worker never takes the shard back.
    async with RunningWorker(fast_config(pg_clean, "zombie", lease_interval=60)) as worker:
        await wait_until(lambda: len(worker.shards) == 16, what="all shards taken")
        await wait_caught_up(conn)
        shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
        victim = shard_of(DOCS[0], shards)
        # Another worker took the shard over (as far as the rows can tell).
        await conn.execute(
            "UPDATE read.checkpoints SET fencing = fencing + 1, owner = 'thief' WHERE shard = $1",
            victim,
        )
        frozen = await conn.fetch(
            "SELECT view, position, fencing FROM read.checkpoints WHERE shard = $1 ORDER BY view",
            victim,
        )
        state = await conn.fetchrow("SELECT * FROM read.doc_state WHERE doc_id = $1", DOCS[0])
        failures = _cas_failures()
        await workload(handler, DOCS, 200, seed=2)

        async def others_caught_up() -> bool:
            behind = await conn.fetchval(
                "SELECT count(*) FROM read.checkpoints WHERE shard <> $1"
                " AND position < (SELECT last_position FROM log_head)",
                victim,
            )
            return behind == 0

        await wait_until(others_caught_up, what="the shards the zombie still owns")
        assert _cas_failures() > failures  # its batch was refused...
        assert victim not in worker.shards  # ...and it dropped the shard
        assert (
            await conn.fetch(
                "SELECT view, position, fencing FROM read.checkpoints WHERE shard = $1"
                " ORDER BY view",
                victim,
            )
            == frozen
        )
        assert (
            await conn.fetchrow("SELECT * FROM read.doc_state WHERE doc_id = $1", DOCS[0]) == state
        )
        others = {d for d in DOCS if shard_of(d, shards) != victim}
        assert await assert_views_exact(conn, only=others) == len(others)
    # The "thief" would go on from the frozen checkpoint; catch_up plays its part.
    await catch_up(store.pool)
    assert await assert_views_exact(conn) == len(DOCS)


async def test_lost_connections_stop_the_writes_and_the_worker_comes_back(
    handler: CommandHandler, conn: asyncpg.Connection, pg_clean: str
) -> None:
    await create_docs(handler, DOCS)
    async with RunningWorker(fast_config(pg_clean, "flaky")) as worker:
        await wait_until(lambda: len(worker.shards) == 16, what="all shards taken")
        before = await fencings(conn)
        load = asyncio.create_task(workload(handler, DOCS, 400, seed=4, pace=0.002))
        await asyncio.sleep(0.2)
        # Every connection of the worker at once: lease, follower and writer.
        killed = await conn.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE 'atelier-worker% flaky') AS t"
        )
        assert killed == 3
        await load
        await wait_caught_up(conn, 15)
        assert await assert_views_exact(conn) == len(DOCS)
        # Every shard was taken again, each take bumping its fencing once.
        after = await fencings(conn)
        assert all(f == before[key] + 1 for key, f in after.items()), (before, after)
        assert len(worker.shards) == 16


async def test_workers_added_and_removed_share_the_shards(
    handler: CommandHandler, conn: asyncpg.Connection, pg_clean: str
) -> None:
    await create_docs(handler, DOCS)
    first = RunningWorker(fast_config(pg_clean, "w1"))
    second = RunningWorker(fast_config(pg_clean, "w2"))
    third = RunningWorker(fast_config(pg_clean, "w3"))
    async with first as w1:
        await wait_until(lambda: len(w1.shards) == 16, what="w1 alone holds all")
        async with second as w2:
            await wait_until(lambda: len(w1.shards) == len(w2.shards) == 8, what="8 and 8")
            async with third as w3:
                everyone = (w1, w2, w3)

                def thirds() -> bool:
                    counts = sorted(len(w.shards) for w in everyone)
                    return sum(counts) == 16 and counts[-1] <= 6

                await wait_until(thirds, what="at most ceil(16 / 3) = 6 each")
                assert not (w1.shards & w2.shards or w2.shards & w3.shards or w1.shards & w3.shards)
                await workload(handler, DOCS, 300, seed=6)
                await wait_caught_up(conn, 15)
                assert await assert_views_exact(conn) == len(DOCS)
            await wait_until(lambda: len(w1.shards) == len(w2.shards) == 8, what="back to 8+8")
        await wait_until(lambda: len(w1.shards) == 16, what="w1 alone again")
        await workload(handler, DOCS, 100, seed=7)
        await wait_caught_up(conn, 15)
        assert await assert_views_exact(conn) == len(DOCS)


async def test_a_restored_store_stops_the_worker_until_a_rebuild(
    handler: CommandHandler, store: PostgresStore, conn: asyncpg.Connection, pg_clean: str
) -> None:
    """A restore bumps the epoch: every checkpoint is void, and the worker stops rather
    than read the new log from them (the views must be rebuilt)."""
    await create_docs(handler, DOCS[:2])
    worker = Worker(fast_config(pg_clean, "epoch"))
    task = asyncio.create_task(worker.run())
    try:
        await wait_caught_up(conn)
        await conn.execute("UPDATE store_meta SET epoch = epoch + 1")
        # The follower checks the epoch when it (re)connects: cut its connection.
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'atelier-worker epoch'"
        )
        with pytest.raises(EpochChanged):
            async with asyncio.timeout(10):
                await task
    finally:
        if not task.done():
            task.cancel()
    # Started again (as a supervisor would), it holds the shards but moves no
    # checkpoint of the old epoch.
    frozen = await conn.fetch("SELECT view, shard, position FROM read.checkpoints ORDER BY 1, 2")
    async with RunningWorker(fast_config(pg_clean, "epoch-2")) as again:
        await wait_until(lambda: len(again.shards) == 16, what="all shards taken")
        await workload(handler, DOCS[:2], 20, seed=1)
        await asyncio.sleep(0.5)
        assert again.applied == 0
        now = await conn.fetch("SELECT view, shard, position FROM read.checkpoints ORDER BY 1, 2")
        assert now == frozen
        # The rebuild moves the shards to the new epoch (bumping their fencing): the
        # worker drops and takes them again, and goes on from there.
        await rebuild(store.pool, list(VIEWS))
        await workload(handler, DOCS[:2], 20, seed=2)
        await wait_caught_up(conn, 10)
        assert again.applied > 0
        assert await assert_views_exact(conn) == 2


async def test_a_batch_moves_only_the_checkpoints_of_the_shards_it_has_events_for(
    handler: CommandHandler, conn: asyncpg.Connection, pg_clean: str
) -> None:
    shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
    doc = DOCS[0]
    touched = shard_of(doc, shards)
    await create_docs(handler, [doc])
    # Lease and flush intervals longer than the batches below: what the rows of the
    # other shards hold meanwhile is what the batches wrote to them.
    config = fast_config(pg_clean, "lazy", lease_interval=3.0, flush_interval=3.0)
    async with RunningWorker(config) as worker:
        await wait_until(lambda: len(worker.shards) == 16, what="all shards taken")
        await workload(handler, [doc], 30, seed=5, writers=1)
        head = await conn.fetchval("SELECT last_position FROM log_head")

        async def touched_at_head() -> bool:
            rows = await conn.fetch(
                "SELECT position FROM read.checkpoints WHERE shard = $1", touched
            )
            return len(rows) == len(VIEWS) and all(r["position"] == head for r in rows)

        await wait_until(touched_at_head, what="the document's shard at the head")
        others = await conn.fetchval(
            "SELECT max(position) FROM read.checkpoints WHERE shard <> $1", touched
        )
        assert others < head, "a batch wrote the rows of shards it had no event for"
        # Within a flush interval the worker stores where it has read them to.
        await wait_caught_up(conn, 15)
        assert await assert_views_exact(conn) == 1
        # A worker that takes the shards over from the rows as stored applies nothing
        # twice, stored late or not: the same views after more ops on every shard.
    await workload(handler, DOCS, 40, seed=6)
    await create_docs(handler, DOCS[1:])
    async with RunningWorker(fast_config(pg_clean, "next")) as worker:
        await wait_until(lambda: len(worker.shards) == 16, what="all shards taken")
        await workload(handler, DOCS, 60, seed=7)
        await wait_caught_up(conn, 15)
        assert await assert_views_exact(conn) == len(DOCS)


async def test_a_worker_that_dies_with_checkpoints_unwritten_loses_nothing(
    handler: CommandHandler, conn: asyncpg.Connection, pg_clean: str
) -> None:
    await create_docs(handler, DOCS)
    config = fast_config(pg_clean, "doomed", lease_interval=3.0, flush_interval=60.0)
    worker = Worker(config)
    task = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: len(worker.shards) == 16, what="all shards taken")
        await wait_caught_up(conn, 15)  # the first flush: every row at the head
        shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
        before = worker.applied
        accepted = await workload(handler, [DOCS[0]], 20, seed=8, writers=1)
        head = await conn.fetchval("SELECT last_position FROM log_head")
        await wait_until(lambda: worker.applied >= before + accepted, what="the ops applied")
        lagging = await conn.fetchval(
            "SELECT count(*) FROM read.checkpoints WHERE position < $1", head
        )
        assert lagging == len(VIEWS) * (shards - 1)
        # Gone without a word: its connections cut, its task cancelled.
        await conn.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE 'atelier-worker% doomed') AS t"
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    async with RunningWorker(fast_config(pg_clean, "heir")) as heir:
        await wait_until(lambda: len(heir.shards) == 16, what="all shards taken")
        await workload(handler, DOCS, 60, seed=9)
        await wait_caught_up(conn, 15)
        assert await assert_views_exact(conn) == len(DOCS)
