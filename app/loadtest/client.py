"""The client side of a load test: one spawned process, one uvloop event loop, many sockets.

Every connection is a ``Socket`` on the ``websockets`` library's sans-I/O client
protocol: each frame is handled as its bytes arrive, with no task or future per message,
and whole text frames are taken off the bytes without the library's parser
(``app.loadtest.frames``), so the generator spends as little CPU per delivery as it can
(scripts/bench_fanout.py's ``ViewerSocket`` does the same). A ``Client`` is what the
harness knows of one connection: the versions it saw (once, in order, no gap), its pending ops, the
presence it got from its peers and, for a sample of clients, the elements folded from
the welcome's state and the events (``fold``, independent of the server's domain code).

The process talks to the parent over a pipe, in steps:
``ready`` (connected) <- ``go`` (start, end) -> ``tick`` every second -> ``sent`` (the
highest acked version per document) <- ``expect`` (the server's final versions) ->
``done`` (the checks' raw material).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

import orjson
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import WebSocketURI, parse_uri

from app.loadtest.frames import FrameSplitter
from app.loadtest.hist import Histogram
from app.loop import run as run_loop

__all__ = ["ClientSpec", "Plan", "child_main", "fold", "make_op"]

TICK_S = 1.0
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """One connection of the run."""

    cid: int  # unique over the run
    doc: str
    token: str
    role: str  # "editor" or "viewer": what the harness made the user
    rate: float = 0.0  # an editor's ops a second
    phase: float = 0.0  # seconds after the start of its first op
    element: str = ""  # an editor's own rectangle
    presence_hz: float = 0.0  # cursor moves a second (presence scenario)
    late: bool = False  # join-storm: connects at the start, all at once
    sample: bool = False  # fold the elements and compare them with the server's
    drop_every: float = 0.0  # reconnect: seconds between a drop and a resume with since


@dataclass(frozen=True, slots=True)
class Plan:
    """What one client process runs."""

    ws_base: str  # ws://host:port or wss://...
    index: int
    clients: tuple[ClientSpec, ...]
    open_concurrency: int = 50
    connect_timeout: float = 30.0
    drain_s: float = 10.0


def make_op(cid: int, element: str, n: int) -> dict[str, Any]:
    """A move of the editor's own rectangle; one op in ten adds a small rectangle."""
    if n % 10 == 9:
        return {
            "kind": "element.add",
            "element": f"a{cid}x{n}",
            "layer": "L",
            "shape": "rect",
            "props": {"x": n % 800, "y": n % 600, "w": 8, "h": 8, "fill": "#336699"},
        }
    return {
        "kind": "element.update",
        "element": element,
        "set": {"x": (n * 7) % 800 + 0.5, "y": (n * 13) % 600 + 0.25},
    }


def fold(elements: dict[str, dict[str, Any]], op: dict[str, Any]) -> bool:
    """Apply one event's op to ``elements`` (id -> props); False for a kind it cannot
    fold (then the sample is not compared). Only what PROTOCOL.md section 3 says of
    element ops; layers are not tracked."""
    kind = op.get("kind")
    if kind == "element.add":
        elements[op["element"]] = dict(op.get("props") or {})
    elif kind == "element.update":
        props = elements.get(op["element"])
        if props is None:
            return False
        for key, value in (op.get("set") or {}).items():
            if value is None:
                props.pop(key, None)
            else:
                props[key] = value
    elif kind == "element.remove":
        elements.pop(op["element"], None)
    elif kind == "element.move" or kind == "doc.rename" or kind == "layer.add":
        pass
    elif kind in ("batch", "undo", "redo", "restore"):
        return all(fold(elements, sub) for sub in op.get("ops") or [])
    else:
        return False
    return True


def elements_of(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        e["id"]: dict(e.get("props") or {})
        for layer in state.get("layers") or []
        for e in layer.get("elements") or []
    }


