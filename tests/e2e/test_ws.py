"""The websocket endpoint against a real gateway on loopback (PROTOCOL.md section 4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed

from app.gateway.app import create_app
from app.gateway.server import GatewayServer
from app.tokens import issue_token
from tests.e2e.conftest import SECRET, Gateway, gateway_settings, start_gateway
from tests.e2e.ws_client import (
    Client,
    close_code,
    closes_4408,
    make_doc,
    open_ws,
    rename,
    slow_close_code,
)


async def test_hello_gets_a_welcome_with_the_state(gateway: Gateway) -> None:
    doc = await make_doc(gateway, bob="viewer")
    client = await open_ws(gateway, doc)
    welcome = await client.hello(gateway.token("bob", name="Bob"))
    assert welcome["doc"] == doc
    assert welcome["v"] == 1
    assert welcome["role"] == "viewer"
    assert welcome["user"] == "bob"
    assert isinstance(welcome["session"], str) and welcome["session"]
    assert welcome["state"] == {"id": doc, "title": "Poster", "v": 1, "layers": []}
    assert "events" not in welcome


async def test_welcome_includes_every_op_committed_before_the_hello(gateway: Gateway) -> None:
    doc = await make_doc(gateway)
    async with gateway.client("alice") as http:
        for i in range(3):
            r = await http.post(
                f"/api/documents/{doc}/ops", json={"id": f"h{i}", "op": rename(f"T{i}")}
            )
            assert r.json() == {"v": i + 2}
    client = await open_ws(gateway, doc)
    welcome = await client.hello(gateway.token("alice"))
    assert welcome["v"] == 4
    assert welcome["state"]["title"] == "T2"
    assert welcome["state"]["v"] == 4
    # since: the events after it, and only those
    resumed = await open_ws(gateway, doc)
    welcome = await resumed.hello(gateway.token("alice"), since=2)
    assert welcome["v"] == 4
    assert "state" not in welcome
    assert [(e["v"], e["id"], e["actor"]) for e in welcome["events"]] == [
        (3, "h1", "alice"),
        (4, "h2", "alice"),
    ]
    assert welcome["events"][0]["op"] == rename("T1")
    assert isinstance(welcome["events"][0]["ts"], int)
    current = await open_ws(gateway, doc)
    assert (await current.hello(gateway.token("alice"), since=4))["events"] == []
    # a since the document never reached: the state instead
    ahead = await open_ws(gateway, doc)
    assert (await ahead.hello(gateway.token("alice"), since=99))["state"]["v"] == 4


@pytest.mark.parametrize(
    "token",
    [
        lambda g: "not-a-token",
        lambda g: issue_token(
            "another-secret-0123456789abcdef0123", "alice", name=None, ttl=60, now=time.time()
        ),
        lambda g: issue_token(SECRET, "alice", name=None, ttl=10, now=time.time() - 3600),
    ],
    ids=["garbage", "wrong-secret", "expired"],
)
async def test_a_bad_token_closes_4401(gateway: Gateway, token: Callable[[Gateway], str]) -> None:
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    await client.send({"type": "hello", "token": token(gateway)})
    assert await close_code(client) == 4401


@pytest.mark.parametrize(
    "first",
    [
        '{"type":"ping"}',
        "not json",
        b"\x01\x02",
        '{"type":"hello"}',
        '{"type":"op","id":"a","op":{}}',
    ],
)
async def test_anything_but_hello_first_closes_4401(gateway: Gateway, first: str | bytes) -> None:
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    await client.send(first)
    assert await close_code(client) == 4401


async def test_no_hello_in_time_closes_4401(make_gateway: Any) -> None:
    gateway = await make_gateway(WS_HELLO_TIMEOUT_MS="200")
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    started = time.monotonic()
    assert await close_code(client) == 4401
    assert 0.15 < time.monotonic() - started < 3


async def test_a_non_member_closes_4403_and_a_missing_document_4404(gateway: Gateway) -> None:
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    await client.send({"type": "hello", "token": gateway.token("mallory")})
    assert await close_code(client) == 4403
    client = await open_ws(gateway, "no-such-doc")
    await client.send({"type": "hello", "token": gateway.token("alice")})
    assert await close_code(client) == 4404


async def test_op_is_acked_after_its_event(gateway: Gateway) -> None:
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    await client.hello(gateway.token("alice"))
    await client.op("o1", rename("New"))
    event, ack = await client.until("ack")
    assert event == {
        "type": "event",
        "v": 2,
        "op": rename("New"),
        "actor": "alice",
        "id": "o1",
        "ts": event["ts"],
    }
    assert ack == {"type": "ack", "id": "o1", "v": 2}


async def test_a_resent_op_id_gets_the_same_ack_and_stores_nothing(gateway: Gateway) -> None:
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    await client.hello(gateway.token("alice"))
    await client.op("o1", rename("New"))
    assert (await client.until("ack"))[-1]["v"] == 2
    await client.op("o1", rename("Something else"))
    assert await client.recv() == {"type": "ack", "id": "o1", "v": 2}
    # on another connection too, whatever op it carries
    other = await open_ws(gateway, doc)
    await other.hello(gateway.token("alice"))
    await other.op("o1", {"kind": "nonsense"})
    assert await other.recv() == {"type": "ack", "id": "o1", "v": 2}
    await client.quiet()
    check = await open_ws(gateway, doc)
    welcome = await check.hello(gateway.token("alice"), since=0)
    assert [(e["v"], e["id"]) for e in welcome["events"]] == [(1, None), (2, "o1")]


async def test_a_viewers_op_is_rejected_forbidden(gateway: Gateway) -> None:
    doc = await make_doc(gateway, vic="viewer")
    client = await open_ws(gateway, doc)
    await client.hello(gateway.token("vic"))
    await client.op("v1", rename("Mine now"))
    reject = await client.recv()
    assert reject["type"] == "reject"
    assert (reject["id"], reject["code"]) == ("v1", "forbidden")
    await client.send({"type": "ping", "t": 7})
    assert await client.recv() == {"type": "pong", "t": 7}


async def test_bad_frames_get_errors_and_the_connection_stays_open(gateway: Gateway) -> None:
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    await client.hello(gateway.token("alice"))
    cases: list[tuple[str | bytes, str]] = [
        (b"binary", "bad_message"),
        ("not json", "bad_message"),
        ('{"type":"ping","t":NaN}', "bad_message"),
        ("[1,2]", "bad_message"),
        ('{"type":"shout"}', "bad_message"),
        ('{"type":"op","id":"has space","op":{}}', "invalid"),
        ('{"type":"presence","state":3}', "invalid"),
        ('{"type":"hello","token":"again"}', "invalid"),
    ]
    for frame, code in cases:
        await client.send(frame)
        error = await client.recv()
        assert error["type"] == "error", frame
        assert error["code"] == code, frame
        assert isinstance(error["message"], str) and error["message"]
    await client.op("o1", {"kind": "doc.rename"})  # no title
    reject = await client.recv()
    assert (reject["type"], reject["id"], reject["code"]) == ("reject", "o1", "invalid")
    await client.op("o2", rename("Still here"))
    assert (await client.until("ack"))[-1] == {"type": "ack", "id": "o2", "v": 2}


async def test_an_oversize_frame_closes_1009(make_gateway: Any) -> None:
    gateway = await make_gateway(MAX_BODY_BYTES="4096")
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    await client.hello(gateway.token("alice"))
    await client.send({"type": "ping", "t": "x" * 4096})
    assert await close_code(client) == 1009


async def test_ping_pong(gateway: Gateway) -> None:
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    await client.hello(gateway.token("alice"))
    await client.send({"type": "ping", "t": {"sent": 12.5}})
    assert await client.recv() == {"type": "pong", "t": {"sent": 12.5}}
    await client.send({"type": "ping"})
    assert await client.recv() == {"type": "pong", "t": None}


def check_stream(messages: list[dict[str, Any]], first_v: int) -> list[dict[str, Any]]:
    """Events exactly once, in order, from first_v; every ack after its event."""
    events: list[dict[str, Any]] = []
    for message in messages:
        if message["type"] == "event":
            events.append(message)
        elif message["type"] == "events":
            events.extend(message["events"])
        elif message["type"] == "ack":
            assert message["v"] in {e["v"] for e in events}, f"ack before its event: {message}"
    assert [e["v"] for e in events] == list(range(first_v, first_v + len(events)))
    return events


async def test_two_clients_get_every_event_once_in_order_and_acks_after_events(
    gateway: Gateway,
) -> None:
    doc = await make_doc(gateway, bob="editor")
    alice, bob = await open_ws(gateway, doc), await open_ws(gateway, doc)
    await alice.hello(gateway.token("alice"))
    await bob.hello(gateway.token("bob"))
    n = 40

    async def write_and_read(client: Client, user: str) -> list[dict[str, Any]]:
        for i in range(n):
            await client.op(f"{user}{i}", rename(f"{user} {i}"))
        got: list[dict[str, Any]] = []
        events = 0
        while sum(m["type"] == "ack" for m in got) < n or events < 2 * n:
            message = await client.recv()
            got.append(message)
            # one group commit of both clients' ops comes as one `events` frame
            events += len(message["events"]) if message["type"] == "events" else 0
            events += message["type"] == "event"
        return got

    got_a, got_b = await asyncio.gather(write_and_read(alice, "alice"), write_and_read(bob, "bob"))
    events_a, events_b = check_stream(got_a, 2), check_stream(got_b, 2)
    assert events_a == events_b
    assert len(events_a) == 2 * n
    mine = [e["id"] for e in events_a if e["actor"] == "alice"]
    assert mine == [f"alice{i}" for i in range(n)]  # its own, with id set, in its order
    assert {(m["id"], m["v"]) for m in got_a if m["type"] == "ack"} == {
        (e["id"], e["v"]) for e in events_a if e["actor"] == "alice"
    }
    await alice.quiet()
    await bob.quiet()


async def test_http_ops_reach_the_websockets(gateway: Gateway) -> None:
    doc = await make_doc(gateway, bob="viewer")
    client = await open_ws(gateway, doc)
    await client.hello(gateway.token("bob"))
    async with gateway.client("alice") as http:
        r = await http.post(
            f"/api/documents/{doc}/ops", json={"id": "h1", "op": rename("Via HTTP")}
        )
        assert r.status_code == 200
        r = await http.post(f"/api/documents/{doc}/restore", json={"v": 1})
        assert r.json() == {"v": 3}
    first, second = await client.recv(), await client.recv()
    assert (first["v"], first["id"], first["actor"]) == (2, "h1", "alice")
    assert (second["v"], second["id"], second["op"]["kind"]) == (3, None, "restore")


async def test_resume_after_a_disconnect_gets_exactly_the_missed_events(gateway: Gateway) -> None:
    doc = await make_doc(gateway, bob="editor")
    alice = await open_ws(gateway, doc)
    await alice.hello(gateway.token("alice"))
    bob = await open_ws(gateway, doc)
    await bob.hello(gateway.token("bob"))
    await alice.op("a1", rename("one"))
    await alice.until("ack")
    last = (await bob.recv())["v"]
    assert last == 2
    await bob.ws.close()
    for i in range(2, 5):
        await alice.op(f"a{i}", rename(f"n{i}"))
        await alice.until("ack")
    bob = await open_ws(gateway, doc)
    welcome = await bob.hello(gateway.token("bob"), since=last)
    assert [e["v"] for e in welcome["events"]] == [3, 4, 5]
    assert [e["id"] for e in welcome["events"]] == ["a2", "a3", "a4"]
    await alice.op("a5", rename("after"))
    event = await bob.recv()
    assert (event["type"], event["v"], event["id"]) == ("event", 6, "a5")
    await bob.quiet()


async def test_rate_limit_rejects_then_closes_4429(make_gateway: Any) -> None:
    gateway = await make_gateway(WS_OP_RATE="1", WS_OP_BURST="3")
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    await client.hello(gateway.token("alice"))
    for i in range(4):
        await client.op(f"o{i}", rename(f"t{i}"))
    got: list[dict[str, Any]] = []
    while len([m for m in got if m["type"] in ("ack", "reject")]) < 4:
        got.append(await client.recv())
    rejects = [m for m in got if m["type"] == "reject"]
    assert [(m["id"], m["code"]) for m in rejects] == [("o3", "rate_limited")]
    for i in range(20):
        await client.op(f"x{i}", rename("flood"))
    assert await close_code(client) == 4429


def stroke_op(i: int, points: int = 10_000) -> dict[str, Any]:
    import random

    rng = random.Random(i)
    return {
        "kind": "element.add",
        "element": f"s{i}",
        "layer": "L1",
        "shape": "stroke",
        "props": {
            "points": [
                [rng.uniform(-9999, 9999), rng.uniform(-9999, 9999), rng.random()]
                for _ in range(points)
            ]
        },
    }


@pytest.mark.timeout(120)
async def test_a_slow_reader_is_closed_4408_and_the_others_go_on(make_gateway: Any) -> None:
    gateway = await make_gateway(WS_SEND_QUEUE="4", WS_OP_RATE="1000", WS_OP_BURST="1000")
    doc = await make_doc(gateway, slow="viewer")
    writer = await open_ws(gateway, doc, max_size=None)
    await writer.hello(gateway.token("alice"))
    # The slow client reads nothing: its library stops reading the socket after one
    # message, the kernel buffers fill, then the server's queue for it overflows.
    slow = await open_ws(gateway, doc, max_queue=1, max_size=None)
    await slow.hello(gateway.token("slow"))
    await writer.op("layer", {"kind": "layer.add", "layer": "L1", "name": "ink"})
    await writer.until("ack")
    closed = asyncio.create_task(slow_close_code(slow, closes_4408()))
    n = 60
    # One op at a time: each commits alone, so the slow client gets one frame per op
    # (ops sent together chain into one commit and one frame), and the writer never has
    # more answers coming at once than its queue of 4 holds while a 500 kB frame drains.
    for i in range(n):
        await writer.op(f"s{i}", stroke_op(i))
        await writer.until("ack", wait=30)
    assert await closed == 4408
    # the writer was never held back, and is still served
    await writer.send({"type": "ping", "t": 1})
    assert (await writer.until("pong"))[-1] == {"type": "pong", "t": 1}


async def test_server_shutdown_closes_with_1001_or_1012(
    pg_dsn: str, pg_pool: object, redis_url: str
) -> None:
    server, task, url = await start_gateway(gateway_settings(pg_dsn, redis_url))
    gateway = Gateway(url, gateway_settings(pg_dsn, redis_url))
    try:
        doc = await make_doc(gateway)
        client = await open_ws(gateway, doc)
        await client.hello(gateway.token("alice"))
        server.should_exit = True
        assert await close_code(client, wait=15) in (1001, 1012)
    finally:
        server.should_exit = True
        await task


async def test_a_draining_server_answers_ops_in_flight_then_closes_1001(
    pg_dsn: str, pg_pool: object, redis_url: str
) -> None:
    settings = gateway_settings(pg_dsn, redis_url)
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="on", ws_per_message_deflate=False
    )
    server = GatewayServer(config, app)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    gateway = Gateway(f"http://127.0.0.1:{port}", settings)
    try:
        doc = await make_doc(gateway)
        client = await open_ws(gateway, doc)
        await client.hello(gateway.token("alice"))
        for i in range(5):
            await client.op(f"o{i}", rename(f"t{i}"))
        await asyncio.sleep(0)
        server.should_exit = True
        got: list[dict[str, Any]] = []
        code = None
        try:
            while True:
                got.append(await client.recv(wait=10))
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        assert code == 1001
        answers = {m["id"]: m["type"] for m in got if m["type"] in ("ack", "reject")}
        assert set(answers) == {f"o{i}" for i in range(5)}  # every op got its answer
        check_stream(got, 2)
    finally:
        server.should_exit = True
        await task
