"""The end-to-end invariants of PROTOCOL.md section 4 under load and faults.

5 writers x 50 ops and 20 viewers on one document, over two gateways and the real relay
(app/relay, run in a task by tests/support/relay.py). Every peer checks, as it goes,
that it gets every version after its welcome exactly once and in order (a reconnect
with ``since`` must continue at since + 1), and folds each event op onto its welcome
state with ``app.domain.apply``; at the end every fold equals the server's state, every
op was acked exactly once, and the store holds each op once, at its ack's version.

The faults, each mid-load: the relay killed (its task cancelled hard) and started again;
Redis flushed (a private redis-server); a gateway process killed with SIGKILL, its
clients reconnecting to the other gateway with ``since`` and re-sending what had no
answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from app.bus import Keys, create_redis
from app.config import Settings
from app.domain import Document, apply, state_from_json, state_to_json
from app.relay import Relay
from app.store.postgres import PostgresStore
from tests.e2e.conftest import SECRET, Gateway
from tests.e2e.ws_client import make_doc, ws_url
from tests.support.relay import RunningRelay, assert_published_exactly, fast_config, wait_until

WRITERS = 5
OPS = 50
VIEWERS = 20
# v1 doc.create, v2 the layer the writers draw on, then every writer's ops.
FINAL_V = 2 + WRITERS * OPS
_RETRY = frozenset({"unavailable", "internal"})


class Peer:
    """One client: follows the document across reconnects, folding what it receives."""

    def __init__(self, user: str, token: str, urls: list[str]) -> None:
        self.user = user
        self.token = token
        self.urls = urls
        self.at = 0
        self.v = 0
        self.doc: Document | None = None
        self.applied = 0
        self.acks: dict[str, int] = {}
        self.reconnects = 0
        self.ws: ClientConnection | None = None

    async def connect(self) -> ClientConnection:
        for _ in range(200):
            url = self.urls[self.at % len(self.urls)]
            try:
                ws = await connect(url, open_timeout=5, close_timeout=1, max_size=None)
                hello: dict[str, Any] = {"type": "hello", "token": self.token}
                if self.doc is not None:
                    hello["since"] = self.v
                await ws.send(orjson.dumps(hello).decode())
                welcome = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                self.at += 1
                await asyncio.sleep(0.05)
                continue
            assert welcome["type"] == "welcome", welcome
            if self.doc is None:
                assert "state" in welcome, welcome
                self.doc = state_from_json(welcome["state"])
                self.v = welcome["v"]
            else:
                # Resume: exactly the events after `since` (guarantee 4).
                assert "events" in welcome, welcome
                for event in welcome["events"]:
                    self.apply(event)
                assert self.v == welcome["v"]
            self.ws = ws
            return ws
        raise AssertionError(f"{self.user} could not reconnect")

    def apply(self, event: dict[str, Any]) -> None:
        assert event["v"] == self.v + 1, f"{self.user}: got v{event['v']} after v{self.v}"
        assert self.doc is not None
        self.doc = apply(self.doc, event["op"])
        self.v = event["v"]
        self.applied += 1

    def take(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "event":
            self.apply(message)
        elif kind == "events":
            for event in message["events"]:
                self.apply(event)
        elif kind == "ack":
            assert message["v"] <= self.v, f"ack before its event: {message}"
            assert self.acks.setdefault(message["id"], message["v"]) == message["v"]
        else:
            assert kind in {"reject", "presence", "pong"}, message

    async def recv(self) -> dict[str, Any]:
        """The next message; across a lost connection, after reconnecting with since."""
        while True:
            ws = self.ws or await self.connect()
            try:
                frame = await asyncio.wait_for(ws.recv(), 15)
            except ConnectionClosed:
                self.ws = None
                self.at += 1
                self.reconnects += 1
                continue
            message: dict[str, Any] = orjson.loads(frame)
            return message

    async def send(self, message: dict[str, Any]) -> None:
        ws = self.ws or await self.connect()
        # A send into a dead socket is not an error here: the next recv reconnects, and
        # the caller re-sends whatever had no answer.
        with contextlib.suppress(ConnectionClosed):
            await ws.send(orjson.dumps(message).decode())

    async def write(self, ops: list[tuple[str, dict[str, Any]]], pace: float) -> None:
        """Each op in turn, re-sent until it is answered (after a reconnect, too)."""
        for op_id, op in ops:
            while op_id not in self.acks:
                await self.send({"type": "op", "id": op_id, "op": op})
                reconnects = self.reconnects
                while op_id not in self.acks and self.reconnects == reconnects:
                    message = await self.recv()
                    if message["type"] == "reject" and message["id"] == op_id:
                        assert message["code"] in _RETRY, message
                        await asyncio.sleep(0.05)
                        break
                    self.take(message)
            await asyncio.sleep(pace)

    async def follow(self, until_v: int) -> None:
        while self.v < until_v:
            self.take(await self.recv())

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


def writer_ops(i: int) -> list[tuple[str, dict[str, Any]]]:
    ops: list[tuple[str, dict[str, Any]]] = []
    for j in range(OPS):
        if j % 2 == 0:
            op: dict[str, Any] = {
                "kind": "element.add",
                "element": f"e{i}x{j}",
                "layer": "L1",
                "shape": "rect",
                "props": {"x": i, "y": j, "w": 3, "h": 4},
            }
        else:
            op = {"kind": "doc.rename", "title": f"w{i} {j}"}
        ops.append((f"w{i}-{j}", op))
    return ops


async def load(
    gateways: list[Gateway],
    doc: str,
    *,
    writer_urls: Callable[[int], list[str]],
    viewer_urls: Callable[[int], list[str]],
    fault: Callable[[], Awaitable[None]] | None = None,
    after_acks: int = WRITERS * OPS // 3,
    pace: float = 0.01,
) -> list[Peer]:
    """Run the load; ``fault`` once ``after_acks`` ops are acked. Every peer at FINAL_V."""
    head = gateways[0]
    writers = [Peer(f"w{i}", head.token(f"w{i}"), writer_urls(i)) for i in range(WRITERS)]
    viewers = [Peer(f"v{i}", head.token(f"v{i}"), viewer_urls(i)) for i in range(VIEWERS)]
    for peer in writers + viewers:
        await peer.connect()

    async def inject() -> None:
        if fault is None:
            return
        await wait_until(lambda: sum(len(w.acks) for w in writers) >= after_acks, 15)
        await fault()
        # Mid-load: a good part of the ops is still to come after the fault.
        assert sum(len(w.acks) for w in writers) < WRITERS * OPS * 3 // 4

    async def writer(i: int) -> None:
        await writers[i].write(writer_ops(i), pace)
        await writers[i].follow(FINAL_V)

    async with asyncio.timeout(30):
        await asyncio.gather(
            inject(),
            *(writer(i) for i in range(WRITERS)),
            *(v.follow(FINAL_V) for v in viewers),
        )
    return writers + viewers


async def check(peers: list[Peer], gateway: Gateway, doc: str, store: PostgresStore) -> None:
    """Every fold equals the server's state; every op acked once, stored once, at its v."""
    fresh = Peer("alice", gateway.token("alice"), [ws_url(gateway, doc)])
    await fresh.connect()
    await fresh.close()
    assert fresh.v == FINAL_V
    assert fresh.doc is not None
    server = state_to_json(fresh.doc)
    for peer in peers:
        assert peer.v == FINAL_V, peer.user
        assert peer.doc is not None
        assert {**state_to_json(peer.doc), "v": FINAL_V} == server, peer.user
        await peer.close()
    events = await store.read_stream(doc)
    assert [e.v for e in events] == list(range(1, FINAL_V + 1))
    stored = {e.op_id: e.v for e in events if e.op_id and e.op_id.startswith("w")}
    acked = {op_id: v for peer in peers for op_id, v in peer.acks.items()}
    expected = {op_id for i in range(WRITERS) for op_id, _ in writer_ops(i)}
    assert set(acked) == expected
    assert stored == acked  # each op once, at the version its ack named
    assert len(server["layers"][0]["elements"]) == WRITERS * (OPS // 2)


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    value = f"wsinv{uuid.uuid4().hex[:8]}:"
    yield value
    client = redis.from_url(redis_url)
    async for key in client.scan_iter(match=f"{value}*"):
        await client.delete(key)
    await client.aclose()


async def document(gateway: Gateway) -> str:
    members = {f"w{i}": "editor" for i in range(WRITERS)}
    members.update({f"v{i}": "viewer" for i in range(VIEWERS)})
    doc = await make_doc(gateway, **members)
    async with gateway.client("alice") as http:
        r = await http.post(
            f"/api/documents/{doc}/ops",
            json={"id": "L1", "op": {"kind": "layer.add", "layer": "L1", "name": "ink"}},
        )
        assert r.json() == {"v": 2}, r.text
    return doc


def split(one: Gateway, two: Gateway, doc: str) -> Callable[[int], list[str]]:
    """Even peers start on ``one``, odd ones on ``two``."""
    urls = [ws_url(one, doc), ws_url(two, doc)]
    return lambda i: urls[i % 2 :] + urls[: i % 2]


# -- the tests ---------------------------------------------------------------------


async def test_every_viewer_sees_every_version_once_in_order_and_folds_to_the_state(
    make_gateway: Any, pg_dsn: str, store: PostgresStore, prefix: str, redis_url: str
) -> None:
    one = await make_gateway(REDIS_PREFIX=prefix)
    two = await make_gateway(REDIS_PREFIX=prefix)
    rds = create_redis(redis_url)
    try:
        async with RunningRelay(Relay(fast_config(pg_dsn, prefix), rds)) as relay:
            doc = await document(one)
            peers = await load(
                [one, two], doc, writer_urls=split(one, two, doc), viewer_urls=split(one, two, doc)
            )
            await check(peers, two, doc, store)
            await relay.caught_up(store)
            await assert_published_exactly(rds, Keys(prefix), store)
    finally:
        await rds.aclose()


async def test_the_relay_killed_mid_load_and_restarted_loses_and_doubles_nothing(
    make_gateway: Any, pg_dsn: str, store: PostgresStore, prefix: str, redis_url: str
) -> None:
    one = await make_gateway(REDIS_PREFIX=prefix)
    two = await make_gateway(REDIS_PREFIX=prefix)
    rds = create_redis(redis_url)
    relays = [RunningRelay(Relay(fast_config(pg_dsn, prefix), rds)).start()]

    async def kill_and_restart() -> None:
        await relays[0].stop()  # a hard cancel, wherever it is
        await asyncio.sleep(0.2)
        relays.append(RunningRelay(Relay(fast_config(pg_dsn, prefix), rds)).start())

    try:
        doc = await document(one)
        # Writers on one, viewers on two: what the viewers get comes through the relay
        # (or, while it is down, from PostgreSQL by the healer).
        peers = await load(
            [one, two],
            doc,
            writer_urls=lambda i: [ws_url(one, doc)],
            viewer_urls=lambda i: [ws_url(two, doc)],
            fault=kill_and_restart,
        )
        await check(peers, two, doc, store)
        await relays[-1].caught_up(store)
        await assert_published_exactly(rds, Keys(prefix), store)
    finally:
        for relay in relays:
            await relay.stop()
        await rds.aclose()


async def test_redis_flushed_mid_load_loses_nothing(
    make_gateway: Any, pg_dsn: str, store: PostgresStore, redis_server: Any
) -> None:
    prefix = "inv:"
    one = await make_gateway(REDIS_URL=redis_server.url, REDIS_PREFIX=prefix)
    two = await make_gateway(REDIS_URL=redis_server.url, REDIS_PREFIX=prefix)
    rds = redis_server.client()
    flusher = redis_server.client()

    async def flush() -> None:
        await flusher.flushall()

    try:
        async with RunningRelay(Relay(fast_config(pg_dsn, prefix), rds)) as relay:
            doc = await document(one)
            peers = await load(
                [one, two],
                doc,
                writer_urls=lambda i: [ws_url(one, doc)],
                viewer_urls=split(one, two, doc),
                fault=flush,
            )
            await check(peers, two, doc, store)
            await relay.caught_up(store)
            # The relay noticed that Redis lost its progress and published again.
            await assert_published_exactly(rds, Keys(prefix), store)
    finally:
        await flusher.aclose()
        await rds.aclose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_process_gateway(
    pg_dsn: str, prefix: str, log: Path, redis_url: str
) -> tuple[Any, Gateway]:
    """``python -m app serve`` in a process of its own (so that it can be SIGKILLed)."""
    port = _free_port()
    env = {
        **os.environ,
        "APP_ENV": "dev",
        "APP_SECRET": SECRET,
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "APP_PORT": str(port),
        "DB_POOL_SIZE": "4",
        "LOG_LEVEL": "warning",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 (started once; it returns at once)
            [sys.executable, "-m", "app", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 15
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            output = log.read_text()  # noqa: ASYNC240 (a small local file, on failure)
            raise AssertionError("the gateway process did not start:\n" + output)
        await asyncio.sleep(0.05)
    settings = Settings.from_env(env)
    return proc, Gateway(f"http://127.0.0.1:{port}", settings)


async def test_a_gateway_killed_mid_load_loses_nothing_acked(
    make_gateway: Any,
    pg_dsn: str,
    store: PostgresStore,
    prefix: str,
    tmp_path: Path,
    redis_url: str,
) -> None:
    survivor = await make_gateway(REDIS_PREFIX=prefix)
    proc, victim = await start_process_gateway(pg_dsn, prefix, tmp_path / "victim.log", redis_url)
    rds = create_redis(redis_url)
    killed = asyncio.Event()

    async def kill() -> None:
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
        killed.set()

    try:
        async with RunningRelay(Relay(fast_config(pg_dsn, prefix), rds)):
            doc = await document(survivor)
            # Most peers start on the victim; when it dies they reconnect to the survivor
            # with `since` and re-send the op they had no answer for.
            urls = split(victim, survivor, doc)
            peers = await load(
                [survivor, victim],
                doc,
                writer_urls=lambda i: urls(0) if i < 3 else urls(1),
                viewer_urls=urls,
                fault=kill,
            )
            assert killed.is_set()
            moved = [p for p in peers if p.reconnects]
            assert len(moved) >= 3 + VIEWERS // 2, [p.user for p in moved]
            await check(peers, survivor, doc, store)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        await rds.aclose()