def due_of(op_id: object) -> int | None:
    """The schedule time encoded in an op id (``t<monotonic ns>-<n>``)."""
    if isinstance(op_id, str) and op_id.startswith("t"):
        with contextlib.suppress(ValueError):
            return int(op_id[1 : op_id.index("-")])
    return None


class Socket(asyncio.Protocol):
    """One websocket on the sans-I/O client; every message goes to ``client.message``."""

    def __init__(self, uri: WebSocketURI, client: Client) -> None:
        loop = asyncio.get_running_loop()
        self.ws = ClientProtocol(uri, max_size=None)
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[int] = loop.create_future()  # handshake done (ns)
        self.gone: asyncio.Future[None] = loop.create_future()
        self.closing = False
        self._frames = FrameSplitter(self.ws)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._take(self._frames.split(data), time.monotonic_ns())

    def eof_received(self) -> None:
        self._take(self._frames.eof(), time.monotonic_ns())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed in the handshake: {exc!r}"))
        if not self.gone.done():
            self.gone.set_result(None)
            rcvd = self.ws.close_rcvd
            self.client.lost(self, rcvd.code if rcvd is not None else 1006)

    def _take(self, items: Iterator[bytes | Response], now: int) -> None:
        for item in items:
            if isinstance(item, bytes):
                self.client.frame(item, now)
            elif self.ws.handshake_exc is not None:
                self.opened.set_exception(self.ws.handshake_exc)
            else:
                self.opened.set_result(now)
        self._flush()

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def send(self, message: dict[str, Any]) -> bool:
        if self.ws.state is not State.OPEN:
            return False
        self.ws.send_text(orjson.dumps(message))
        self._flush()
        return True

    async def close(self) -> None:
        self.closing = True
        if self.ws.state is State.OPEN:
            self.ws.send_close(1000)
            self._flush()
        try:
            async with asyncio.timeout(5):
                await asyncio.shield(self.gone)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()


