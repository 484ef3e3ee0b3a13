"""Read-side benchmark: projection, rebuild and query figures beside raw ceilings.

Runs on a throwaway database of the configured server (DATABASE_URL's), dropped at
the end:

  ceilings    COPY rows/s into a table shaped like read.activity, and the round trip of
              a single-row SELECT by primary key (the raw PostgreSQL figures)
  generate    --events events over --docs documents (default 1,000,000 over 1,000),
              made by the real domain (parse_op, decide, evolve: valid ops, undo and
              redo included, a realistic mix) and COPYed into events, documents,
              members and log_head; NOT through the append path (the write side has
              its own benchmark), and without op_ledger rows (the read side never
              reads them). Plus two documents for the queries: 10,000 elements, and
              100,000 events.
  project     catch_up (app/views/writer.py) from an empty read side for --seconds
              (events/s); then `python -m app worker` processes, 1 and 2 of them, for
              --seconds each, from where the last left off (events/s from the checkpoints)
  rebuild     the checkpoints are set to the head (the views are declared caught up:
              what they hold does not matter, the rebuild replaces it), then
              `python -m app rebuild --all` (one fold for the four views) and
              `python -m app rebuild doc_state`, each timed with its peak RSS
  queries     a real gateway process (`python -m app serve`): GET /api/documents/{id}
              on the 10,000-element document, and ?at= at random versions of the
              100,000-event document, sequentially, p50/p99 over --requests each
  lag         one worker process; 64 writers through the command handler (in this
              process), paced at each of --lag-rates ops/s over 100 documents; the lag
              of each op from its ack to the first poll (every 2 ms) of read.doc_state
              that shows its version
  verify      `verify` over the whole store (events/s), with --verify

Prints one line per figure with the ceiling beside it; with --write-docs updates the
block between the bench_read markers in docs/benchmarks.md.

    .venv/bin/python scripts/bench_read.py [--events 1000000] [--write-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import gc
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.command import CommandHandler
from app.domain import WriteModel, create_op, decide, evolve, parse_op
from app.errors import AppError
from app.store.migrate import migrate
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from app.tokens import issue_token
from app.views.verify import verify
from app.views.writer import catch_up

ROOT = Path(__file__).resolve().parent.parent
SECRET = "a benchmark secret that is long enough for HS256"
EVENT_COLUMNS = ("position", "doc_id", "v", "kind", "op", "effect", "actor", "op_id", "ts")
BIG = "big-10k"  # 10,000 elements
LONG = "long-100k"  # 100,000 events
# Each generated stream is used by this many documents (the domain makes events at
# ~100 µs each; the fold costs the same for a copy as for an original).
COPIES = 10


@dataclass
class Figure:
    name: str
    value: str
    ceiling: str = ""
    target: str = ""


@dataclass
class Run:
    figures: list[Figure] = field(default_factory=list)

    def add(self, name: str, value: str, ceiling: str = "", target: str = "") -> None:
        figure = Figure(name, value, ceiling, target)
        self.figures.append(figure)
        line = f"{name:46s} {value:>28s}"
        if ceiling:
            line += f"  | ceiling {ceiling}"
        if target:
            line += f"  | target {target}"
        print(line, flush=True)


def pct(data: list[float], q: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")


# -- ceilings ---------------------------------------------------------------------------


async def copy_ceiling(pool: asyncpg.Pool, rows: int = 300_000) -> float:
    """COPY rows/s into a table shaped like read.activity (primary key included)."""
    records = [
        (f"doc-{i // 1000:05d}", i % 1000 + 1, "user", "element.update", i) for i in range(rows)
    ]
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE bench_copy (doc_id text, v bigint, actor text, kind text, ts bigint,"
            " PRIMARY KEY (doc_id, v))"
        )
        try:
            started = time.perf_counter()
            for i in range(0, rows, 10_000):
                await conn.copy_records_to_table("bench_copy", records=records[i : i + 10_000])
            return rows / (time.perf_counter() - started)
        finally:
            await conn.execute("DROP TABLE bench_copy")


async def select_ceiling(pool: asyncpg.Pool, n: int = 3000) -> tuple[float, float]:
    """p50, p99 ms of a single-row SELECT by primary key of a 20 kB bytea."""
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE bench_sel (id int PRIMARY KEY, state bytea)")
        try:
            await conn.execute(
                "INSERT INTO bench_sel SELECT i, convert_to(repeat('x', 20000), 'UTF8')"
                " FROM generate_series(1, 100) AS i"
            )
            times = []
            for i in range(n):
                t0 = time.perf_counter()
                await conn.fetchval("SELECT state FROM bench_sel WHERE id = $1", i % 100 + 1)
                times.append(time.perf_counter() - t0)
            return pct(times, 0.5), pct(times, 0.99)
        finally:
            await conn.execute("DROP TABLE bench_sel")


# -- the events -------------------------------------------------------------------------


class Doc:
    """One document's write model and the ids a plausible next op can name."""

    def __init__(self, doc_id: str, owner: str, ts: dt.datetime) -> None:
        self.id = doc_id
        self.model = evolve(WriteModel.new(doc_id), 1, owner, create_op("Doc"), {})
        self.layers: list[str] = []
        self.elements: list[str] = []
        self.n = 0

    def next_op(self, rng: random.Random) -> dict[str, Any]:
        self.n += 1
        n = self.n
        roll = rng.random()
        if not self.layers or (roll < 0.02 and len(self.layers) < 6):
            self.layers.append(f"L{n}")
            return {"kind": "layer.add", "layer": f"L{n}", "name": f"layer {n}"}
        if roll < 0.25 or not self.elements:
            self.elements.append(f"e{n}")
            if rng.random() < 0.7:
                shape, props = "rect", {
                    "x": rng.randint(0, 800), "y": rng.randint(0, 600), "w": 20, "h": 10,
                    "fill": "#336699",
                }  # fmt: skip
            else:
                shape, props = "stroke", {
                    "color": "#112233", "width": 3,
                    "points": [[rng.randint(0, 800), rng.randint(0, 600), 0.5] for _ in range(20)],
                }  # fmt: skip
            return {
                "kind": "element.add",
                "element": f"e{n}",
                "layer": rng.choice(self.layers),
                "shape": shape,
                "props": props,
            }
        if roll < 0.80:
            element = rng.choice(self.elements)
            return {"kind": "element.update", "element": element, "set": {"x": rng.randint(0, 800)}}
        if roll < 0.85:
            element = self.elements.pop(rng.randrange(len(self.elements)))
            return {"kind": "element.remove", "element": element}
        if roll < 0.90:
            return {"kind": "undo"}
        if roll < 0.92:
            return {"kind": "redo"}
        if roll < 0.95:
            return {"kind": "doc.rename", "title": f"title {n}"}
        if roll < 0.97:
            return {
                "kind": "layer.update",
                "layer": rng.choice(self.layers),
                "set": {"opacity": 0.5},
            }
        return {
            "kind": "batch",
            "ops": [
                {"kind": "element.update", "element": rng.choice(self.elements), "set": {"y": 1}},
                {
                    "kind": "layer.update",
                    "layer": rng.choice(self.layers),
                    "set": {"visible": True},
                },
            ],
        }


