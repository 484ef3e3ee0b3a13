"""Write-side benchmark: durable ops/s and ack latency through the command handler.

Runs, in one process and on a throwaway database of the configured server:

  ceiling   plain asyncpg single-row INSERT + COMMIT transactions, one connection per
            task, at the same concurrency as each scenario (the raw PostgreSQL figure)
  redis     redis-py XADD rate from 16 tasks (the raw Redis figure, for reference)
  hot-doc   one document, 10 concurrent writers
  many-docs 100 documents, 64 concurrent writers

each twice: closed loop (every writer sends its next op when the last is acknowledged:
the most the path does), and paced at 0.6x the ceiling just measured (latency counted
from when each op was due),

with the snapshotter (``python -m app snapshotter``) running beside it, as deployed.
An ack's latency is the whole write path: parse, decide, group commit, COMMIT, answer.
Prints a table, and with --write-docs updates the figures in docs/benchmarks.md.

    .venv/bin/python scripts/bench_write.py [--seconds 10] [--write-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as redis
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.command import CommandHandler
from app.observability.metrics import REGISTRY
from app.store.migrate import migrate
from app.store.pool import create_pool
from app.store.postgres import PostgresStore


@dataclass
class Result:
    name: str
    ops: int
    seconds: float
    latencies: list[float]
    note: str = ""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    def pct(self, q: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")


async def closed_loop(
    name: str,
    tasks: int,
    seconds: float,
    step: Callable[[int, int], Awaitable[None]],
    rate: float | None = None,
) -> Result:
    """Each task runs ``step`` again as soon as the last one answered; or, with
    ``rate``, on a fixed schedule (rate/tasks per task), its latency counted from the
    time it was due, so that falling behind shows (no coordinated omission)."""
    latencies: list[float] = []
    started_at = time.perf_counter()
    deadline = started_at + seconds
    count = 0
    period = tasks / rate if rate else 0.0

    async def worker(w: int) -> None:
        nonlocal count
        i = 0
        due = started_at + period * w / tasks
        while time.perf_counter() < deadline:
            if period:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = due
                due += period
            else:
                t0 = time.perf_counter()
            await step(w, i)
            latencies.append(time.perf_counter() - t0)
            count += 1
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return Result(name, count, time.perf_counter() - started, latencies)


async def raw_ceiling(dsn: str, tasks: int, seconds: float, rate: float | None = None) -> Result:
    """Single-row ``INSERT`` + ``COMMIT`` transactions from ``tasks`` connections, back
    to back, or paced at ``rate`` a second in all (latency from each one's due time)."""
    conns = [await asyncpg.connect(dsn) for _ in range(tasks)]
    await conns[0].execute(
        "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, stream int, "
        "v int, payload jsonb, ts timestamptz DEFAULT now())"
    )
    payload = '{"kind": "element.update", "element": "e1", "set": {"x": 12.5}}'

    async def step(w: int, i: int) -> None:
        conn = conns[w]
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO bench_raw (stream, v, payload) VALUES ($1, $2, $3)", w, i, payload
            )

    try:
        name = f"raw INSERT+COMMIT, {tasks} tasks" + (f", {rate:g}/s" if rate else "")
        return await closed_loop(name, tasks, seconds, step, rate)
    finally:
        await conns[0].execute("DROP TABLE bench_raw")
        for conn in conns:
            await conn.close()


async def redis_ceiling(url: str, seconds: float) -> Result:
    client = redis.from_url(url)
    key = f"atelier-bench:{uuid.uuid4().hex}"
    fields = {"op": b"x" * 300}

    async def step(w: int, i: int) -> None:
        await client.xadd(key, fields)  # type: ignore[arg-type]

    try:
        return await closed_loop("redis XADD, 16 tasks", 16, seconds, step)
    finally:
        await client.delete(key)
        await client.aclose()


async def handler_scenario(
    store: PostgresStore,
    name: str,
    docs: int,
    writers: int,
    seconds: float,
    lanes: int,
    max_batch: int,
    rate: float | None = None,
) -> Result:
    handler = CommandHandler(store, lanes=lanes, max_batch=max_batch)
    await handler.start()
    prefix = uuid.uuid4().hex[:8]
    doc_ids = [f"{prefix}-{d}" for d in range(docs)]
    for doc_id in doc_ids:
        await handler.create_document(doc_id, "bench", "Benchmark")
    # Each writer draws on its own layer of its document, so that runs do not conflict
    # on purpose; the benchmark measures the path, not the conflict rate.
    for w in range(writers):
        doc_id = doc_ids[w % docs]
        await handler.submit(
            doc_id,
            "bench",
            "owner",
            f"L-{w}",
            {"kind": "layer.add", "layer": f"L{w}", "name": f"writer {w}"},
        )
        await handler.submit(
            doc_id,
            "bench",
            "owner",
            f"E-{w}",
            {
                "kind": "element.add",
                "element": f"w{w}",
                "layer": f"L{w}",
                "shape": "rect",
                "props": {"x": 0, "y": 0, "w": 10, "h": 10, "fill": "#336699"},
            },
        )
    rng = random.Random(7)

    async def step(w: int, i: int) -> None:
        doc_id = doc_ids[w % docs]
        if i % 10 == 9:
            op = {
                "kind": "element.add",
                "element": f"w{w}-{i}",
                "layer": f"L{w}",
                "shape": "stroke",
                "props": {
                    "color": "#112233",
                    "width": 3,
                    "points": [[rng.uniform(0, 800), rng.uniform(0, 600), 0.5] for _ in range(20)],
                },
            }
        else:
            op = {
                "kind": "element.update",
                "element": f"w{w}",
                "set": {"x": rng.uniform(0, 800), "y": rng.uniform(0, 600)},
            }
        await handler.submit(doc_id, "bench", "owner", f"{w}-{i}", op)

    before = _commit_stats()
    cpu = time.process_time()
    try:
        result = await closed_loop(name, writers, seconds, step, rate)
    finally:
        await handler.close()
    cpu = time.process_time() - cpu
    after = _commit_stats()
    batches = after[1] - before[1]
    if batches:
        result.note = (
            f"{cpu / max(result.ops, 1) * 1e6:.0f} µs of CPU per op in this process "
            "(writers included); "
            f"{batches:,.0f} transactions, {(after[0] - before[0]) / batches:.1f} ops "
            f"and {(after[2] - before[2]) / batches * 1000:.2f} ms each"
        )
    return result


