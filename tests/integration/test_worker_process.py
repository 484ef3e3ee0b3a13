"""``python -m app worker`` as real processes against the real PostgreSQL: the views
equal the fold of the events (I5) after a random workload, after a SIGKILL mid-load
and a restart, and when two workers share the shards and one of them is killed; a
SIGTERM stops a worker cleanly and disowns its shards; an event the projection cannot
apply is dead-lettered, its shard paused, the others go on, and /metrics says so."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from app.command import CommandHandler
from app.views.shards import shard_of
from tests.support.relay import wait_until
from tests.support.worker import (
    WorkerProcess,
    assert_views_exact,
    create_docs,
    fencings,
    owners,
    wait_caught_up,
    workload,
)

DOCS = [f"doc{i}" for i in range(12)]


@pytest.fixture
async def processes() -> AsyncIterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for process in started:
        if process.running:
            await process.end(signal.SIGKILL)


async def start(processes: list[WorkerProcess], dsn: str, name: str, **env: str) -> WorkerProcess:
    process = await WorkerProcess(dsn, name, **env).start()
    processes.append(process)
    return process


async def test_views_equal_the_fold_and_sigterm_disowns(
    handler: CommandHandler,
    conn: asyncpg.Connection,
    pg_clean: str,
    processes: list[WorkerProcess],
) -> None:
    worker = await start(processes, pg_clean, "solo")
    await create_docs(handler, DOCS)
    await workload(handler, DOCS, 600, seed=11)
    await wait_caught_up(conn, 15)
    assert await assert_views_exact(conn) == len(DOCS)
    assert set().union(*(await owners(conn)).values()) == {"solo"}
    assert await worker.end(signal.SIGTERM, within=5) == 0, worker.output
    assert worker.said("worker stopped") and "Traceback" not in worker.output
    assert set().union(*(await owners(conn)).values()) == {None}


async def test_a_worker_killed_mid_load_and_restarted_leaves_views_exact(
    handler: CommandHandler,
    conn: asyncpg.Connection,
    pg_clean: str,
    processes: list[WorkerProcess],
) -> None:
    await create_docs(handler, DOCS)
    first = await start(processes, pg_clean, "first")
    load = asyncio.create_task(workload(handler, DOCS, 1200, seed=5, pace=0.002))

    async def applying() -> bool:
        return bool(await conn.fetchval("SELECT max(position) > 0 FROM read.checkpoints"))

    await wait_until(applying, what=first.output)
    await asyncio.sleep(random.uniform(0.1, 0.5))
    assert not load.done(), "the load ended before the kill: make it longer"
    assert await first.end(signal.SIGKILL) == -signal.SIGKILL
    killed_at = await conn.fetchval("SELECT max(position) FROM read.checkpoints")
    await start(processes, pg_clean, "second")
    await load
    await wait_caught_up(conn, 15)
    assert await assert_views_exact(conn) == len(DOCS)
    head = await conn.fetchval("SELECT last_position FROM log_head")
    assert 0 < killed_at < head


async def test_two_workers_share_the_shards_and_one_takes_over_from_the_other(
    handler: CommandHandler,
    conn: asyncpg.Connection,
    pg_clean: str,
    processes: list[WorkerProcess],
) -> None:
    await create_docs(handler, DOCS)
    a = await start(processes, pg_clean, "wa")
    b = await start(processes, pg_clean, "wb")

    async def shared() -> bool:
        by_shard = await owners(conn)
        held = [next(iter(names)) for names in by_shard.values() if len(names) == 1]
        return len(held) == len(by_shard) and held.count("wa") == held.count("wb") == len(held) / 2

    await wait_until(shared, within=10, what="two workers holding half the shards each")
    before = await fencings(conn)
    await workload(handler, DOCS, 400, seed=9)
    await wait_caught_up(conn, 15)
    # Steady state: the fencing moves only on a takeover, and none happened.
    assert await fencings(conn) == before
    by_shard = await owners(conn)
    assert all(len(names) == 1 for names in by_shard.values())  # never owned by both
    a_shards = {shard for shard, names in by_shard.items() if names == {"wa"}}
    assert await assert_views_exact(conn) == len(DOCS)

    load = asyncio.create_task(workload(handler, DOCS, 400, seed=10, pace=0.002))
    assert await a.end(signal.SIGKILL) == -signal.SIGKILL
    killed = asyncio.get_running_loop().time()

    async def all_b() -> bool:
        return set().union(*(await owners(conn)).values()) == {"wb"}

    await wait_until(all_b, within=5, what=b.output)
    assert asyncio.get_running_loop().time() - killed < 5
    await load
    await wait_caught_up(conn, 15)
    assert await assert_views_exact(conn) == len(DOCS)
    after = await fencings(conn)
    for (view, shard), fencing in after.items():
        assert fencing == before[(view, shard)] + (shard in a_shards), (view, shard)
    assert b.running


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text: str = answer.read().decode()
        return text


async def _append_raw(conn: asyncpg.Connection, doc_id: str, op: dict[str, Any]) -> tuple[int, int]:
    """An event no command handler would write, appended the way the store does:
    the position from log_head in the same transaction. Returns (position, v)."""
    async with conn.transaction():
        v = await conn.fetchval("SELECT max(v) + 1 FROM events WHERE doc_id = $1", doc_id)
        position = await conn.fetchval(
            "UPDATE log_head SET last_position = last_position + 1 RETURNING last_position"
        )
        await conn.execute(
            "INSERT INTO events (position, doc_id, v, kind, op, effect, actor, op_id, ts)"
            " VALUES ($1, $2, $3, $4, $5, '\\x7b7d', 'mallory', NULL, now())",
            position,
            doc_id,
            v,
            op["kind"],
            orjson.dumps(op),
        )
        await conn.execute("SELECT pg_notify('atelier_log', '')")
    return int(position), int(v)


async def test_an_event_the_projection_refuses_is_dead_lettered_and_pauses_its_shard(
    handler: CommandHandler,
    conn: asyncpg.Connection,
    pg_clean: str,
    processes: list[WorkerProcess],
) -> None:
    port = _free_port()
    await start(processes, pg_clean, "dl", WORKER_METRICS_PORT=str(port))
    shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
    await create_docs(handler, DOCS)
    await workload(handler, DOCS, 100, seed=3)
    await wait_caught_up(conn, 15)
    bad_doc = DOCS[0]
    bad_shard = shard_of(bad_doc, shards)
    position, v = await _append_raw(conn, bad_doc, {"kind": "no.such"})
    others = [d for d in DOCS if shard_of(d, shards) != bad_shard]
    assert others
    await workload(handler, others, 100, seed=4)

    async def others_caught_up() -> bool:
        behind = await conn.fetchval(
            "SELECT count(*) FROM read.checkpoints WHERE shard <> $1"
            " AND position < (SELECT last_position FROM log_head)",
            bad_shard,
        )
        return behind == 0

    await wait_until(others_caught_up, within=15, what="the other shards")
    letters = await conn.fetch(
        "SELECT view, shard, position, doc_id, v, error FROM read.dead_letters ORDER BY view"
    )
    assert [r["view"] for r in letters] == sorted(["doc_state", "catalog", "activity", "history"])
    assert {(r["shard"], r["position"], r["doc_id"], r["v"]) for r in letters} == {
        (bad_shard, position, bad_doc, v)
    }
    assert all("no.such" in r["error"] or "unknown" in r["error"] for r in letters), letters
    paused = await conn.fetch(
        "SELECT status, position FROM read.checkpoints WHERE shard = $1", bad_shard
    )
    assert {(r["status"], r["position"]) for r in paused} == {("paused", position - 1)}
    assert await conn.fetchval("SELECT v FROM read.doc_state WHERE doc_id = $1", bad_doc) == v - 1
    assert await assert_views_exact(conn, only=set(others)) == len(others)
    text = await asyncio.to_thread(_scrape, port)
    line = f'atelier_worker_dead_letters_total{{shard="{bad_shard}",view="doc_state"}} 1.0'
    assert line in text, text
    assert f'atelier_worker_lag_events{{shard="{bad_shard}",view="doc_state"}}' in text