def stream_of(doc: Doc, n: int, rng: random.Random) -> list[tuple[str, bytes, bytes, str]]:
    """``n`` events of one document, the create first: ``(kind, op, effect, actor)``."""
    out = [("doc.create", orjson.dumps(create_op("Doc")), b"{}", "owner")]
    while len(out) < n:
        raw = doc.next_op(rng)
        actor = "owner" if rng.random() < 0.7 else "editor"
        try:
            decision = decide(doc.model, parse_op(raw), actor, "owner")
        except AppError:
            # an element the dice removed and then undid, and the like: refreshed
            doc.elements = [e.id for layer in doc.model.doc.layers for e in layer.elements]
            doc.layers = [layer.id for layer in doc.model.doc.layers]
            continue
        doc.model = evolve(doc.model, doc.model.v + 1, actor, decision.op, decision.effect)
        out.append((decision.kind, orjson.dumps(decision.op), orjson.dumps(decision.effect), actor))
    return out


def events_of(
    templates: list[list[tuple[str, bytes, bytes, str]]],
    copies: int,
    rng: random.Random,
    ts: dt.datetime,
) -> Iterator[tuple[Any, ...]]:
    """Every template stream ``copies`` times under distinct document ids, the
    documents' events interleaved at random (each document in version order), as rows
    of ``events`` from position 1."""
    ids = [f"doc-{t:04d}-{c:02d}" for t in range(len(templates)) for c in range(copies)]
    order = [d for d in range(len(ids)) for _ in range(len(templates[d // copies]))]
    rng.shuffle(order)
    next_v = [0] * len(ids)
    step = dt.timedelta(microseconds=200)
    for position, d in enumerate(order, start=1):
        v = next_v[d] = next_v[d] + 1
        kind, op, effect, actor = templates[d // copies][v - 1]
        ts += step
        yield (position, ids[d], v, kind, op, effect, actor, None if v == 1 else f"op{v}", ts)


def big_doc_events(doc: Doc, elements: int, rng: random.Random) -> Iterator[tuple[str, Any]]:
    """Ops for the query benchmark's large document: ``elements`` rectangles on 4 layers."""
    for n in range(4):
        yield "owner", {"kind": "layer.add", "layer": f"L{n}", "name": f"layer {n}"}
    for n in range(elements):
        yield "owner", {
            "kind": "element.add", "element": f"e{n}", "layer": f"L{n % 4}", "shape": "rect",
            "props": {"x": rng.randint(0, 800), "y": rng.randint(0, 600), "w": 20, "h": 10},
        }  # fmt: skip


def long_doc_events(events: int, rng: random.Random) -> Iterator[tuple[str, Any]]:
    """Ops for the ?at= benchmark: 200 elements, then updates to the end."""
    yield "owner", {"kind": "layer.add", "layer": "L", "name": "layer"}
    for n in range(200):
        yield "owner", {
            "kind": "element.add", "element": f"e{n}", "layer": "L", "shape": "rect",
            "props": {"x": n, "y": 0, "w": 20, "h": 10},
        }  # fmt: skip
    for _ in range(events - 202):
        yield "owner", {
            "kind": "element.update", "element": f"e{rng.randrange(200)}",
            "set": {"x": rng.randint(0, 800), "y": rng.randint(0, 600)},
        }  # fmt: skip


def scripted(
    doc: Doc, ops: Iterator[tuple[str, Any]], start: int, ts: dt.datetime
) -> Iterator[tuple[Any, ...]]:
    position = start + 1
    yield (
        position,
        doc.id,
        1,
        "doc.create",
        orjson.dumps(create_op("x")),
        b"{}",
        "owner",
        None,
        ts,
    )
    doc.model = evolve(WriteModel.new(doc.id), 1, "owner", create_op("x"), {})
    for actor, raw in ops:
        decision = decide(doc.model, parse_op(raw), actor, "owner")
        v = doc.model.v + 1
        doc.model = evolve(doc.model, v, actor, decision.op, decision.effect)
        position += 1
        yield (
            position, doc.id, v, decision.kind, orjson.dumps(decision.op),
            orjson.dumps(decision.effect), actor, f"op{position}", ts,
        )  # fmt: skip


async def load(conn: asyncpg.Connection, rows: Iterator[tuple[Any, ...]]) -> int:
    """COPY ``rows`` into events, 20,000 at a time; returns the last position."""
    last = 0
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= 20_000:
            await conn.copy_records_to_table("events", records=chunk, columns=EVENT_COLUMNS)
            last = chunk[-1][0]
            chunk = []
    if chunk:
        await conn.copy_records_to_table("events", records=chunk, columns=EVENT_COLUMNS)
        last = chunk[-1][0]
    return int(last)


async def generate(pool: asyncpg.Pool, events: int, docs: int, query_docs: bool) -> int:
    rng = random.Random(7)
    ts = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    copies = COPIES if docs % COPIES == 0 else 1
    per_doc = events // docs
    templates = [stream_of(Doc(f"t{t}", "owner", ts), per_doc, rng) for t in range(docs // copies)]
    async with pool.acquire() as conn:
        head = await load(conn, events_of(templates, copies, rng, ts))
        if query_docs:
            big = Doc(BIG, "owner", ts)
            head = await load(conn, scripted(big, big_doc_events(big, 10_000, rng), head, ts))
            long = Doc(LONG, "owner", ts)
            head = await load(conn, scripted(long, long_doc_events(100_000, rng), head, ts))
        await conn.execute(
            "INSERT INTO documents (id, title, owner, v, last_position)"
            " SELECT doc_id, 'Doc', 'owner', max(v), max(position) FROM events GROUP BY doc_id"
        )
        await conn.execute(
            "INSERT INTO members (doc_id, user_id, role) SELECT id, 'owner', 'owner' FROM documents"
        )
        await conn.execute("UPDATE log_head SET last_position = $1", head)
        await conn.execute("ANALYZE")
    return head


# -- projection -------------------------------------------------------------------------


async def applied(pool: asyncpg.Pool) -> int:
    """Events applied to every view so far: the lowest checkpoint of doc_state."""
    return int(await pool.fetchval("SELECT min(position) FROM read.checkpoints"))


async def project_catch_up(pool: asyncpg.Pool, seconds: float) -> float:
    before = await applied(pool)
    started = time.perf_counter()
    task = asyncio.create_task(catch_up(pool, batch=2000))
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return (await applied(pool) - before) / (time.perf_counter() - started)


def app_env(dsn: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "APP_ENV": "prod",
        "APP_SECRET": SECRET,
        "LOG_LEVEL": "warning",
        "WORKER_METRICS_PORT": "off",
        **extra,
    }


async def project_workers(pool: asyncpg.Pool, dsn: str, n: int, seconds: float) -> float | None:
    """Events/s of ``n`` worker processes, from the checkpoints' progress."""
    procs = []
    try:
        for i in range(n):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "app",
                    "worker",
                    "--id",
                    f"bench-{i}",
                    env=app_env(dsn),
                    cwd=ROOT,
                )
            )
        # The clock starts at the first progress (leases taken), stops after ``seconds``
        # or at the head, whichever comes first.
        head = int(await pool.fetchval("SELECT last_position FROM log_head"))
        first = await applied(pool)
        deadline = time.perf_counter() + 30
        while await applied(pool) == first and time.perf_counter() < deadline:
            if any(p.returncode is not None for p in procs):
                return None
            await asyncio.sleep(0.05)
        before, started = await applied(pool), time.perf_counter()
        now = before
        while time.perf_counter() - started < seconds and now < head:
            await asyncio.sleep(0.25)
            now = await applied(pool)
        return (now - before) / (time.perf_counter() - started)
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.wait(), 15)
            if p.returncode is None:
                p.kill()
                await p.wait()


def rebuild_command(dsn: str, args: list[str]) -> tuple[float, float, str]:
    """``python -m app rebuild ARGS`` as an operator runs it: (seconds, peak RSS in MiB,
    stdout). Under /usr/bin/time: a child forked from this process would count this
    process's pages in its own peak until its exec."""
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("r") as rss_file:
        result = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, sys.executable, "-m", "app",
             "rebuild", *args],
            env=app_env(dsn), cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        took = time.perf_counter() - started
        rss = int(rss_file.read().split()[-1]) / 1024
    out = result.stdout
    if result.returncode != 0:
        out += f" (exit status {result.returncode}: {result.stderr[-500:]})"
    return took, rss, out


# -- queries ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def query_latencies(dsn: str, requests: int) -> tuple[list[float], list[float], int] | None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve",
        env=app_env(dsn, APP_PORT=str(port), APP_HOST="127.0.0.1"), cwd=ROOT,
    )  # fmt: skip
    token = issue_token(SECRET, "owner", name="owner", ttl=3600, now=time.time())
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
        ) as client:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/healthz")).status_code < 500:
                        break
                await asyncio.sleep(0.1)
            else:
                return None
            state: list[float] = []
            size = 0
            for _ in range(requests):
                t0 = time.perf_counter()
                r = await client.get(f"/api/documents/{BIG}")
                state.append(time.perf_counter() - t0)
                r.raise_for_status()
                size = len(r.content)
            rng = random.Random(3)
            at: list[float] = []
            for _ in range(requests):
                v = rng.randint(1, 100_000)
                t0 = time.perf_counter()
                r = await client.get(f"/api/documents/{LONG}", params={"at": v})
                at.append(time.perf_counter() - t0)
                r.raise_for_status()
            return state, at, size
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 15)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- lag --------------------------------------------------------------------------------


