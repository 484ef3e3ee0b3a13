"""The websocket's limits as settings (PROTOCOL.md section 4; README settings table):
frame size (uvicorn's ``ws_max_size`` = ``MAX_BODY_BYTES``), ops per user over all its
connections, connections per user, presence per session, and the Origin allow-list."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import Gateway
from tests.e2e.ws_client import Client, make_doc, open_ws, rename


async def closed_with(client: Client, wait: float = 5.0) -> tuple[int | None, str]:
    """Read until the server closes: its close code and reason."""
    try:
        async with asyncio.timeout(wait):
            while True:
                await client.ws.recv()
    except ConnectionClosed as closed:
        return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")


async def answers(client: Client, count: int) -> list[dict[str, Any]]:
    """The next ``count`` acks and rejects (events in between are skipped)."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        message = await client.recv()
        if message["type"] in {"ack", "reject"}:
            got.append(message)
    return got


async def test_a_frame_over_max_body_bytes_closes_1009_as_it_is_read(gateway: Gateway) -> None:
    assert gateway.settings.max_body_bytes == 1 << 20
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    await client.hello(gateway.token("alice"))
    frame = '{"type":"ping","t":"' + "x" * (2 << 20) + '"}'
    with contextlib.suppress(ConnectionClosed):  # the server may close while we write
        await client.send(frame)
    code, reason = await closed_with(client)
    assert code == 1009
    # Refused by the websocket layer as the frame's header announced its size (uvicorn's
    # ws_max_size), not by the session after the whole frame was buffered.
    assert "a frame is at most" not in reason
    # A frame just under the limit is still fine.
    client = await open_ws(gateway, doc)
    await client.hello(gateway.token("alice"))
    await client.send({"type": "ping", "t": "y" * ((1 << 20) - 100)})
    assert (await client.recv())["type"] == "pong"


async def test_ops_are_limited_per_user_over_all_its_connections(make_gateway: Any) -> None:
    gateway = await make_gateway(WS_USER_OP_RATE="1", WS_USER_OP_BURST="3")
    doc = await make_doc(gateway, bob="editor", carol="editor")
    one, two = await open_ws(gateway, doc), await open_ws(gateway, doc)
    await one.hello(gateway.token("bob"))
    await two.hello(gateway.token("bob"))
    for i in range(2):
        await one.op(f"a{i}", rename(f"a{i}"))
        await two.op(f"b{i}", rename(f"b{i}"))
    got = await answers(one, 2) + await answers(two, 2)
    assert sorted(m["type"] for m in got) == ["ack", "ack", "ack", "reject"]
    (reject,) = [m for m in got if m["type"] == "reject"]
    assert reject["code"] == "rate_limited"
    # Another user is not affected.
    carol = await open_ws(gateway, doc)
    await carol.hello(gateway.token("carol"))
    await carol.op("c0", rename("c0"))
    assert (await answers(carol, 1))[0]["type"] == "ack"
    # The refused op stored nothing: retried with the same id once the bucket refills,
    # it is applied.
    await asyncio.sleep(1.1)
    retry = one if reject["id"].startswith("a") else two
    await retry.op(reject["id"], rename("retried"))
    (answer,) = await answers(retry, 1)
    assert (answer["type"], answer["id"]) == ("ack", reject["id"])


async def test_connections_per_user_over_the_limit_are_refused_4429(make_gateway: Any) -> None:
    gateway = await make_gateway(WS_USER_CONNECTIONS="2")
    doc = await make_doc(gateway, bob="viewer")
    first, second = await open_ws(gateway, doc), await open_ws(gateway, doc)
    await first.hello(gateway.token("bob"))
    await second.hello(gateway.token("bob"))
    third = await open_ws(gateway, doc)
    await third.send({"type": "hello", "token": gateway.token("bob")})
    code, reason = await closed_with(third)
    assert code == 4429
    assert "too many connections" in reason
    # Another user is not affected.
    alice = await open_ws(gateway, doc)
    await alice.hello(gateway.token("alice"))
    # One closed: the user may connect again (once the server has seen it go).
    await first.ws.close()
    for _ in range(50):
        again = await open_ws(gateway, doc)
        await again.send({"type": "hello", "token": gateway.token("bob")})
        with contextlib.suppress(ConnectionClosed):  # 4429: not released yet
            if (await again.recv())["type"] == "welcome":
                break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the closed connection was never released")


async def test_presence_is_rate_limited_per_session(make_gateway: Any) -> None:
    gateway = await make_gateway(WS_PRESENCE_RATE="2")  # burst 4
    doc = await make_doc(gateway, bob="viewer")
    alice, bob = await open_ws(gateway, doc), await open_ws(gateway, doc)
    await alice.hello(gateway.token("alice"))
    await bob.hello(gateway.token("bob"))
    for i in range(6):
        await alice.send({"type": "presence", "state": {"x": i}})
    errors: list[dict[str, Any]] = []
    while True:
        try:
            message = await alice.recv(0.5)
        except TimeoutError:
            break
        errors.append(message)
    assert errors
    assert {(m["type"], m["code"]) for m in errors} == {("error", "rate_limited")}
    assert len(errors) <= 2
    # What was allowed reached the peer; the refused updates did not.
    seen: list[dict[str, Any]] = []
    while True:
        try:
            seen.append(await bob.recv(0.5))
        except TimeoutError:
            break
    assert seen
    assert all(m["state"]["x"] < 6 - len(errors) for m in seen)
    # Bob's own budget is his own.
    await bob.send({"type": "presence", "state": {"y": 1}})
    assert (await alice.recv())["type"] == "presence"


async def test_an_origin_outside_the_allow_list_is_closed_4403_before_hello(
    make_gateway: Any,
) -> None:
    allowed = "https://app.example.com"
    gateway = await make_gateway(WS_ALLOWED_ORIGINS=f"{allowed},http://localhost:5173")
    doc = await make_doc(gateway)
    stranger = await open_ws(gateway, doc, origin="https://evil.example.com")
    code, reason = await closed_with(stranger)
    assert code == 4403
    assert "origin" in reason
    for origin in (allowed, "http://localhost:5173", None):
        client = await open_ws(gateway, doc, origin=origin)
        await client.hello(gateway.token("alice"))
    # Any origin when the list is empty (the default).
    anyone = await make_gateway()
    client = await open_ws(anyone, doc, origin="https://evil.example.com")
    await client.hello(anyone.token("alice"))
    await client.send({"type": "ping", "t": 1})
    assert (await client.recv())["type"] == "pong"
