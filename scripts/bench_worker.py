"""Read-worker benchmark: how fast one ``python -m app worker`` folds the log into the
views, and how far behind the head it stays under the write benchmark's load.

Runs on a throwaway database of the configured server (DATABASE_URL's server):

  catch-up   N events already in the log (written through the command handler),
             then a worker process started: events/s until its checkpoints reach the head
  live       a worker process running while the command handler writes at a paced rate
             (hot-doc: one document; many-docs: 100 documents; bench_write.py's op mix:
             9 in 10 move an element, 1 in 10 adds a 20-point stroke); the lag of the slowest
             checkpoint is sampled every 10 ms as ``now - ts`` of its first unapplied
             event (0 when caught up): p50 / p99 / max

    .venv/bin/python scripts/bench_worker.py [--events 40000] [--seconds 8]
        [--hot-rate 8000] [--many-rate 13000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import signal
import sys
import time
import urllib.request
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

# Computed in the server (clock_timestamp() - ts), so that this busy process's own
# event-loop delays never count as the worker's lag.
_LAG = (
    "SELECT coalesce(extract(epoch FROM clock_timestamp() - ("
    " SELECT e.ts FROM events AS e WHERE e.position = c.position + 1)), 0)::float8 AS lag"
    " FROM (SELECT min(position) AS position FROM read.checkpoints) AS c"
)


def _with_db(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


_LAYERS = 10  # per document, one per writer, as in bench_write.py


def _op(n: int, rng: random.Random) -> dict[str, object]:
    """bench_write.py's mix: 9 in 10 move the writer's element, 1 in 10 adds a stroke."""
    w = n % _LAYERS
    if n % 10 == 9:
        return {
            "kind": "element.add",
            "element": f"w{w}-{n}",
            "layer": f"L{w}",
            "shape": "stroke",
            "props": {
                "color": "#112233",
                "width": 3,
                "points": [[rng.uniform(0, 800), rng.uniform(0, 600), 0.5] for _ in range(20)],
            },
        }
    return {
        "kind": "element.update",
        "element": f"w{w}",
        "set": {"x": rng.uniform(0, 800), "y": rng.uniform(0, 600)},
    }


async def _write(handler: CommandHandler, docs: list[str], rate: float, seconds: float) -> int:
    """Ops at ``rate`` a second over ``docs``, paced (each op its own task)."""
    sent = 0
    start = time.perf_counter()
    tasks: set[asyncio.Task[object]] = set()
    rng = random.Random(1)
    while (now := time.perf_counter() - start) < seconds:
        due = int(now * rate)
        while sent < due:
            doc_id = docs[(sent // _LAYERS) % len(docs)]
            op = _op(sent, rng)
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
        for w in range(_LAYERS):
            layer = {"kind": "layer.add", "layer": f"L{w}", "name": f"writer {w}"}
            await handler.submit(doc_id, "u", "owner", f"L{w}", layer)
            element = {
                "kind": "element.add",
                "element": f"w{w}",
                "layer": f"L{w}",
                "shape": "rect",
                "props": {"x": 0, "y": 0, "w": 10, "h": 10, "fill": "#336699"},
            }
            await handler.submit(doc_id, "u", "owner", f"E{w}", element)
    return docs


_METRICS_PORT = 19177


def _batches() -> str:
    """The worker's batch histograms, from its /metrics: count, mean size, mean time."""
    with urllib.request.urlopen(f"http://127.0.0.1:{_METRICS_PORT}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("atelier_worker_batch_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    count = values.get("atelier_worker_batch_seconds_count", 0) or 1
    return (
        f"{count:.0f} batches, {values.get('atelier_worker_batch_events_sum', 0) / count:.0f}"
        f" events and {values.get('atelier_worker_batch_seconds_sum', 0) / count * 1000:.1f} ms"
        " each on average"
    )


def _start_worker(dsn: str) -> asyncio.Future[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "APP_ENV": "prod",
        "APP_SECRET": "b" * 40,
        "LOG_LEVEL": "warning",
        "WORKER_METRICS_PORT": str(_METRICS_PORT),
    }
    # BENCH_PROFILE=path: the worker runs under cProfile, its stats written there.
    profile = os.environ.get("BENCH_PROFILE")
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    return asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            sys.executable, *prefix, "-m", "app", "worker", env=env, cwd=ROOT
        )
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
        batches = _batches()
        await _stop(proc)
        return (
            f"catch-up   {head} events over 100 docs in {seconds:.2f} s:"
            f" {head / seconds:,.0f} events/s (process start included); {batches}"
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
        # The load generator's own GC pauses (docs/benchmarks.md: 25-85 ms stalls in the
        # command handler's process) would hold events between their ts and their
        # commit and count as the worker's lag: this process runs without its cyclic
        # GC while it writes.
        gc.collect()
        gc.disable()
        writing = asyncio.ensure_future(_write(handler, docs, rate, seconds))
        while not writing.done():
            samples.append(max(0.0, float(await conn.fetchval(_LAG))))
            await asyncio.sleep(0.01)
        sent = await writing
        gc.enable()
        batches = _batches()
        samples.sort()
        p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000  # noqa: E731
        return (
            f"live {name:9} {sent / seconds:,.0f} ops/s offered ({sent} acked): view lag"
            f" p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {samples[-1] * 1000:.1f} ms"
            f" ({len(samples)} samples); {batches}"
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
