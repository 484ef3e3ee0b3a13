"""Real-time fan-out benchmark: edit-to-delivery latency on one document, beside a floor.

Starts, on a throwaway database of the configured PostgreSQL server and a fresh Redis key
prefix, the server pieces as deployed, each its own process: ``python -m app serve``
(one gateway), ``python -m app relay`` and ``python -m app snapshotter``. Then, for each
scenario (one document; 10 editors send ``op`` frames at the total rate, paced by a
schedule; N viewers follow the document):

  500x20    500 viewers + 10 editors at 20 ops/s     target p99 < 10 ms
  500x100   500 viewers + 10 editors at 100 ops/s    target p99 < 50 ms
  1000x20   1,000 viewers + 10 editors at 20 ops/s   target p99 < 30 ms

it runs the same client processes (viewers spread over 2 processes, editors in a third;
uvloop and the ``websockets`` library) against the gateway, and right after against the
floor: a bare ``websockets`` broadcast server in its own process that answers ``hello``
with a ``welcome`` and broadcasts, for each ``op``, an ``event`` frame of the same shape
to every socket (``websockets.broadcast``). Targets: the p99 above, and within 2x of the
floor's p99; no lost and no duplicated delivery.

Latency is the viewer's receive time minus the time the op was DUE by the editors'
schedule (not when it was sent: no coordinated omission); the due time travels in the op
id (``t<monotonic ns>-<n>``), and CLOCK_MONOTONIC is one clock for every process. Each
viewer checks that versions come once, in order, with no gap. Ops due in the first
``--warmup`` seconds are delivered and checked but not counted. Gateway CPU and RSS come
from /proc/<pid>/stat and /proc/<pid>/status, sampled during the counted window.

Then memory per idle connection: on a freshly started gateway (so that memory freed by
the scenarios' sockets cannot hide the cost) ``--idle`` connections hello, join the
document and stay idle; the gateway's RSS delta / N. The same for a fresh floor process.
Kernel socket buffers are not part of a process's RSS.

    .venv/bin/python scripts/bench_fanout.py [--seconds 30] [--scenarios 500x20,1000x20]
        [--viewers-scale 0.2] [--idle 2000] [--write-docs]
        [--probe-gateway | --profile-gateway FILE]

``--probe-gateway`` runs the gateway with timers around the commit, the fan-out loop, the
sends and GC collections (see ``probed_gateway``); ``--profile-gateway`` under cProfile.
Viewers use the ``websockets`` sans-I/O client protocol (``ViewerSocket``), which costs the
load generator less CPU per frame than a task per connection; editors use its asyncio
client.

Traffic goes to 127.0.0.1 only; the run stops by itself, stops its processes, drops its
database and deletes its Redis keys. Exit status 1 when a delivery was lost or doubled,
or an op was rejected.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg
import httpx
import orjson
import redis.asyncio as redis
import uvloop
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.loadtest.frames import FrameSplitter
from app.loadtest.procstat import cpu_ticks, rss_kib
from app.store.migrate import migrate
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from app.tokens import issue_token

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
MARK_START, MARK_END = "<!-- bench_fanout:start -->", "<!-- bench_fanout:end -->"
DOC_ID = "fanout"
EDITORS = 10
VIEWER_PROCESSES = 2
OPEN_CONCURRENCY = 50  # handshakes in flight per client process
OPEN_TIMEOUT = 60.0
DRAIN_TIMEOUT = 10.0  # after the last op: time for every viewer to get every event
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Scenario:
    key: str
    viewers: int
    rate: float
    target_ms: float

    def label(self, viewers: int) -> str:
        return f"{viewers:,} viewers + {EDITORS} editors, {self.rate:g} ops/s"


SCENARIOS = {
    s.key: s
    for s in (
        Scenario("500x20", 500, 20, 10),
        Scenario("500x100", 500, 100, 50),
        Scenario("1000x20", 1000, 20, 30),
    )
}


def say(line: str) -> None:
    print(f"==> {line}", flush=True)


# -- client processes (spawned; one event loop each, driven over a pipe) ---------------


async def receive(conn: Connection) -> Any:
    """``conn.recv()`` without blocking the event loop."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(conn.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())
        os.set_blocking(conn.fileno(), True)  # the loop made it non-blocking; recv reads it all
    return conn.recv()


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def open_socket(url: str, token: str) -> tuple[ClientConnection, int]:
    """A connection that said hello and got its welcome; returns it and the welcome's v."""
    ws = await connect(url, compression=None, ping_interval=None, open_timeout=30, max_size=2**24)
    try:
        await ws.send(orjson.dumps({"type": "hello", "token": token}).decode())
        async with asyncio.timeout(30):
            while True:
                msg = orjson.loads(await ws.recv())
                if msg.get("type") == "welcome":
                    return ws, int(msg["v"])
                if msg.get("type") == "error":
                    raise RuntimeError(f"hello refused: {msg}")
    except BaseException:
        await ws.close()
        raise


async def open_many(
    opener: Callable[[str, str], Awaitable[tuple[T, int]]], url: str, tokens: Sequence[str]
) -> list[tuple[T, int]]:
    """``opener(url, token)`` for every token, at most OPEN_CONCURRENCY at a time."""
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(token: str) -> tuple[T, int]:
        async with gate:
            return await opener(url, token)

    return await asyncio.gather(*(one(t) for t in tokens))


async def close_many(sockets: Sequence[ClientConnection | ViewerSocket]) -> None:
    gate = asyncio.Semaphore(200)

    async def one(ws: ClientConnection | ViewerSocket) -> None:
        async with gate:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)

    await asyncio.gather(*(one(ws) for ws in sockets))