async def start_worker(dsn: str, name: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "worker", "--id", name, env=app_env(dsn), cwd=ROOT
    )  # fmt: skip


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 15)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def lag(
    pool: asyncpg.Pool, rate: float, seconds: float, writers: int = 64
) -> tuple[list[float], float]:
    """Projection lag under paced writes through the command handler (one worker process
    running): from each op's ack to the first poll (every 2 ms) that sees its version
    in ``read.doc_state``. 100 documents, each writer moving its own rectangle.
    Returns the lags and the ops/s achieved."""
    store = PostgresStore(pool)
    handler = CommandHandler(store)
    await handler.start()
    prefix = uuid.uuid4().hex[:6]
    docs = [f"lag-{prefix}-{d}" for d in range(100)]
    acks: dict[str, collections.deque[tuple[int, float]]] = {d: collections.deque() for d in docs}
    lags: list[float] = []
    done = asyncio.Event()
    try:
        for doc_id in docs:
            await handler.create_document(doc_id, "bench", "lag")
        for w in range(writers):
            doc_id = docs[w % len(docs)]
            await handler.submit(
                doc_id,
                "bench",
                "owner",
                f"L{w}",
                {"kind": "layer.add", "layer": f"L{w}", "name": "w"},
            )
            await handler.submit(
                doc_id, "bench", "owner", f"E{w}",
                {"kind": "element.add", "element": f"w{w}", "layer": f"L{w}", "shape": "rect",
                 "props": {"x": 0, "y": 0, "w": 10, "h": 10}},
            )  # fmt: skip
        await asyncio.sleep(2)  # the worker projects the setup

        async def poll() -> None:
            async with pool.acquire() as conn:
                while not done.is_set() or any(acks.values()):
                    rows = await conn.fetch(
                        "SELECT doc_id, v FROM read.doc_state WHERE doc_id = ANY($1)", docs
                    )
                    now = time.perf_counter()
                    for row in rows:
                        pending = acks[row["doc_id"]]
                        while pending and pending[0][0] <= row["v"]:
                            lags.append(now - pending.popleft()[1])
                    await asyncio.sleep(0.002)

        async def writer(w: int) -> None:
            rng = random.Random(w)
            period = writers / rate
            due = time.perf_counter() + period * w / writers
            i = 0
            while due < started + seconds:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                due += period
                doc_id = docs[w % len(docs)]
                op = {
                    "kind": "element.update",
                    "element": f"w{w}",
                    "set": {"x": rng.randint(0, 800)},
                }
                ack = await handler.submit(doc_id, "bench", "owner", f"{w}-{i}", op)
                acks[doc_id].append((ack.v, time.perf_counter()))
                i += 1

        started = time.perf_counter()
        poller = asyncio.create_task(poll())
        await asyncio.gather(*(writer(w) for w in range(writers)))
        achieved = len(lags) + sum(map(len, acks.values()))
        achieved_rate = achieved / (time.perf_counter() - started)
        done.set()
        await asyncio.wait_for(poller, 60)
    finally:
        await handler.close()
    return lags, achieved_rate


