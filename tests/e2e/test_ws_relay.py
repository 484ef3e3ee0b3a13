"""Fan-out across gateway processes through the real relay (app/relay) and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from app.bus import create_redis
from app.relay import Relay
from tests.e2e.test_ws import check_stream
from tests.e2e.ws_client import Client, make_doc, open_ws, rename
from tests.support.relay import RunningRelay, fast_config


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    value = f"wsrelay{uuid.uuid4().hex[:8]}:"
    yield value
    client = redis.from_url(redis_url)
    async for key in client.scan_iter(match=f"{value}*"):
        await client.delete(key)
    await client.aclose()


async def read_events(client: Client, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while (
        sum(len(m["events"]) if m["type"] == "events" else m["type"] == "event" for m in got)
        < count
    ):
        got.append(await client.recv(10))
    return got


async def test_events_reach_other_gateways_through_the_relay(
    make_gateway: Any, pg_dsn: str, prefix: str, redis_url: str
) -> None:
    one = await make_gateway(REDIS_PREFIX=prefix)
    two = await make_gateway(REDIS_PREFIX=prefix)
    rds = create_redis(redis_url)
    running = RunningRelay(Relay(fast_config(pg_dsn, prefix), rds)).start()
    try:
        doc = await make_doc(one, bob="editor")
        alice, bob = await open_ws(one, doc), await open_ws(two, doc)
        await alice.hello(one.token("alice"))
        await bob.hello(two.token("bob"))
        n = 30
        for i in range(n):
            await bob.op(f"b{i}", rename(f"b{i}"))
        events = check_stream(await read_events(alice, n), 2)
        assert [e["id"] for e in events] == [f"b{i}" for i in range(n)]
        check_stream(await read_events(bob, n), 2)
        # The relay stops: gateway one hears nothing of what two commits meanwhile...
        await running.stop()
        for i in range(3):
            await bob.op(f"c{i}", rename(f"c{i}"))
        await alice.quiet(0.5)
        # ...until it is back: then everything, in order, once.
        running = RunningRelay(Relay(fast_config(pg_dsn, prefix), rds)).start()
        later = check_stream(await read_events(alice, 3), n + 2)
        assert [e["id"] for e in later] == ["c0", "c1", "c2"]
        await alice.quiet(0.3)
    finally:
        await running.stop()
        await rds.aclose()
