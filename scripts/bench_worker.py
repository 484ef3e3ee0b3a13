"""Read-worker benchmark: how fast one ``python -m app worker`` folds the log into the
views, and how far behind the head it stays under the write benchmark's load.

Runs on a throwaway database of the configured server (DATABASE_URL's server):

  catch-up   N events already in the log (written through the command handler),
             then a worker process started: events/s until its checkpoints reach the head
  live       a worker process running while the command handler writes at a paced rate
             (hot-doc: one document; many-docs: 100 documents); the lag of the slowest
             checkpoint is sampled every 10 ms as ``now - ts`` of its first unapplied
             event (0 when caught up): p50 / p99 / max

    .venv/bin/python scripts/bench_worker.py [--events 40000] [--seconds 8]
        [--hot-rate 8000] [--many-rate 13000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.command import CommandHandler  # noqa: E402
from app.store.migrate import ensure_database, migrate  # noqa: E402
from app.store.pool import create_pool  # noqa: E402
from app.store.postgres import PostgresStore  # noqa: E402

_LAG = (
    "SELECT h.last_position - c.position AS behind,"
    " (SELECT atelier_ms(e.ts) FROM events AS e WHERE e.position = c.position + 1) AS ts"
    " FROM log_head AS h, (SELECT min(position) AS position FROM read.checkpoints) AS c"
)


def _with_db(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


async def _write(handler: CommandHandler, docs: list[str], rate: float, seconds: float) -> int:
    """Ops at ``rate`` a second over ``docs`` (element adds and updates), paced."""
    sent = 0
    start = time.perf_counter()
    tasks: set[asyncio.Task[object]] = set()
    rng = random.Random(1)
    while (now := time.perf_counter() - start) < seconds:
        due = int(now * rate)
        while sent < due:
            doc_id = docs[sent % len(docs)]
            op = {
                "kind": "element.add",
                "element": f"e{sent}",
                "layer": "L1",
                "shape": "rect",
                "props": {"x": rng.randint(0, 900), "y": 1, "w": 5, "h": 5},
            }
            task = asyncio.ensure_future(handler.submit(doc_id, "u", "owner", f"o{sent}", op))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.002)
    if tasks:
        await asyncio.gather(*tasks)
    return sent


async def _docs(handler: CommandHandler, count: int) -> list[str]:
    docs = [f"doc{i}" for i in range(count)]
    for doc_id in docs:
        await handler.create_document(doc_id, "u", doc_id)
        await handler.submit(
            doc_id, "u", "owner", "L1", {"kind": "layer.add", "layer": "L1", "name": "a"}
        )
    return docs


def _start_worker(dsn: str) -> asyncio.Future[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "APP_ENV": "prod",
        "APP_SECRET": "b" * 40,
        "LOG_LEVEL": "warning",
        "WORKER_METRICS_PORT": "off",
    }
    return asyncio.ensure_future(
        asyncio.create_subprocess_exec(sys.executable, "-m", "app", "worker", env=env, cwd=ROOT)
    )


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    await proc.wait()


async def _caught_up(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT min(position) >= (SELECT last_position FROM log_head) FROM read.checkpoints"
        )
    )


async def _wait_caught_up(conn: asyncpg.Connection) -> None:
    while not await _caught_up(conn):  # noqa: ASYNC110 (polling the database)
        await asyncio.sleep(0.01)


async def catch_up(dsn: str, events: int) -> str:
    pool = await create_pool(dsn, 8)
    conn = await asyncpg.connect(dsn)
    handler = CommandHandler(PostgresStore(pool))
    await handler.start()
    try:
        docs = await _docs(handler, 100)
        await _write(handler, docs, 20000, events / 20000)
        head = await conn.fetchval("SELECT last_position FROM log_head")
        started = time.perf_counter()
        proc = await _start_worker(dsn)
        await _wait_caught_up(conn)
        seconds = time.perf_counter() - started
        await _stop(proc)
        return (
            f"catch-up   {head} events over 100 docs in {seconds:.2f} s:"
            f" {head / seconds:,.0f} events/s (process start included)"
        )
    finally:
        await handler.close()
        await conn.close()
        await pool.close()


async def live(dsn: str, name: str, ndocs: int, rate: float, seconds: float) -> str:
    pool = await create_pool(dsn, 8)
    conn = await asyncpg.connect(dsn)
    handler = CommandHandler(PostgresStore(pool))
    await handler.start()
    proc = await _start_worker(dsn)
    try:
        docs = await _docs(handler, ndocs)
        await _wait_caught_up(conn)
        samples: list[float] = []
        writing = asyncio.ensure_future(_write(handler, docs, rate, seconds))
        while not writing.done():
            row = await conn.fetchrow(_LAG)
            if row["behind"] and row["ts"] is not None:
                samples.append(max(0.0, time.time() - row["ts"] / 1000))
            else:
                samples.append(0.0)
            await asyncio.sleep(0.01)
        sent = await writing
        samples.sort()
        p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000  # noqa: E731
        return (
            f"live {name:9} {sent / seconds:,.0f} ops/s offered ({sent} acked): view lag"
            f" p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {samples[-1] * 1000:.1f} ms"
            f" ({len(samples)} samples)"
        )
    finally:
        await _stop(proc)
        await handler.close()
        await conn.close()
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--hot-rate", type=float, default=8000)
    parser.add_argument("--many-rate", type=float, default=13000)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/atelier")
    admin = _with_db(server, "postgres")
    for title, run in (
        ("catch-up", lambda dsn: catch_up(dsn, args.events)),
        ("hot-doc", lambda dsn: live(dsn, "hot-doc", 1, args.hot_rate, args.seconds)),
        ("many-docs", lambda dsn: live(dsn, "many-docs", 100, args.many_rate, args.seconds)),
    ):
        name = f"atelier_bench_{uuid.uuid4().hex[:10]}"
        dsn = _with_db(server, name)
        await ensure_database(dsn)
        try:
            await migrate(dsn)
            print(await run(dsn), flush=True)
        finally:
            admin_conn = await asyncpg.connect(admin)
            await admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin_conn.close()
        del title


if __name__ == "__main__":
    uvloop.run(main())