# -- main -------------------------------------------------------------------------------


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {cpu}, Python {platform.python_version()}"


async def bench(args: argparse.Namespace, dsn: str, run: Run) -> None:
    await migrate(dsn)
    pool = await create_pool(
        dsn,
        8,
        server_settings={"statement_timeout": "0", "idle_in_transaction_session_timeout": "0"},
    )
    try:
        version = await pool.fetchval("SHOW server_version")
        print(f"machine: {machine()}; PostgreSQL {version}", flush=True)
        copy_rate = await copy_ceiling(pool)
        p50, p99 = await select_ceiling(pool)
        copy_s = f"COPY {copy_rate:,.0f} rows/s"
        select_s = f"SELECT by key p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        started = time.perf_counter()
        head = await generate(pool, args.events, args.docs, not args.no_queries)
        took = time.perf_counter() - started
        run.add(
            f"generate {args.events:,} events, {args.docs:,} docs",
            f"{head:,} events in {took:.0f} s",
            "(domain decide+evolve, COPY)",
        )
        rate = await project_catch_up(pool, args.seconds)
        run.add("project: catch_up (one process)", f"{rate:,.0f} events/s", copy_s)
        if not args.no_workers:
            for n in (1, 2):
                rate_w = await project_workers(pool, dsn, n, args.seconds)
                if rate_w is None:
                    run.add(f"project: {n} worker process(es)", "did not start")
                else:
                    run.add(f"project: {n} worker process(es)", f"{rate_w:,.0f} events/s", copy_s)
        await pool.execute("UPDATE read.checkpoints SET position = $1", head)
        for what in (["--all"], ["doc_state"]):
            took, rss, out = await asyncio.to_thread(rebuild_command, dsn, what)
            folded = next((line for line in out.splitlines() if line.startswith("folded")), out)
            rate = folded.split("(")[1].split(")")[0] if "(" in folded else "failed"
            run.add(
                f"rebuild {what[0]} ({head:,} events)",
                f"{took:.1f} s, {rate}, peak RSS {rss:,.0f} MiB",
                copy_s,
                "1M events under 60 s",
            )
        # This process made the events and holds what catch_up and the generator left:
        # out of the cyclic GC's way, so its pauses do not count as lag below.
        gc.collect()
        gc.freeze()
        if not args.no_queries:
            result = await query_latencies(dsn, args.requests)
            if result is None:
                run.add("GET /api/documents/{id}", "gateway did not start")
            else:
                state, at, size = result
                run.add(
                    f"GET state, 10,000 elements ({size / 1024:,.0f} kB)",
                    f"p50 {pct(state, 0.5):.2f} ms, p99 {pct(state, 0.99):.2f} ms",
                    select_s,
                    "p99 under 20 ms",
                )
                run.add(
                    "GET ?at=v, 100,000-event document",
                    f"p50 {pct(at, 0.5):.2f} ms, p99 {pct(at, 0.99):.2f} ms",
                    select_s,
                    "under 100 ms",
                )
        if not args.no_lag:
            worker = await start_worker(dsn, "bench-lag")
            try:
                for lag_rate in args.lag_rates:
                    lags, achieved = await lag(pool, lag_rate, args.seconds)
                    run.add(
                        f"lag ack -> doc_state, {lag_rate:,.0f} ops/s asked, {achieved:,.0f}"
                        " done, 1 worker",
                        f"p50 {pct(lags, 0.5):.1f} ms, p99 {pct(lags, 0.99):.1f} ms",
                        select_s,
                        "p99 under 100 ms",
                    )
            finally:
                await stop(worker)
        if args.verify:
            started = time.perf_counter()
            report = await verify(pool)
            took = time.perf_counter() - started
            run.add(
                "verify (I2, I5, I6)",
                f"{took:.0f} s, {report.events / took:,.0f} events/s",
                "OK" if report.ok else "DIFFERENCES",
            )
    finally:
        await pool.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--docs", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=15.0, help="per projection figure")
    parser.add_argument("--requests", type=int, default=1_000, help="per query figure")
    parser.add_argument("--no-workers", action="store_true")
    parser.add_argument("--no-queries", action="store_true")
    parser.add_argument("--no-lag", action="store_true")
    parser.add_argument(
        "--lag-rates",
        type=float,
        nargs="+",
        default=[2000.0, 8000.0],
        help="ops/s of the lag runs (8,000: the write benchmark's paced many-docs load)",
    )
    parser.add_argument("--verify", action="store_true", help="also time verify")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/atelier")
    base = admin.rsplit("/", 1)[0]
    db = f"atelier_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(f"{base}/postgres")
    await conn.execute(f'CREATE DATABASE "{db}"')
    await conn.close()
    run = Run()
    try:
        await bench(args, f"{base}/{db}", run)
    finally:
        conn = await asyncpg.connect(f"{base}/postgres")
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await conn.close()
    if args.write_docs:
        write_docs(run, args)
    return 0


def write_docs(run: Run, args: argparse.Namespace) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    start, end = "<!-- bench_read:start -->", "<!-- bench_read:end -->"
    lines = [
        start,
        "",
        f"Run on {time.strftime('%Y-%m-%d')}: {machine()}; {args.events:,} events over "
        f"{args.docs:,} documents; `.venv/bin/python scripts/bench_read.py --write-docs`.",
        "",
        "| figure | measured | raw ceiling, same run | target |",
        "|---|---|---|---|",
    ]
    lines += [f"| {f.name} | {f.value} | {f.ceiling} | {f.target} |" for f in run.figures]
    lines += ["", end]
    block = "\n".join(lines)
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"updated {path}")


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