def pct_ms(ordered: Sequence[int], q: float) -> float:
    """The q-quantile of sorted nanoseconds, in milliseconds."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6 if ordered else float("nan")


def due_of(op_id: object) -> int | None:
    """The schedule time an editor encoded in its op id (``t<ns>-<n>``)."""
    if isinstance(op_id, str) and op_id.startswith("t"):
        return int(op_id[1 : op_id.index("-")])
    return None


class Tally:
    """What the viewers of one client process saw of one run."""

    def __init__(self, first: Sequence[int]) -> None:
        self.last = list(first)  # per viewer: the last version it has
        self.latencies = array("q")
        self.measure_from = 1 << 62
        self.deliveries = 0  # counted ones (due inside the window)
        self.events = 0
        self.lost = 0
        self.dup = 0
        self.closed = 0  # connections the server closed during the run
        self.finishing = False
        self.goal = 1 << 62  # the last version of the run, once the editors know it
        self.behind = 0  # viewers that do not have it yet
        self.caught_up = asyncio.Event()

    def expect(self, final_v: int) -> None:
        self.goal = final_v
        self.behind = sum(1 for v in self.last if v < final_v)
        if not self.behind:
            self.caught_up.set()

    def frame(self, i: int, data: bytes, now: int) -> None:
        """A frame viewer ``i`` received at ``now``: ``event`` or ``events`` count."""
        msg = orjson.loads(data)
        kind = msg.get("type")
        if kind == "event":
            self.take(i, msg, now)
        elif kind == "events":
            for event in msg["events"]:
                self.take(i, event, now)

    def gone(self) -> None:
        if not self.finishing:
            self.closed += 1

    def take(self, i: int, event: dict[str, Any], now: int) -> None:
        v = event["v"]
        last = self.last[i]
        if v <= last:
            self.dup += 1
            return
        if v > last + 1:
            self.lost += v - last - 1
        self.last[i] = v
        self.events += 1
        if last < self.goal <= v:
            self.behind -= 1
            if not self.behind:
                self.caught_up.set()
        due = due_of(event.get("id"))
        if due is not None and due >= self.measure_from:
            self.latencies.append(now - due)
            self.deliveries += 1


class ViewerSocket(asyncio.Protocol):
    """One viewer on the ``websockets`` library's sans-I/O client protocol: each frame is
    handled as its bytes arrive, with no task or future per message, so that the load
    generator spends as little of the 2 cores as it can."""

    def __init__(self, uri: WebSocketURI, token: str) -> None:
        loop = asyncio.get_running_loop()
        self.ws = ClientProtocol(uri, max_size=None)
        self.hello = orjson.dumps({"type": "hello", "token": token})
        self.transport: asyncio.Transport | None = None
        self.welcomed: asyncio.Future[int] = loop.create_future()
        self.gone: asyncio.Future[None] = loop.create_future()
        self.on_message: Callable[[bytes, int], None] | None = None  # see follow()
        self.on_lost: Callable[[], None] | None = None
        self._frames = FrameSplitter(self.ws)  # the harness's fast path for text frames
        self._early: list[tuple[bytes, int]] = []  # after the welcome, before follow()

    def follow(self, sink: Callable[[bytes, int], None], lost: Callable[[], None]) -> None:
        """From now on, every message to ``sink`` (those already here first)."""
        self.on_message, self.on_lost = sink, lost
        for data, now in self._early:
            sink(data, now)
        self._early = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._take(self._frames.split(data), time.monotonic_ns())

    def eof_received(self) -> None:
        self._take(self._frames.eof(), time.monotonic_ns())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError(f"closed before the welcome: {exc!r}"))
        if not self.gone.done():
            self.gone.set_result(None)
            if self.on_lost is not None:
                self.on_lost()

    def _take(self, items: Iterator[bytes | Response], now: int) -> None:
        for item in items:
            if isinstance(item, bytes):
                self._message(item, now)
            elif self.ws.handshake_exc is not None:
                self.welcomed.set_exception(self.ws.handshake_exc)
            else:
                self.ws.send_text(self.hello)
        self._flush()

    def _message(self, data: bytes, now: int) -> None:
        if self.on_message is not None:
            self.on_message(data, now)
        elif self.welcomed.done():
            self._early.append((data, now))
        else:
            msg = orjson.loads(data)
            if msg.get("type") == "welcome":
                self.welcomed.set_result(int(msg["v"]))
            elif msg.get("type") == "error":
                self.welcomed.set_exception(RuntimeError(f"hello refused: {msg}"))

    def _flush(self) -> None:
        assert self.transport is not None
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    async def close(self) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_close(1000)
            self._flush()
        try:
            async with asyncio.timeout(5):
                await asyncio.shield(self.gone)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()


async def open_viewer(url: str, token: str) -> tuple[ViewerSocket, int]:
    """A light viewer that said hello and got its welcome; returns it and the welcome's v."""
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    _, viewer = await loop.create_connection(lambda: ViewerSocket(uri, token), uri.host, uri.port)
    try:
        async with asyncio.timeout(30):
            return viewer, await viewer.welcomed
    except BaseException:
        await viewer.close()
        raise


