"""Presence through the real gateways and Redis pub/sub (PROTOCOL.md section 4)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.e2e.conftest import Gateway
from tests.e2e.ws_client import Client, make_doc, open_ws


async def presences(client: Client, wait: float = 1.0) -> list[dict[str, Any]]:
    """Every presence message that arrives until the line is quiet for ``wait``."""
    got = []
    while True:
        try:
            message = await client.recv(wait)
        except TimeoutError:
            return got
        assert message["type"] == "presence", message
        got.append(message)


async def test_presence_reaches_peers_and_leaving_is_announced(gateway: Gateway) -> None:
    doc = await make_doc(gateway, bob="viewer", carol="viewer")
    alice, bob = await open_ws(gateway, doc), await open_ws(gateway, doc)
    welcome = await alice.hello(gateway.token("alice", name="Alice"))
    await bob.hello(gateway.token("bob"))
    await alice.send({"type": "presence", "state": {"cursor": [1, 2]}})
    (seen,) = await presences(bob, 0.5)
    assert seen == {
        "type": "presence",
        "session": welcome["session"],
        "user": "alice",
        "name": "Alice",
        "state": {"cursor": [1, 2]},
    }
    assert await presences(alice, 0.2) == []  # not echoed to its sender
    # a silent session is never announced, not even when it leaves
    carol = await open_ws(gateway, doc)
    await carol.hello(gateway.token("carol"))
    # ...and a session that joins gets the peers' latest state after its welcome
    (known,) = await presences(carol, 0.5)
    assert known["session"] == welcome["session"]
    await carol.ws.close()
    assert await presences(bob, 0.3) == []
    await alice.ws.close()
    (left,) = await presences(bob, 1.0)
    assert (left["session"], left["state"]) == (welcome["session"], None)


async def test_presence_is_coalesced_to_the_latest(gateway: Gateway) -> None:
    doc = await make_doc(gateway, bob="viewer")
    alice, bob = await open_ws(gateway, doc), await open_ws(gateway, doc)
    await alice.hello(gateway.token("alice"))
    await bob.hello(gateway.token("bob"))
    for i in range(30):
        await alice.send({"type": "presence", "state": {"x": i}})
    seen = await presences(bob, 0.5)
    assert 1 <= len(seen) < 30
    assert seen[-1]["state"] == {"x": 29}


async def test_presence_crosses_gateway_processes(make_gateway: Any) -> None:
    one, two = await make_gateway(), await make_gateway()
    doc = await make_doc(one, bob="editor")
    alice, bob = await open_ws(one, doc), await open_ws(two, doc)
    await alice.hello(one.token("alice"))
    await bob.hello(two.token("bob"))
    await asyncio.sleep(0.1)  # both subscriptions are in place
    await bob.send({"type": "presence", "state": {"sel": ["e1"]}})
    (seen,) = await presences(alice, 0.5)
    assert (seen["user"], seen["state"]) == ("bob", {"sel": ["e1"]})


async def test_oversize_presence_is_an_error(gateway: Gateway) -> None:
    doc = await make_doc(gateway)
    alice = await open_ws(gateway, doc)
    await alice.hello(gateway.token("alice"))
    await alice.send({"type": "presence", "state": {"blob": "x" * 3000}})
    error = await alice.recv()
    assert (error["type"], error["code"]) == ("error", "too_large")