class Client:
    """What the harness knows of one connection."""

    def __init__(self, spec: ClientSpec, proc: Process) -> None:
        self.spec = spec
        self.proc = proc
        self.sock: Socket | None = None
        self.welcomed: asyncio.Future[int] | None = None
        self.first_v = -1  # the first welcome's version
        self.last_v = -1
        self.events = 0
        self.lost_v = 0
        self.dup = 0
        self.ooo = 0
        self.pending: dict[str, int] = {}  # op id -> due (ns)
        self.unsent: list[tuple[str, dict[str, Any]]] = []  # sent while dropped: resend
        self.elements: dict[str, dict[str, Any]] | None = None
        self.foldable = True
        self.welcome_elements = -1
        self.peers: dict[int, int] = {}  # presence: peer cid -> highest n received
        self.timed: set[int] = set()  # peers heard from since the last welcome
        self.deferred: list[tuple[bytes, int]] | None = [] if spec.late else None
        self.welcome_at: int | None = None  # when the first welcome arrived (ns)
        self.presence_n = 0
        self.resumes = 0
        self.skipped = 0  # versions a resume's state covered instead of events

    # -- incoming -----------------------------------------------------------------------

    def frame(self, data: bytes, now: int) -> None:
        """A whole text message, received at ``now``."""
        if self.deferred is None:
            self.message(orjson.loads(data), now)
            return
        # A join-storm client: parsing a large welcome costs milliseconds, which would
        # delay reading every other socket of the process and inflate their welcome
        # times; frames are stamped now and parsed after the storm (``undefer``).
        self.deferred.append((data, now))
        if self.welcomed is not None and not self.welcomed.done():
            self.welcome_at = now  # the first frame after hello (a welcome: checked later)
            self.welcomed.set_result(now)

    def undefer(self) -> None:
        frames, self.deferred = self.deferred or [], None
        for data, now in frames:
            self.message(orjson.loads(data), now)

    def message(self, msg: dict[str, Any], now: int) -> None:
        kind = msg.get("type")
        if kind == "event":
            self.take(msg, now)
        elif kind == "events":
            for event in msg["events"]:
                self.take(event, now)
        elif kind == "ack":
            self.proc.ack(self, msg, now)
        elif kind == "reject":
            self.pending.pop(str(msg.get("id")), None)
            self.proc.error(f"reject:{msg.get('code')}")
        elif kind == "presence":
            self.presence(msg, now)
        elif kind == "welcome":
            self.welcome(msg, now)
        elif kind == "error":
            self.proc.error(f"error:{msg.get('code')}")
            if self.welcomed is not None and not self.welcomed.done():
                self.welcomed.set_exception(RuntimeError(f"hello refused: {msg}"))

    def welcome(self, msg: dict[str, Any], now: int) -> None:
        v = int(msg["v"])
        self.timed = set()
        state = msg.get("state")
        if self.first_v < 0:
            self.first_v = self.last_v = v
            if isinstance(state, dict):
                layers = state.get("layers") or []
                self.welcome_elements = sum(len(lay.get("elements") or []) for lay in layers)
                if self.spec.sample:
                    self.elements = elements_of(state)
        elif isinstance(state, dict):  # a resume answered with the state: rebase
            self.skipped += max(0, v - self.last_v)
            self.last_v = max(self.last_v, v)
            if self.elements is not None:
                self.elements = elements_of(state)
        else:
            for event in msg.get("events") or []:
                self.take(event, now)
            if v != self.last_v:  # the welcome's v is that of its last event
                self.proc.error("welcome:v_mismatch")
        if self.welcome_at is None:
            self.welcome_at = now
        if self.welcomed is not None and not self.welcomed.done():
            self.welcomed.set_result(now)

    def take(self, event: dict[str, Any], now: int) -> None:
        v = event["v"]
        last = self.last_v
        if v != last + 1:
            if v == last:
                self.dup += 1
                return
            if v < last:
                self.ooo += 1
                return
            self.lost_v += v - last - 1
        self.last_v = v
        self.events += 1
        if self.elements is not None and self.foldable:
            self.foldable = fold(self.elements, event["op"])
        self.proc.delivered(event.get("id"), now)

    def presence(self, msg: dict[str, Any], now: int) -> None:
        state = msg.get("state")
        if not isinstance(state, dict) or "c" not in state:
            return
        peer, n = int(state["c"]), int(state["n"])
        if n <= self.peers.get(peer, -1):
            return
        self.peers[peer] = n
        # The first presence of a peer after a welcome is its current state, sent on
        # join: a fresh move only if the peer was already timed on this connection.
        if peer in self.timed:
            self.proc.presence_seen(int(state["t"]), now)
        self.timed.add(peer)

    def lost(self, sock: Socket, code: int) -> None:
        if sock is self.sock and not sock.closing:
            self.proc.error(f"closed:{code}")
            self.sock = None
        if self.welcomed is not None and not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError(f"closed before the welcome: {code}"))

    # -- outgoing -----------------------------------------------------------------------

    def send_op(self, op_id: str, op: dict[str, Any], due: int) -> None:
        self.pending[op_id] = due
        message = {"type": "op", "id": op_id, "op": op}
        if self.sock is None or not self.sock.send(message):
            self.unsent.append((op_id, op))

    async def open(self, uri: WebSocketURI, since: int | None = None) -> tuple[int, int]:
        """Connect, hello and welcome; (handshake ns, welcome ns) from the start."""
        loop = asyncio.get_running_loop()
        started = time.monotonic_ns()
        self.welcomed = loop.create_future()
        context = ssl.create_default_context() if uri.secure else None
        _, sock = await loop.create_connection(
            lambda: Socket(uri, self), uri.host, uri.port, ssl=context
        )
        try:
            opened = await sock.opened
            hello: dict[str, Any] = {"type": "hello", "token": self.spec.token}
            if since is not None:
                hello["since"] = since
            sock.send(hello)
            welcomed = await self.welcomed
        except BaseException:
            sock.closing = True
            if sock.transport is not None:
                sock.transport.abort()
            raise
        self.sock = sock
        return opened - started, welcomed - started  # relative to the start of the open