class Viewers:
    """The viewer side of one client process."""

    def __init__(self) -> None:
        self.sockets: list[ViewerSocket] = []
        self.tally = Tally([])
        self.idle: list[ViewerSocket] = []

    async def open(self, url: str, tokens: list[str]) -> dict[str, Any]:
        started = time.monotonic()
        opened = await open_many(open_viewer, url, tokens)
        self.sockets = [ws for ws, _ in opened]
        tally = self.tally = Tally([v for _, v in opened])
        for i, ws in enumerate(self.sockets):
            ws.follow(functools.partial(tally.frame, i), tally.gone)
        return {"opened": len(opened), "seconds": time.monotonic() - started}

    async def measure(self, from_ns: int) -> dict[str, Any]:
        self.tally.measure_from = from_ns
        return {}

    async def finish(self, final_v: int, wait_s: float) -> dict[str, Any]:
        """Wait until every viewer has ``final_v`` (at most ``wait_s``); then close them."""
        tally = self.tally
        tally.expect(final_v)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await tally.caught_up.wait()
        short = sum(1 for v in tally.last if v < final_v)
        missing = sum(final_v - v for v in tally.last if v < final_v)
        tally.finishing = True
        await close_many(self.sockets)
        self.sockets = []
        return {
            "latencies": tally.latencies.tobytes(),
            "deliveries": tally.deliveries,
            "events": tally.events,
            "lost": tally.lost + missing,
            "dup": tally.dup,
            "closed": tally.closed,
            "short": short,
        }

    async def open_idle(self, url: str, tokens: list[str]) -> dict[str, Any]:
        self.idle += [ws for ws, _ in await open_many(open_viewer, url, tokens)]
        return {"opened": len(self.idle)}

    async def close_idle(self) -> dict[str, Any]:
        await close_many(self.idle)
        self.idle = []
        return {}


@dataclass
class EditorState:
    pending: set[str] = field(default_factory=set)
    max_v: int = 0
    acked: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    ack_latencies: array[int] = field(default_factory=lambda: array("q"))
    measure_from: int = 1 << 62  # acks of ops due before this are not counted


def make_op(editor: int, n: int) -> dict[str, Any]:
    """A move of the editor's own rectangle; one op in ten adds a small rectangle."""
    if n % 10 == 9:
        return {
            "kind": "element.add",
            "element": f"a{editor}-{n}",
            "layer": "L",
            "shape": "rect",
            "props": {"x": n % 800, "y": n % 600, "w": 8, "h": 8, "fill": "#336699"},
        }
    return {
        "kind": "element.update",
        "element": f"r{editor}",
        "set": {"x": (n * 7) % 800 + 0.5, "y": (n * 13) % 600 + 0.25},
    }


