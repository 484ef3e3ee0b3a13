"""Frames written straight to the transport (app/gateway/direct.py): a slow reader still
closes 4408 and the sockets that read keep up with the author's own. Messages read
straight from the parser once joined: none lost or reordered at the switch, and a close
from the client still ends the session."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from app.gateway.direct import DirectWebSocketProtocol
from tests.e2e.test_ws import stroke_op
from tests.e2e.ws_client import (
    Client,
    close_code,
    closes_4408,
    make_doc,
    open_ws,
    rename,
    slow_close_code,
)

VIEWERS = 5
OPS = 60


async def follow(client: Client, count: int, seen: dict[int, float]) -> None:
    """Every event's arrival time, until ``count`` events came."""
    while len(seen) < count:
        message = await client.recv(wait=30)
        now = time.monotonic()
        if message["type"] == "event":
            seen[message["v"]] = now
        elif message["type"] == "events":
            for event in message["events"]:
                seen[event["v"]] = now


@pytest.mark.timeout(120)
async def test_a_slow_reader_is_closed_4408_and_the_readers_keep_up_with_the_author(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: Counter[bool] = Counter()
    write_frame = DirectWebSocketProtocol.write_frame

    def counted(self: DirectWebSocketProtocol, frame: bytes) -> bool:
        took = write_frame(self, frame)
        writes[took] += 1
        return took

    monkeypatch.setattr(DirectWebSocketProtocol, "write_frame", counted)
    gateway = await make_gateway(WS_SEND_QUEUE="4", WS_OP_RATE="1000", WS_OP_BURST="1000")
    viewers = {f"v{i}": "viewer" for i in range(VIEWERS)}
    doc = await make_doc(gateway, slow="viewer", **viewers)
    author = await open_ws(gateway, doc, max_size=None)
    await author.hello(gateway.token("alice"))
    readers = []
    for user in viewers:
        reader = await open_ws(gateway, doc, max_size=None)
        await reader.hello(gateway.token(user))
        readers.append(reader)
    # The slow client reads nothing: its library stops reading the socket after one
    # message, the kernel buffers fill, the transport's, then its queue overflows.
    slow = await open_ws(gateway, doc, max_queue=1, max_size=None)
    await slow.hello(gateway.token("slow"))
    assert writes[True] > 0  # the welcomes went straight to the sockets

    closed = asyncio.create_task(slow_close_code(slow, closes_4408()))
    arrivals: list[dict[int, float]] = [{} for _ in readers]
    following = [
        asyncio.create_task(follow(r, OPS + 1, seen))
        for r, seen in zip(readers, arrivals, strict=True)
    ]
    own: dict[int, float] = {}
    acks: list[int] = []

    async def answered() -> None:
        """The author's messages up to its next ack, its own events' arrivals noted."""
        while True:
            message = await author.recv(wait=30)
            now = time.monotonic()
            if message["type"] == "ack":
                acks.append(message["v"])
                return
            if message["type"] == "event":
                own[message["v"]] = now
            elif message["type"] == "events":
                for event in message["events"]:
                    own[event["v"]] = now

    # One op at a time: each commits alone, so every socket gets one frame per op (ops
    # sent together chain into one commit and one frame), and the author never has
    # more answers coming at once than its queue of 4 holds while a 500 kB frame drains.
    await author.op("layer", {"kind": "layer.add", "layer": "L1", "name": "ink"})
    await answered()
    for i in range(OPS):
        await author.op(f"s{i}", stroke_op(i))
        await answered()
    assert max(acks) in own  # an ack comes no earlier than its event
    await asyncio.wait_for(asyncio.gather(*following), 60)

    assert await closed == 4408
    assert writes[False] > 0  # the slow socket's transport refused: its frames queued
    # Every reader got every event, none later than a moment after the author's own
    # copy (the same loop serves the test's clients: allow for it).
    for seen in arrivals:
        assert sorted(seen) == sorted(own)
        lags = sorted(seen[v] - own[v] for v in own)
        assert lags[-1] < 1.0, lags[-5:]
        assert lags[len(lags) // 2] < 0.25, lags
    await author.send({"type": "ping", "t": 1})
    assert (await author.until("pong"))[-1] == {"type": "pong", "t": 1}


async def test_after_the_join_messages_come_straight_from_the_parser_in_order(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = await make_gateway(WS_USER_CONNECTIONS="1")
    paths: Counter[str] = Counter()
    handed = DirectWebSocketProtocol.send_receive_event_to_app

    def counted(self: DirectWebSocketProtocol) -> None:
        paths["direct" if self.on_message is not None else "asgi"] += 1
        handed(self)

    monkeypatch.setattr(DirectWebSocketProtocol, "send_receive_event_to_app", counted)
    doc = await make_doc(gateway)
    client = await open_ws(gateway, doc)
    # Ops right behind the hello, before the welcome: they wait in ASGI's queue while
    # the hello is checked, and are taken from there, before any read straight.
    await client.send({"type": "hello", "token": gateway.token("alice")})
    for i in range(20):
        await client.op(f"a{i}", rename(f"A{i}"))
    # Then more, each sent once the one before it is acknowledged: after the join.
    got = [m for m in await client.until("welcome") if m["type"] == "ack"]
    while len(got) < 20:
        got += [m for m in await client.until("ack") if m["type"] == "ack"]
    for i in range(20):
        await client.op(f"b{i}", rename(f"B{i}"))
        got.append((await client.until("ack"))[-1])
    assert [a["id"] for a in got] == [f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)]
    assert [a["v"] for a in got] == list(range(2, 42))
    assert paths["direct"] >= 20 and paths["asgi"] >= 1
    # A frame the session refuses still gets its error, read straight.
    await client.send(b"binary")
    error = await client.recv()
    assert (error["type"], error["code"]) == ("error", "bad_message")
    # The client's close still reaches the session through ASGI: the session ends and
    # its user (one connection at most) may connect again.
    await client.ws.close()
    deadline = time.monotonic() + 10
    while True:
        again = await open_ws(gateway, doc)
        await again.send({"type": "hello", "token": gateway.token("alice")})
        try:
            if (await again.recv())["type"] == "welcome":
                break
        except ConnectionClosed:
            pass
        assert await close_code(again) == 4429  # too many connections: not yet
        assert time.monotonic() < deadline, "the closed session still counts"
        await asyncio.sleep(0.1)