class Process:
    """The clients of one process and their tallies."""

    def __init__(self, conn: Connection, plan: Plan) -> None:
        self.conn = conn
        self.plan = plan
        self.clients = [Client(spec, self) for spec in plan.clients]
        self.by_doc_uri: dict[str, WebSocketURI] = {}
        self.start_ns = 0
        self.measure_from = 1 << 62
        self.errors: Counter[str] = Counter()
        self.latency = Histogram()
        self.ack_lat = Histogram()
        self.presence_lat = Histogram()
        self.connect = Histogram()
        self.join = Histogram()
        self.storm = Histogram()  # join-storm: go -> welcome
        self.series: dict[int, dict[str, Any]] = {}  # second -> counters and histogram
        self.sent = 0
        self.acked = 0
        self.deliveries = 0
        self.presences = 0
        self.acked_v: dict[str, int] = {}
        self.counter = 0

    # -- tallies ------------------------------------------------------------------------

    def _second(self, now: int) -> dict[str, Any]:
        sec = max(0, (now - self.start_ns) // 1_000_000_000)
        bin_ = self.series.get(sec)
        if bin_ is None:
            bin_ = self.series[sec] = {
                "ops": 0,
                "acks": 0,
                "del": 0,
                "pres": 0,
                "h": Histogram(),
                "ph": Histogram(),
            }
        return bin_

    def error(self, code: str) -> None:
        self.errors[code] += 1

    def delivered(self, op_id: object, now: int) -> None:
        due = due_of(op_id)
        if due is not None and due >= self.measure_from:
            us = (now - due) // 1000
            self.latency.record(us)
            self.deliveries += 1
            bin_ = self._second(now)
            bin_["del"] += 1
            bin_["h"].record(us)

    def ack(self, client: Client, msg: dict[str, Any], now: int) -> None:
        op_id = str(msg.get("id"))
        due = client.pending.pop(op_id, None)
        v = int(msg["v"])
        doc = client.spec.doc
        if v > self.acked_v.get(doc, 0):
            self.acked_v[doc] = v
        if due is None:
            return  # an ack for a resent op that was answered before
        self.acked += 1
        if due >= self.measure_from:
            self.ack_lat.record((now - due) // 1000)
            self._second(now)["acks"] += 1

    def presence_seen(self, due: int, now: int) -> None:
        if due >= self.measure_from:
            us = (now - due) // 1000
            self.presence_lat.record(us)
            self.presences += 1
            bin_ = self._second(now)
            bin_["pres"] += 1
            bin_["ph"].record(us)

    # -- steps --------------------------------------------------------------------------

    def uri(self, doc: str) -> WebSocketURI:
        uri = self.by_doc_uri.get(doc)
        if uri is None:
            uri = self.by_doc_uri[doc] = parse_uri(f"{self.plan.ws_base}/ws/documents/{doc}")
        return uri

    async def open_all(self, clients: list[Client], concurrency: int, storm: bool) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(client: Client) -> None:
            async with gate:
                try:
                    async with asyncio.timeout(self.plan.connect_timeout):
                        opened, welcomed = await client.open(self.uri(client.spec.doc))
                except Exception as exc:
                    self.error(f"connect:{type(exc).__name__}")
                    return
            self.connect.record(opened // 1000)
            self.join.record((welcomed - opened) // 1000)
            if storm:  # the welcome's arrival stamp, after the storm's common start
                assert client.welcome_at is not None
                self.storm.record((client.welcome_at - self.start_ns) // 1000)

        await asyncio.gather(*(one(c) for c in clients))

    async def storm_join(self, clients: list[Client]) -> None:
        """Every late client at once; their frames are parsed after the storm."""
        await self.open_all(clients, 100_000, storm=True)
        for client in clients:
            client.undefer()

    async def pace_ops(self, client: Client, end_ns: int) -> None:
        spec = client.spec
        period = 1e9 / spec.rate
        k = 0
        while (due := self.start_ns + int(spec.phase * 1e9 + k * period)) < end_ns:
            k += 1
            delay = due - time.monotonic_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            self.counter += 1
            op_id = f"t{due}-{self.plan.index}x{self.counter}"
            client.send_op(op_id, make_op(spec.cid, spec.element, self.counter), due)
            self.sent += 1
            self._second(time.monotonic_ns())["ops"] += 1

    async def pace_presence(self, client: Client, end_ns: int) -> None:
        spec = client.spec
        period = 1e9 / spec.presence_hz
        k = 0
        while (due := self.start_ns + int(spec.phase * 1e9 + k * period)) < end_ns:
            k += 1
            delay = due - time.monotonic_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            if client.sock is None:
                continue
            state = {"c": spec.cid, "n": k, "t": due, "x": (k * 37) % 1000, "y": (k * 53) % 700}
            if client.sock.send({"type": "presence", "state": state}):
                client.presence_n = k

    async def drop_and_resume(self, client: Client, end_ns: int) -> None:
        """Reconnect: every ``drop_every`` s abort the socket, then resume with ``since``."""
        spec = client.spec
        k = 1
        while (at := self.start_ns + int((spec.phase + k * spec.drop_every) * 1e9)) < end_ns:
            k += 1
            await asyncio.sleep(max(0, at - time.monotonic_ns()) / 1e9)
            sock, client.sock = client.sock, None
            if sock is not None and sock.transport is not None:
                sock.closing = True
                sock.transport.abort()
            await asyncio.sleep(0.05)
            try:
                async with asyncio.timeout(self.plan.connect_timeout):
                    await client.open(self.uri(spec.doc), since=client.last_v)
                client.resumes += 1
            except Exception as exc:
                self.error(f"resume:{type(exc).__name__}")
                return
            # Re-send every op that has no answer yet, those made while dropped included
            # (PROTOCOL.md section 4, guarantee 3); no await since the welcome.
            client.unsent = []
            for op_id in list(client.pending):
                assert client.sock is not None
                client.sock.send({"type": "op", "id": op_id, "op": self.pending_op(client, op_id)})

    def pending_op(self, client: Client, op_id: str) -> dict[str, Any]:
        n = int(op_id.rsplit("x", 1)[1])
        return make_op(client.spec.cid, client.spec.element, n)

    def tick(self) -> dict[str, Any]:
        bins = {
            str(sec): {**b, "h": b["h"].to_json(), "ph": b["ph"].to_json()}
            for sec, b in sorted(self.series.items())
        }
        self.series = {}
        return {
            "connected": sum(1 for c in self.clients if c.sock is not None),
            "sent": self.sent,
            "acked": self.acked,
            "deliveries": self.deliveries,
            "presences": self.presences,
            "errors": dict(self.errors),
            "p99_us": self.latency.percentile(0.99),
            "bins": bins,
        }

    async def ticker(self) -> None:
        """A tick just after each whole second of the run (the parent prints later)."""
        k = 1
        while True:
            at = self.start_ns + int((k * TICK_S + 0.02) * 1e9)
            k += 1
            await asyncio.sleep(max(0, at - time.monotonic_ns()) / 1e9)
            try:
                self.conn.send(("tick", self.tick()))
            except OSError:  # the parent is gone (Ctrl-C, a failed run): so are we
                os._exit(3)

    async def wait_for(self, done: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True

    async def run(self) -> None:
        early = [c for c in self.clients if not c.spec.late]
        self.start_ns = time.monotonic_ns()
        await self.open_all(early, self.plan.open_concurrency, storm=False)
        self.conn.send(("ready", {"connected": sum(1 for c in early if c.sock is not None)}))
        _, start_ns, measure_ns, end_ns = await receive(self.conn)
        self.start_ns, self.measure_from = start_ns, measure_ns
        ticker = asyncio.create_task(self.ticker())
        await asyncio.sleep(max(0, start_ns - time.monotonic_ns()) / 1e9)
        tasks = [
            self.storm_join([c for c in self.clients if c.spec.late]),
            *(self.pace_ops(c, end_ns) for c in self.clients if c.spec.rate > 0),
            *(self.pace_presence(c, end_ns) for c in self.clients if c.spec.presence_hz > 0),
            *(self.drop_and_resume(c, end_ns) for c in self.clients if c.spec.drop_every > 0),
        ]
        await asyncio.gather(*tasks)
        await asyncio.sleep(max(0, end_ns - time.monotonic_ns()) / 1e9)
        await self.wait_for(lambda: not any(c.pending for c in self.clients), self.plan.drain_s)
        presence_n = {c.spec.cid: c.presence_n for c in self.clients if c.spec.presence_hz}
        unanswered = sum(len(c.pending) for c in self.clients)
        self.conn.send(
            ("sent", {"acked_v": self.acked_v, "presence_n": presence_n, "unanswered": unanswered})
        )
        _, final_v, final_n = await receive(self.conn)
        await self.wait_for(lambda: self.caught_up(final_v, final_n), self.plan.drain_s)
        ticker.cancel()
        self.conn.send(("tick", self.tick()))
        result = self.result()
        await self.close_all()
        self.conn.send(("done", result))

    def caught_up(self, final_v: dict[str, int], final_n: dict[str, dict[int, int]]) -> bool:
        for c in self.clients:
            if c.sock is None:
                continue
            goal = final_v.get(c.spec.doc)
            if goal is not None and c.last_v < goal:
                return False
            if c.spec.presence_hz:
                for peer, n in final_n.get(c.spec.doc, {}).items():
                    if peer != c.spec.cid and n and c.peers.get(peer, -1) < n:
                        return False
        return True

    def result(self) -> dict[str, Any]:
        clients = [
            {
                "cid": c.spec.cid,
                "doc": c.spec.doc,
                "role": c.spec.role,
                "connected": c.sock is not None,
                "first_v": c.first_v,
                "last_v": c.last_v,
                "events": c.events,
                "lost": c.lost_v,
                "dup": c.dup,
                "ooo": c.ooo,
                "resumes": c.resumes,
                "skipped": c.skipped,
                "welcome_elements": c.welcome_elements,
                "unanswered": len(c.pending),
                "elements": c.elements if c.foldable else None,
                "peers": {str(k): v for k, v in c.peers.items()} if c.spec.presence_hz else None,
            }
            for c in self.clients
        ]
        return {
            "clients": clients,
            "errors": dict(self.errors),
            "latency": self.latency.to_json(),
            "ack": self.ack_lat.to_json(),
            "presence": self.presence_lat.to_json(),
            "connect": self.connect.to_json(),
            "join": self.join.to_json(),
            "storm": self.storm.to_json(),
            "sent": self.sent,
            "acked": self.acked,
            "deliveries": self.deliveries,
            "presences": self.presences,
        }

    async def close_all(self) -> None:
        gate = asyncio.Semaphore(200)

        async def one(client: Client) -> None:
            sock, client.sock = client.sock, None
            if sock is None:
                return
            async with gate:
                with contextlib.suppress(Exception):
                    await sock.close()

        await asyncio.gather(*(one(c) for c in self.clients))


async def receive(conn: Connection) -> Any:
    """``conn.recv()`` without blocking the event loop."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), readable)
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())
        os.set_blocking(conn.fileno(), True)  # the loop made it non-blocking
    return conn.recv()


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _main(conn: Connection, plan: Plan) -> None:
    try:
        await Process(conn, plan).run()
    except Exception as exc:  # reported to the parent, which fails the run
        conn.send(("failed", f"process {plan.index}: {exc!r}"))


def child_main(conn: Connection, plan: Plan) -> None:
    """Entry point of a client process (multiprocessing, spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    raise_nofile()
    run_loop(_main(conn, plan))