async def answers(ws: ClientConnection, state: EditorState) -> None:
    """An editor's incoming frames: acks and rejects (events are read and dropped)."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async for frame in ws:
            msg = orjson.loads(frame)
            kind = msg.get("type")
            if kind == "ack":
                state.acked += 1
                state.max_v = max(state.max_v, msg["v"])
                due = due_of(msg["id"])
                if due is not None and due >= state.measure_from:
                    state.ack_latencies.append(time.monotonic_ns() - due)
            elif kind == "reject":
                state.rejects[msg.get("code", "?")] += 1
            else:
                continue
            state.pending.discard(msg["id"])
            if not state.pending:
                state.done.set()


class Editors:
    """The editors' client process: paced ops on a schedule shared by all editors."""

    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.state = EditorState()
        self.counter = 0  # op numbers, unique over the whole run (element ids)

    async def open(self, url: str, tokens: list[str]) -> dict[str, Any]:
        self.sockets = [ws for ws, _ in await open_many(open_socket, url, tokens)]
        self.state = EditorState()
        self.tasks = [asyncio.create_task(answers(ws, self.state)) for ws in self.sockets]
        return {"opened": len(self.sockets)}

    async def run(self, rate: float, start_ns: int, measure_ns: int, end_ns: int) -> dict[str, Any]:
        self.state.measure_from = measure_ns
        lags = array("q")
        period = 1e9 / rate
        editors = len(self.sockets)

        async def pace(i: int, ws: ClientConnection) -> None:
            k = 0
            while (due := start_ns + int((k * editors + i) * period)) < end_ns:
                k += 1
                delay = due - time.monotonic_ns()
                if delay > 0:
                    await asyncio.sleep(delay / 1e9)
                self.counter += 1
                op_id = f"t{due}-{self.counter}"
                self.state.pending.add(op_id)
                self.state.done.clear()
                lags.append(time.monotonic_ns() - due)
                op = make_op(i, self.counter)
                await ws.send(orjson.dumps({"type": "op", "id": op_id, "op": op}).decode())

        await asyncio.gather(*(pace(i, ws) for i, ws in enumerate(self.sockets)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await self.state.done.wait()
        lag, ack = sorted(lags), sorted(self.state.ack_latencies)
        return {
            "sent": len(lags),
            "acked": self.state.acked,
            "unanswered": len(self.state.pending),
            "rejects": dict(self.state.rejects),
            "max_v": self.state.max_v,
            "lag_p99_ms": pct_ms(lag, 0.99),
            "ack_p50_ms": pct_ms(ack, 0.5),
            "ack_p99_ms": pct_ms(ack, 0.99),
        }

    async def close(self) -> dict[str, Any]:
        await close_many(self.sockets)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.sockets, self.tasks = [], []
        return {}


async def client_loop(conn: Connection, role: str) -> None:
    client: Viewers | Editors = Viewers() if role == "viewers" else Editors()
    while True:
        command, *params = await receive(conn)
        if command == "exit":
            return
        try:
            reply = await getattr(client, command)(*params)
        except Exception as exc:
            reply = {"error": f"{command}: {exc!r}"}
        conn.send(reply)


def client_main(conn: Connection, role: str) -> None:
    """Entry point of a client process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    raise_nofile()
    uvloop.run(client_loop(conn, role))


# -- the floor: a bare websockets broadcast server --------------------------------------


def token_user(token: object) -> str:
    """The token's ``sub``, unverified (the floor only needs an actor name)."""
    try:
        payload = str(token).split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["sub"])
    except (IndexError, ValueError, KeyError, orjson.JSONDecodeError):
        return "anonymous"


async def floor_server(port: int, ready: Connection) -> None:
    everyone: set[ServerConnection] = set()
    head = 0

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            hello = orjson.loads(await ws.recv())
            actor = token_user(hello.get("token"))
            welcome = {"type": "welcome", "doc": DOC_ID, "v": head, "role": "viewer"}
            welcome |= {"user": actor, "session": "s", "state": {}}
            # No await between the welcome at `head` and joining: no event in between.
            broadcast([ws], orjson.dumps(welcome).decode())
            everyone.add(ws)
            try:
                async for frame in ws:
                    on_frame(ws, actor, frame)
            finally:
                everyone.discard(ws)

    def on_frame(ws: ServerConnection, actor: str, frame: str | bytes) -> None:
        """An op: the next version, its event frame to every socket, the ack to its editor."""
        nonlocal head
        msg = orjson.loads(frame)
        if msg.get("type") != "op":
            return
        head += 1
        body = {"v": head, "op": msg["op"], "actor": actor, "id": msg["id"]}
        event = orjson.dumps({"type": "event", **body, "ts": int(time.time() * 1000)})
        broadcast(everyone, event.decode())
        broadcast([ws], orjson.dumps({"type": "ack", "id": msg["id"], "v": head}).decode())

    async with serve(handler, "127.0.0.1", port, compression=None, backlog=4096):
        ready.send("ready")
        await asyncio.Future()  # until the parent terminates the process


def floor_main(port: int, ready: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_nofile()
    uvloop.run(floor_server(port, ready))


# -- the probed gateway (--probe-gateway) -----------------------------------------------

PROBE_STAGES = ("commit", "enqueue", "send", "gc", "gc2")


def probed_gateway(out: str) -> int:
    """``python -m app serve`` with timers around these stages, written to ``out`` at exit:

    commit    ``PostgresStore.append``: the group-commit transaction without the commit
              tap; wall time, so a loop busy with other work (sends, GC) lengthens it
    enqueue   ``Channel._deliver``: the synchronous loop that puts a run's frame on every
              session's send queue
    send      from the end of that loop until the writer tasks it woke have run (a
              ``call_soon`` queued behind their wake-ups): the sockets' sends
    gc, gc2   each collection of Python's cyclic GC (``gc.callbacks``), young ones and full
              (generation 2) ones: a pause of the whole loop
    """
    import atexit
    import gc

    from app import cli
    from app.gateway import fanout
    from app.store import postgres

    samples: dict[str, array[int]] = {k: array("q") for k in PROBE_STAGES}

    def record(stage: str, started: int, ended: int) -> None:
        samples[stage].extend((started, ended - started))

    append = postgres.PostgresStore.append
    deliver = fanout.Channel._deliver

    async def timed_append(self: Any, batch: Any) -> Any:
        started = time.monotonic_ns()
        try:
            return await append(self, batch)
        finally:
            record("commit", started, time.monotonic_ns())

    def timed_deliver(self: Any, run: Any) -> None:
        started = time.monotonic_ns()
        deliver(self, run)
        done = time.monotonic_ns()
        record("enqueue", started, done)
        asyncio.get_running_loop().call_soon(lambda: record("send", done, time.monotonic_ns()))

    collecting = [0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[0] = time.monotonic_ns()
        else:
            stage = "gc2" if info.get("generation") == 2 else "gc"
            record(stage, collecting[0], time.monotonic_ns())

    gc.callbacks.append(on_gc)
    postgres.PostgresStore.append = timed_append  # type: ignore[method-assign]
    fanout.Channel._deliver = timed_deliver  # type: ignore[method-assign]
    atexit.register(
        lambda: Path(out).write_bytes(orjson.dumps({k: v.tolist() for k, v in samples.items()}))
    )
    return cli.main(["serve"])


def probe_note(path: Path, start_ns: int, end_ns: int) -> str:
    """The probe's stages over one counted window: count, p50/p99/max in ms."""
    data = orjson.loads(path.read_bytes())
    parts = []
    for stage in PROBE_STAGES:
        pairs = data[stage]
        inside = sorted(
            d for t, d in zip(pairs[::2], pairs[1::2], strict=True) if start_ns <= t < end_ns
        )
        parts.append(
            f"{stage} {len(inside):,}x {pct_ms(inside, 0.5):.2f}/{pct_ms(inside, 0.99):.2f}/"
            f"{pct_ms(inside, 1.0):.2f}"
        )
    return "probe (count, p50/p99/max ms): " + ", ".join(parts)


# -- /proc sampling ---------------------------------------------------------------------


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def tcp_mem_kib() -> int:
    """Kernel memory of every TCP socket buffer on the machine (/proc/net/sockstat)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            parts = line.split()
            return int(parts[parts.index("mem") + 1]) * PAGE // 1024
    return 0


SCRAPED = (
    "atelier_append_seconds_sum",
    "atelier_append_seconds_count",
    "atelier_append_batch_size_sum",
    "atelier_ack_seconds_sum",
    "atelier_ack_seconds_count",
    "atelier_ws_deliveries_total",
    "atelier_ws_gap_fills_total",
)


async def scrape(port: int) -> dict[str, float]:
    """The gateway's own counters (/metrics) that explain a run; summed over labels."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    found = dict.fromkeys(SCRAPED, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in found:
            found[name] += float(line.rsplit(" ", 1)[1])
    return found


def metrics_note(before: dict[str, float], after: dict[str, float]) -> str:
    d = {k: after[k] - before[k] for k in SCRAPED}
    commits = d["atelier_append_seconds_count"] or 1
    acks = d["atelier_ack_seconds_count"] or 1
    return (
        f"gateway metrics: {d['atelier_append_seconds_count']:,.0f} appends of "
        f"{d['atelier_append_batch_size_sum'] / commits:.1f} ops, "
        f"{d['atelier_append_seconds_sum'] / commits * 1000:.2f} ms each (the transaction and "
        f"the commit tap's fan-out loop); handler ack "
        f"{d['atelier_ack_seconds_sum'] / acks * 1000:.2f} ms mean; "
        f"{d['atelier_ws_deliveries_total']:,.0f} frames handed to sockets; "
        f"{d['atelier_ws_gap_fills_total']:,.0f} gap fills"
    )


async def backend_pids(dsn: str) -> list[int]:
    """The PostgreSQL backends serving the benchmark's database (the commit's other half)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


def ticks(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):  # a backend may come and go
            total += cpu_ticks(pid)
    return total


class Sampler:
    """CPU of groups of processes over a window (100 = one core), the peak RSS of the
    first group's first process, the whole machine's load, and the gateway's metrics at
    both ends (when its port is given)."""

    def __init__(self, pids: dict[str, list[int]], metrics_port: int | None) -> None:
        self.pids = pids
        self.metrics_port = metrics_port
        self.metrics: list[dict[str, float]] = []
        self.rss_max = 0
        self._task: asyncio.Task[None] | None = None
        self._start: dict[str, int] = {}
        self._busy = (0, 0)
        self._t0 = 0.0
        self.cpu: dict[str, float] = {}
        self.machine = 0.0  # % of every core
        self.others = 0.0  # % of one core used by processes not in ``pids``

    async def _sample_rss(self, pid: int) -> None:
        while True:
            self.rss_max = max(self.rss_max, rss_kib(pid))
            await asyncio.sleep(0.2)

    async def start(self) -> None:
        if self.metrics_port:
            self.metrics.append(await scrape(self.metrics_port))
        self._start = {name: ticks(pids) for name, pids in self.pids.items()}
        self._busy = machine_busy()
        self._t0 = time.monotonic()
        first = next(iter(self.pids.values()))[0]
        self._task = asyncio.create_task(self._sample_rss(first))

    async def stop(self) -> None:
        wall = time.monotonic() - self._t0
        for name, pids in self.pids.items():
            self.cpu[name] = (ticks(pids) - self._start[name]) / CLK_TCK / wall * 100
        busy, total = machine_busy()
        self.machine = (busy - self._busy[0]) / max(total - self._busy[1], 1) * 100
        self.others = max(0.0, self.machine * (os.cpu_count() or 1) - sum(self.cpu.values()))
        if self._task is not None:
            self._task.cancel()
        if self.metrics_port:
            self.metrics.append(await scrape(self.metrics_port))


# -- results ----------------------------------------------------------------------------


@dataclass
class RunResult:
    target: str
    viewers: int
    seconds: float
    latencies: list[int]
    deliveries: int
    lost: int
    dup: int
    closed: int
    short: int
    editors: dict[str, Any]
    cpu: dict[str, float]
    machine: float
    others: float
    rss_max_kib: int
    window: tuple[int, int] = (0, 0)  # the counted window, monotonic ns
    gateway: str = ""  # what the gateway's metrics say of the counted window
    probe: str = ""  # what the probed gateway's timers say of it (--probe-gateway)

    def pct(self, q: float) -> float:
        return pct_ms(self.latencies, q)

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds

    @property
    def rejected(self) -> int:
        return sum(self.editors["rejects"].values()) + self.editors["unanswered"]


@dataclass
class Row:
    scenario: Scenario
    viewers: int
    atelier: RunResult
    floor: RunResult

    @property
    def ratio(self) -> float:
        return self.atelier.pct(0.99) / self.floor.pct(0.99)

    @property
    def met(self) -> bool:
        a = self.atelier
        return (
            a.pct(0.99) < self.scenario.target_ms
            and self.ratio <= 2.0
            and a.lost == a.dup == 0
            and a.rejected == 0
        )


@dataclass
class IdleResult:
    target: str
    count: int
    before_kib: int
    after_kib: int
    tcp_kib: int

    @property
    def per_connection(self) -> float:
        return (self.after_kib - self.before_kib) / self.count


# -- the servers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Servers:
    """The Atelier processes and the floor, their logs under one temporary folder."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.port = int(env["APP_PORT"])
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.floor: multiprocessing.process.BaseProcess | None = None
        self.floor_port = free_port()

    def start(self, name: str, command: str, argv: list[str] | None = None) -> None:
        argv = argv or [sys.executable, "-m", "app", command]
        with (self.logs / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )

    async def start_gateway(self, profile: str | None = None, probe: Path | None = None) -> None:
        """The gateway, optionally under cProfile or with the probe's timers."""
        argv = None
        if profile:
            argv = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "app", "serve"]
        elif probe:
            argv = [sys.executable, __file__, "--probed-gateway", str(probe)]
        self.start("gateway", "serve", argv)
        url = f"http://127.0.0.1:{self.port}/readyz"
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.procs["gateway"].poll() is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the gateway did not become ready; see {self.logs}/gateway.log")

    async def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        # SIGINT, as `app dev` stops its children: uvicorn drains, the command returns
        # (and cProfile, when asked for, writes its stats; after SIGTERM it would not).
        proc.send_signal(signal.SIGINT)
        for _ in range(150):  # the gateway drains for up to 5 s
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.1)
        proc.kill()
        proc.wait()

    async def start_floor(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.floor = ctx.Process(target=floor_main, args=(self.floor_port, child), daemon=True)
        self.floor.start()
        async with asyncio.timeout(30):
            await receive(parent)

    def stop_floor(self) -> None:
        if self.floor is not None and self.floor.is_alive():
            self.floor.terminate()
            self.floor.join(5)
        self.floor = None

    def pid(self, name: str) -> int:
        if name == "floor":
            assert self.floor is not None and self.floor.pid is not None
            return self.floor.pid
        return self.procs[name].pid

    def url(self, target: str) -> str:
        port = self.port if target == "atelier" else self.floor_port
        return f"ws://127.0.0.1:{port}/ws/documents/{DOC_ID}"

    async def stop_all(self) -> None:
        for name in list(self.procs):
            await self.stop(name)
        self.stop_floor()


# -- the benchmark ----------------------------------------------------------------------


@dataclass
class Users:
    secret: str
    owner: str = "owner"

    def token(self, user: str) -> str:
        return issue_token(self.secret, user, name=None, ttl=4 * 3600, now=time.time())

    def tokens(self, prefix: str, count: int) -> list[str]:
        return [self.token(f"{prefix}{i}") for i in range(count)]


class Clients:
    """The client processes: viewers over two of them, editors in a third."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.viewers: list[Connection] = []
        self.editors: Connection | None = None
        for role in ["viewers"] * VIEWER_PROCESSES + ["editors"]:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_main, args=(child, role), daemon=True)
            proc.start()
            self.procs.append(proc)
            if role == "viewers":
                self.viewers.append(parent)
            else:
                self.editors = parent

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    @staticmethod
    async def ask(conn: Connection, *command: Any) -> dict[str, Any]:
        conn.send(command)
        reply: dict[str, Any] = await receive(conn)
        if "error" in reply:
            raise RuntimeError(f"client process: {reply['error']}")
        return reply

    async def ask_viewers(self, command: str, per_process: Sequence[Sequence[Any]]) -> list[Any]:
        return await asyncio.gather(
            *(self.ask(c, command, *p) for c, p in zip(self.viewers, per_process, strict=True))
        )

    async def ask_editors(self, *command: Any) -> dict[str, Any]:
        assert self.editors is not None
        return await self.ask(self.editors, *command)

    def stop(self) -> None:
        for conn in [*self.viewers, self.editors]:
            with contextlib.suppress(Exception):
                assert conn is not None
                conn.send(("exit",))
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


def split(items: Sequence[str], parts: int) -> list[list[str]]:
    return [list(items[i::parts]) for i in range(parts)]


async def run_target(
    target: str,
    scenario: Scenario,
    viewers: int,
    args: argparse.Namespace,
    servers: Servers,
    clients: Clients,
    users: Users,
) -> RunResult:
    """One scenario against one server (the gateway or the floor)."""
    url = servers.url(target)
    started = time.monotonic()
    tokens = split(users.tokens("v", viewers), VIEWER_PROCESSES)
    async with asyncio.timeout(OPEN_TIMEOUT):
        await clients.ask_viewers("open", [(url, t) for t in tokens])
        await clients.ask_editors("open", url, users.tokens("ed", EDITORS))
    say(
        f"{target} {scenario.key}: {viewers} viewers and {EDITORS} editors connected "
        f"in {time.monotonic() - started:.1f} s; {args.warmup + args.seconds:.0f} s of ops"
    )
    await asyncio.sleep(0.5)
    start_ns = time.monotonic_ns() + 100_000_000
    measure_ns = start_ns + int(args.warmup * 1e9)
    end_ns = measure_ns + int(args.seconds * 1e9)
    await clients.ask_viewers("measure", [(measure_ns,)] * VIEWER_PROCESSES)
    server = "gateway" if target == "atelier" else "floor"
    pids = {server: [servers.pid(server)], "clients": clients.pids}
    if target == "atelier":
        pids["relay"] = [servers.pid("relay")]
        pids["snapshotter"] = [servers.pid("snapshotter")]
        pids["postgres"] = await backend_pids(servers.env["DATABASE_URL"])
    sampler = Sampler(pids, servers.port if target == "atelier" else None)
    window = asyncio.create_task(sample_window(sampler, measure_ns, end_ns))
    editors = await clients.ask_editors("run", scenario.rate, start_ns, measure_ns, end_ns)
    await window
    seen = await clients.ask_viewers(
        "finish", [(editors["max_v"], DRAIN_TIMEOUT)] * VIEWER_PROCESSES
    )
    await clients.ask_editors("close")
    latencies = array("q")
    for part in seen:
        latencies.frombytes(part["latencies"])
    return RunResult(
        target=target,
        viewers=viewers,
        seconds=args.seconds,
        latencies=sorted(latencies),
        deliveries=sum(p["deliveries"] for p in seen),
        lost=sum(p["lost"] for p in seen),
        dup=sum(p["dup"] for p in seen),
        closed=sum(p["closed"] for p in seen),
        short=sum(p["short"] for p in seen),
        editors=editors,
        cpu=sampler.cpu,
        machine=sampler.machine,
        others=sampler.others,
        rss_max_kib=sampler.rss_max,
        window=(measure_ns, end_ns),
        gateway=metrics_note(sampler.metrics[0], sampler.metrics[1]) if sampler.metrics else "",
    )


async def sample_window(sampler: Sampler, start_ns: int, end_ns: int) -> None:
    await asyncio.sleep(max(0, start_ns - time.monotonic_ns()) / 1e9)
    await sampler.start()
    await asyncio.sleep(max(0, end_ns - time.monotonic_ns()) / 1e9)
    await sampler.stop()


async def measure_idle(
    target: str, count: int, servers: Servers, clients: Clients, users: Users
) -> IdleResult:
    """RSS per idle connection on a freshly started server process."""
    url = servers.url(target)
    pid = servers.pid("gateway" if target == "atelier" else "floor")
    # Warm up: the first connections pay for one-time allocations (imports, the channel).
    await clients.ask_viewers("open_idle", [(url, t) for t in split(users.tokens("w", 20), 2)])
    await clients.ask_viewers("close_idle", [()] * VIEWER_PROCESSES)
    await asyncio.sleep(1.0)
    before, tcp_before = rss_kib(pid), tcp_mem_kib()
    tokens = split(users.tokens("i", count), VIEWER_PROCESSES)
    async with asyncio.timeout(OPEN_TIMEOUT * 2):
        await clients.ask_viewers("open_idle", [(url, t) for t in tokens])
    await asyncio.sleep(2.0)
    after, tcp_after = rss_kib(pid), tcp_mem_kib()
    await clients.ask_viewers("close_idle", [()] * VIEWER_PROCESSES)
    return IdleResult(target, count, before, after, tcp_after - tcp_before)


async def setup_document(base_url: str, dsn: str, users: Users, viewers: int, idle: int) -> None:
    """The document, its layer, one rectangle per editor; every client user a member."""
    headers = {"Authorization": f"Bearer {users.token(users.owner)}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as http:
        r = await http.post("/api/documents", json={"title": "fan-out bench", "id": DOC_ID})
        r.raise_for_status()
        ops: list[dict[str, Any]] = [{"kind": "layer.add", "layer": "L", "name": "bench"}]
        ops += [
            {
                "kind": "element.add",
                "element": f"r{i}",
                "layer": "L",
                "shape": "rect",
                "props": {"x": 10 * i, "y": 10, "w": 40, "h": 30, "fill": "#993366"},
            }
            for i in range(EDITORS)
        ]
        for n, op in enumerate(ops):
            r = await http.post(f"/api/documents/{DOC_ID}/ops", json={"id": f"setup-{n}", "op": op})
            r.raise_for_status()
    pool = await create_pool(dsn, 4)
    try:
        store = PostgresStore(pool)
        members = [(f"ed{i}", "editor") for i in range(EDITORS)]
        members += [(f"v{i}", "viewer") for i in range(viewers)]
        members += [(f"{p}{i}", "viewer") for p, n in (("i", idle), ("w", 20)) for i in range(n)]
        for user, role in members:
            await store.set_member(DOC_ID, user, role)  # type: ignore[arg-type]
    finally:
        await pool.close()


# -- report -----------------------------------------------------------------------------


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cores = sum(1 for line in cpuinfo if line.startswith("processor"))
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?"
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = int(next(ln for ln in meminfo if ln.startswith("MemTotal")).split()[1])
    return f"{cores} cores ({model}), {mem_kib / 2**20:.1f} GiB, Python {sys.version.split()[0]}"


TABLE_HEAD = [
    "| scenario | deliveries/s | p50 | p99 | p99.9 | max | lost/dup | gateway CPU | "
    "gateway RSS | floor p50 / p99 | p99 / floor p99 | target | met? |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def table_row(row: Row) -> str:
    a, f = row.atelier, row.floor
    return (
        f"| {row.scenario.label(row.viewers)} | {a.rate:,.0f} | {a.pct(0.5):.1f} ms | "
        f"{a.pct(0.99):.1f} ms | {a.pct(0.999):.1f} ms | {a.pct(1.0):.1f} ms | "
        f"{a.lost}/{a.dup} | {a.cpu.get('gateway', 0):.0f}% | {a.rss_max_kib / 1024:.0f} MiB | "
        f"{f.pct(0.5):.1f} / {f.pct(0.99):.1f} ms | {row.ratio:.1f}x | "
        f"p99 < {row.scenario.target_ms:g} ms, ≤ 2x floor | {'yes' if row.met else '**no**'} |"
    )


def run_note(key: str, r: RunResult) -> str:
    server = r.cpu.get("gateway", r.cpu.get("floor", 0.0))
    per_delivery = server / 100 / r.rate * 1e6 if r.deliveries else float("nan")
    rest = ", ".join(
        f"{name} {r.cpu[name]:.0f}%"
        for name in ("relay", "snapshotter", "postgres")
        if name in r.cpu
    )
    e = r.editors
    line = (
        f"- {key} {r.target}: server CPU {server:.0f}% ({per_delivery:.1f} µs per counted "
        f"delivery){', ' + rest if rest else ''}, client processes {r.cpu['clients']:.0f}%; "
        f"whole machine {r.machine:.0f}% of {os.cpu_count()} cores, of which "
        f"{r.others:.0f}% of a core by other processes; {e['sent']:,} ops sent (send lag p99 "
        f"{e['lag_p99_ms']:.1f} ms), ack p50/p99 {e['ack_p50_ms']:.1f}/{e['ack_p99_ms']:.1f} "
        f"ms, rejected {e['rejects'] or 0}, unanswered {e['unanswered']}; closed by the "
        f"server {r.closed}, viewers short of the last version {r.short}"
    )
    return line + "".join(f"; {note}" for note in (r.gateway, r.probe) if note) + "."


def notes(rows: Sequence[Row], idle: Sequence[IdleResult]) -> list[str]:
    lines = [run_note(row.scenario.key, r) for row in rows for r in (row.atelier, row.floor)]
    for i in idle:
        lines.append(
            f"- idle {i.target}: {i.count:,} connections (hello + join, then silent): RSS "
            f"{i.before_kib / 1024:.1f} → {i.after_kib / 1024:.1f} MiB = "
            f"**{i.per_connection:.1f} KiB per connection** (target for the gateway: under 40 "
            f"KiB); kernel TCP buffers (both ends, not in RSS) {i.tcp_kib:+,} KiB."
        )
    return lines


def report(rows: Sequence[Row], idle: Sequence[IdleResult]) -> list[str]:
    return [*TABLE_HEAD, *(table_row(r) for r in rows), "", *notes(rows, idle)]


def write_docs(lines: list[str], argv: Sequence[str], seconds: float) -> None:
    text = DOCS.read_text()
    command = " ".join(["scripts/bench_fanout.py", *argv])
    block = "\n".join(
        [
            MARK_START,
            "",
            f"Run on {time.strftime('%Y-%m-%d')}: {machine()}; {seconds:g} s per run; "
            f"`.venv/bin/python {command}`.",
            "",
            *lines,
            "",
            MARK_END,
        ]
    )
    if MARK_START in text:
        text = text[: text.index(MARK_START)] + block + text[text.index(MARK_END) + len(MARK_END) :]
    else:
        text = text.rstrip() + "\n\n## Real-time fan-out\n\n" + block + "\n"
    DOCS.write_text(text)
    say(f"updated {DOCS}")


# -- main -------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="counted seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"subset of {','.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--viewers-scale", type=float, default=1.0, help="multiply viewer counts (small runs)"
    )
    parser.add_argument("--idle", type=int, default=2000, help="idle connections (0: skip)")
    parser.add_argument("--write-docs", action="store_true", help="record in docs/benchmarks.md")
    parser.add_argument(
        "--profile-gateway", metavar="FILE", help="run the gateway under cProfile, stats to FILE"
    )
    parser.add_argument(
        "--probe-gateway",
        action="store_true",
        help="time the gateway's commit, fan-out loop and sends (monkeypatched timers)",
    )
    args = parser.parse_args()
    if args.profile_gateway and args.probe_gateway:
        parser.error("--profile-gateway and --probe-gateway exclude each other")
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {list(SCENARIOS)}")
    return args


async def throwaway_database(admin: str, action: str, name: str) -> None:
    conn = await asyncpg.connect(f"{admin.rsplit('/', 1)[0]}/postgres")
    try:
        if action == "create":
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def delete_keys(url: str, prefix: str) -> None:
    client = redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def run_all(
    args: argparse.Namespace, servers: Servers, clients: Clients, users: Users
) -> tuple[list[Row], list[IdleResult]]:
    rows: list[Row] = []
    for key in args.scenarios.split(","):
        scenario = SCENARIOS[key]
        viewers = max(1, round(scenario.viewers * args.viewers_scale))
        atelier = await run_target("atelier", scenario, viewers, args, servers, clients, users)
        say(summary(atelier))
        await asyncio.sleep(1.0)
        floor = await run_target("floor", scenario, viewers, args, servers, clients, users)
        say(summary(floor))
        rows.append(Row(scenario, viewers, atelier, floor))
        await asyncio.sleep(1.0)
    await servers.stop("gateway")  # a probed gateway writes its timings as it exits
    probe = servers.logs / "probe.json"
    if probe.exists():
        for row in rows:
            row.atelier.probe = probe_note(probe, *row.atelier.window)
    idle: list[IdleResult] = []
    if args.idle:
        say(f"idle memory: a fresh gateway, then {args.idle:,} idle connections")
        await servers.start_gateway()
        idle.append(await measure_idle("atelier", args.idle, servers, clients, users))
        say(f"idle memory: a fresh floor, then {args.idle:,} idle connections")
        servers.stop_floor()
        await servers.start_floor()
        idle.append(await measure_idle("floor", args.idle, servers, clients, users))
    return rows, idle


def summary(r: RunResult) -> str:
    return (
        f"{r.target}: {r.rate:,.0f} deliveries/s, p50 {r.pct(0.5):.1f} ms, "
        f"p99 {r.pct(0.99):.1f} ms, max {r.pct(1.0):.1f} ms, lost {r.lost}, dup {r.dup}, "
        f"server CPU {r.cpu.get('gateway', r.cpu.get('floor', 0)):.0f}%"
    )


async def main() -> int:
    args = parse_args()
    raise_nofile()
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/atelier")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    tag = uuid.uuid4().hex[:8]
    db, prefix = f"atelier_bench_fanout_{tag}", f"atelier-bench-fanout-{tag}:"
    dsn = f"{admin.rsplit('/', 1)[0]}/{db}"
    logs = Path(tempfile.mkdtemp(prefix="bench_fanout_"))
    users = Users(secrets.token_hex(32))
    env = {
        **os.environ,
        "APP_ENV": "prod",
        "APP_SECRET": users.secret,
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(free_port()),
        "APP_DATA_DIR": str(logs),
        "LOG_LEVEL": "warning",
    }
    say(f"machine: {machine()}")
    say(f"database {db}, Redis prefix {prefix}, logs in {logs}")
    await throwaway_database(admin, "create", db)
    servers = Servers(env, logs)
    clients: Clients | None = None
    ok = False
    try:
        await migrate(dsn)
        servers.start("relay", "relay")
        servers.start("snapshotter", "snapshotter")
        probe = logs / "probe.json" if args.probe_gateway else None
        await servers.start_gateway(args.profile_gateway, probe)
        await servers.start_floor()
        max_viewers = max(SCENARIOS[k].viewers for k in args.scenarios.split(","))
        viewers = max(1, round(max_viewers * args.viewers_scale))
        await setup_document(f"http://127.0.0.1:{servers.port}", dsn, users, viewers, args.idle)
        clients = Clients()
        say(f"gateway pid {servers.pid('gateway')}, floor pid {servers.pid('floor')}")
        rows, idle = await run_all(args, servers, clients, users)
        ok = True
    finally:
        if clients is not None:
            clients.stop()
        await servers.stop_all()
        await throwaway_database(admin, "drop", db)
        await delete_keys(redis_url, prefix)
        if ok:
            shutil.rmtree(logs, ignore_errors=True)
        else:
            say(f"logs kept in {logs}")
    lines = report(rows, idle)
    print("\n".join(lines), flush=True)
    if args.write_docs:
        write_docs(lines, sys.argv[1:], args.seconds)
    bad = [
        r
        for row in rows
        for r in (row.atelier, row.floor)
        if r.lost or r.dup or r.closed or r.rejected
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probed-gateway"]:
        raise SystemExit(probed_gateway(sys.argv[2]))
    raise SystemExit(uvloop.run(main()))
