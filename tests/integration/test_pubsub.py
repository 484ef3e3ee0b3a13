"""Subscriptions on a single Redis server share one pub/sub connection per client
(app/gateway/pubsub.py), against the real server: each owner hears its own channel
only, channels come and go on the live connection, and a killed connection is made
again with every channel on it."""

from __future__ import annotations

import asyncio

from app.bus.client import create_redis
from app.gateway.pubsub import Subscription
from tests.support.relay import wait_until

CHANNELS = 40


async def pubsub_clients(client: object, name: str) -> int:
    listed = await client.client_list(_type="pubsub")  # type: ignore[attr-defined]
    return sum(1 for c in listed if c.get("name") == name)


async def test_many_subscriptions_ride_one_connection(redis_url: str, redis_prefix: str) -> None:
    name = f"{redis_prefix}pubsub-test".replace(":", "-")
    client = create_redis(redis_url)
    client.connection_pool.connection_kwargs["client_name"] = name
    publisher = create_redis(redis_url)
    channels = [f"{redis_prefix}ch:{i}" for i in range(CHANNELS)]
    heard: dict[str, list[bytes | str]] = {c: [] for c in channels}
    ready: dict[str, int] = {c: 0 for c in channels}

    def subscribe(channel: str) -> Subscription:
        def on_subscribed() -> None:
            ready[channel] += 1

        return Subscription(
            client, channel, heard[channel].append, what="test", on_subscribed=on_subscribed
        )

    subs = {c: subscribe(c) for c in channels}
    try:
        await wait_until(lambda: all(ready.values()), what="every channel subscribed")
        assert await pubsub_clients(publisher, name) == 1
        for c in channels:
            await publisher.publish(c, f"to {c}")
        await wait_until(lambda: all(heard.values()), what="every message heard")
        assert heard == {c: [f"to {c}".encode()] for c in channels}

        # Half of them stop; a new one comes; the others hear on, on the same connection.
        for c in channels[::2]:
            await subs.pop(c).stop()
        late = f"{redis_prefix}ch:late"
        heard[late], ready[late] = [], 0
        subs[late] = subscribe(late)
        await wait_until(lambda: ready[late] == 1, what="the late channel subscribed")
        # A second owner of a channel already subscribed is told at once.
        twice = channels[1]
        again: list[bytes | str] = []
        told: list[str] = []
        second = Subscription(
            client, twice, again.append, what="test", on_subscribed=lambda: told.append("x")
        )
        assert told == ["x"]
        for c in [*channels, late]:
            await publisher.publish(c, "second")
        await wait_until(lambda: len(heard[late]) == 1 and len(again) == 1, what="heard")
        await asyncio.sleep(0.2)  # what the stopped ones would have heard has come by now
        assert all(heard[c] == [f"to {c}".encode()] for c in channels[::2])
        assert all(heard[c][-1] == b"second" for c in channels[1::2])
        assert await pubsub_clients(publisher, name) == 1
        await second.stop()

        # The connection is killed: it is made again, every channel on it.
        before = dict(ready)
        await publisher.client_kill_filter(_type="pubsub", skipme=True)
        await wait_until(
            lambda: all(ready[c] > before[c] for c in subs), what="every channel again"
        )
        for c in subs:
            await publisher.publish(c, "third")
        await wait_until(lambda: all(heard[c][-1] == b"third" for c in subs), what="heard")
        assert await pubsub_clients(publisher, name) == 1
    finally:
        for sub in subs.values():
            await sub.stop()
    # The last one gone, so is the connection.

    async def closed() -> bool:
        return await pubsub_clients(publisher, name) == 0

    await wait_until(closed, what="the connection closed")
    await client.aclose()
    await publisher.aclose()
