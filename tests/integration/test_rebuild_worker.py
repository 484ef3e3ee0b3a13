"""A rebuild beside a running read worker (app/workers) while ops keep arriving: the
worker's batches wait at the switch, then write the new generation, and the views
end equal to a fresh fold of every event (I5)."""

from __future__ import annotations

import asyncio
import time

from app.store.postgres import PostgresStore
from app.views.rebuild import rebuild
from app.views.schema import VIEWS
from app.workers.worker import Worker, WorkerConfig
from tests.integration.test_rebuild import dump_all, generation, workload


async def caught_up(store: PostgresStore, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while await store.pool.fetchval(
        "SELECT count(*) FROM read.checkpoints"
        " WHERE position < (SELECT last_position FROM log_head)"
    ):
        assert time.monotonic() < deadline, "the worker did not catch up"
        await asyncio.sleep(0.05)


async def test_rebuild_beside_a_running_worker(store: PostgresStore, pg_clean: str) -> None:
    worker = Worker(
        WorkerConfig(
            dsn=pg_clean,
            worker_id="w-rebuild",
            batch=50,
            lease_interval=0.1,
            poll_interval=0.2,
            max_backoff=0.2,
        )
    )
    running = asyncio.create_task(worker.run())
    before = {name: await generation(store.pool, name) for name in VIEWS}
    try:
        await workload(store, ops=300)
        writes = asyncio.create_task(workload(store, docs=3, ops=300, seed=5, prefix="live"))
        await asyncio.sleep(0.2)
        summary = await rebuild(store.pool, list(VIEWS))
        await writes
        await workload(store, docs=2, ops=100, seed=6, prefix="after")
        await caught_up(store)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
    assert {name: await generation(store.pool, name) - 1 for name in VIEWS} == before
    assert sum(r.tail for r in summary.views) > 0, "the worker moved on during the rebuild"
    live = await dump_all(store.pool)
    assert any(row[0].startswith("after") for row in live["doc_state"]), "written after"
    await rebuild(store.pool, list(VIEWS))
    assert await dump_all(store.pool) == live