def _commit_stats() -> tuple[float, float, float]:
    """(ops, transactions, seconds in transactions) so far, from the handler's metrics."""

    def get(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    return (
        get("atelier_append_batch_size_sum"),
        get("atelier_append_batch_size_count"),
        get("atelier_append_seconds_sum"),
    )


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {cpu}, Python {platform.python_version()}"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--lanes", type=int, default=1, help="DB_COMMIT_LANES")
    parser.add_argument("--max-batch", type=int, default=256, help="GROUP_COMMIT_MAX")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="disable Python's cyclic GC in this process (an experiment: shows the pauses "
        "that full collections over the write models cost)",
    )
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/atelier")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    base = admin.rsplit("/", 1)[0]
    db = f"atelier_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(f"{base}/postgres")
    await conn.execute(f'CREATE DATABASE "{db}"')
    await conn.close()
    dsn = f"{base}/{db}"
    snapshotter: asyncio.subprocess.Process | None = None
    try:
        await migrate(dsn)
        # The system as deployed: snapshots come from their own process, following the log.
        snapshotter = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "snapshotter",
            env={
                **os.environ,
                "DATABASE_URL": dsn,
                "APP_ENV": "prod",
                "LOG_LEVEL": "warning",
                "APP_SECRET": uuid.uuid4().hex * 2,
                "SNAPSHOT_EVERY": "200",
            },
        )
        pool = await create_pool(dsn, 8)
        store = PostgresStore(pool)
        version = await pool.fetchval("SHOW server_version")
        print(f"machine: {machine()}; PostgreSQL {version}; {args.seconds:.0f} s per figure")
        rows: list[tuple[Result, Result | None]] = []
        redis_result = await redis_ceiling(redis_url, args.seconds / 2)
        for name, docs, writers in (
            ("hot-doc: 1 document, 10 writers", 1, 10),
            ("many-docs: 100 documents, 64 writers", 100, 64),
        ):
            ceiling = await raw_ceiling(dsn, writers, args.seconds)
            result = await handler_scenario(
                store, name, docs, writers, args.seconds, args.lanes, args.max_batch
            )
            rows.append((result, ceiling))
            print(report_line(result, ceiling))
            # The same writers paced at the target's rate (0.6x the ceiling just
            # measured): the latency the target speaks of, at that throughput.
            rate = 0.6 * ceiling.rate
            paced = await handler_scenario(
                store,
                f"{name.split(':')[0]} paced at {rate:,.0f} ops/s (0.6x)",
                docs,
                writers,
                args.seconds,
                args.lanes,
                args.max_batch,
                rate,
            )
            rows.append((paced, ceiling))
            print(report_line(paced, ceiling))
        print(report_line(redis_result, None))
        await pool.close()
    finally:
        if snapshotter is not None and snapshotter.returncode is None:
            snapshotter.terminate()
            await snapshotter.wait()
        conn = await asyncpg.connect(f"{base}/postgres")
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await conn.close()
    if args.write_docs:
        write_docs(rows, redis_result, args.seconds)
    return 0


def report_line(r: Result, ceiling: Result | None) -> str:
    line = f"{r.name:40s} {r.rate:9,.0f} ops/s  p50 {r.pct(0.5):6.2f} ms  p99 {r.pct(0.99):6.2f} ms"
    if ceiling is not None:
        line += (
            f"  | ceiling {ceiling.rate:9,.0f}/s (p99 {ceiling.pct(0.99):.2f} ms)"
            f"  ratio {r.rate / ceiling.rate:.2f}x"
        )
    if r.note:
        line += f"\n    {r.note}"
    return line


def write_docs(
    rows: list[tuple[Result, Result | None]], redis_result: Result, seconds: float
) -> None:
    path = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = "<!-- bench_write:start -->", "<!-- bench_write:end -->"
    lines = [
        start,
        "",
        f"Run on {time.strftime('%Y-%m-%d')}: {machine()}; {seconds:.0f} s per figure; "
        "`.venv/bin/python scripts/bench_write.py --write-docs`.",
        "",
        "| scenario | ops/s | ack p50 | ack p99 | raw ceiling (same concurrency) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r, c in rows:
        assert c is not None
        lines.append(
            f"| {r.name} | {r.rate:,.0f} | {r.pct(0.5):.2f} ms | {r.pct(0.99):.2f} ms | "
            f"{c.rate:,.0f}/s (p99 {c.pct(0.99):.2f} ms) | {r.rate / c.rate:.2f}x |"
        )
    lines.append("")
    lines += [f"- {r.name}: {r.note}." for r, _ in rows if r.note]
    lines += [
        "",
        f"Redis XADD from 16 tasks in the same run: {redis_result.rate:,.0f}/s "
        f"(p99 {redis_result.pct(0.99):.2f} ms).",
        "",
        end,
    ]
    block = "\n".join(lines)
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"updated {path}")


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
