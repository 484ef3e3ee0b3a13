"""The fan-out on a Redis Cluster of three masters (tests/support/rediscluster.py):
gateways and the relay with ``REDIS_CLUSTER=on``, documents chosen so that their
streams and channels lie on different masters (checked with ``CLUSTER KEYSLOT`` and the
slot map), so each gateway reads several shards at once.

- events reach the other gateway through the relay, on every master at once, exactly
  once and in order, across a relay stop and restart (as tests/e2e/test_ws_relay.py);
- 5 writers and 20 viewers on two gateways, with every master flushed mid-load: every
  peer folds every version once, in order, to the server's state (as
  tests/e2e/test_ws_invariants.py), and the relay has republished;
- presence crosses gateways on two masters, liveness lines keep it alive past its TTL
  (the heartbeat's publishes), and a member removed on one gateway is cut off on the
  other (as tests/e2e/test_ws_presence.py and test_ws_roles.py).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from app.bus import Keys, Redis
from app.relay import Relay
from app.store.postgres import PostgresStore
from tests.e2e.conftest import Gateway
from tests.e2e.test_ws import check_stream
from tests.e2e.test_ws_invariants import WRITERS, check, load, split, writer_ops
from tests.e2e.test_ws_presence import presences
from tests.e2e.test_ws_relay import read_events
from tests.e2e.test_ws_roles import set_role
from tests.e2e.ws_client import Client, close_code, open_ws, rename, ws_url
from tests.support.rediscluster import RedisCluster
from tests.support.relay import RunningRelay, assert_published_exactly, fast_config

_ = writer_ops  # the ops check() compares with


@pytest.fixture
def prefix(cluster_prefix: str) -> str:
    return cluster_prefix


def spread_ids(cluster: RedisCluster, keys: Keys, count: int) -> list[str]:
    """``count`` new document ids whose streams lie on ``count`` different masters."""
    chosen: dict[int, str] = {}
    for _ in range(500):
        doc_id = "c" + uuid.uuid4().hex[:12]
        chosen.setdefault(cluster.slot_owner(keys.doc_stream(doc_id)), doc_id)
        if len(chosen) == count:
            break
    ids = list(chosen.values())
    assert len(ids) == count
    # Each document's stream, presence and members channels share its slot.
    for doc_id in ids:
        slots = {
            cluster.keyslot(key)
            for key in (
                keys.doc_stream(doc_id),
                keys.doc_presence(doc_id),
                keys.doc_members(doc_id),
            )
        }
        assert len(slots) == 1, doc_id
    assert len(cluster.owners(keys.doc_stream(d) for d in ids)) == count
    return ids


async def create_doc(gateway: Gateway, doc_id: str, **members: str) -> str:
    async with gateway.client("alice") as http:
        r = await http.post("/api/documents", json={"id": doc_id, "title": "Poster"})
        assert r.status_code == 201, r.text
        for user, role in members.items():
            r = await http.put(f"/api/documents/{doc_id}/members/{user}", json={"role": role})
            assert r.status_code == 200, r.text
    return doc_id


async def on_cluster(
    make_gateway: Any, cluster: RedisCluster, prefix: str, **extra: str
) -> Gateway:
    gateway: Gateway = await make_gateway(**cluster.settings_env(), REDIS_PREFIX=prefix, **extra)
    assert gateway.settings.redis_cluster
    return gateway


async def test_events_cross_gateways_on_every_master_through_the_relay(
    make_gateway: Any,
    pg_dsn: str,
    prefix: str,
    cluster_redis: Redis,
    redis_cluster: RedisCluster,
    store: PostgresStore,
) -> None:
    one = await on_cluster(make_gateway, redis_cluster, prefix)
    two = await on_cluster(make_gateway, redis_cluster, prefix)
    docs = [
        await create_doc(one, d, bob="editor") for d in spread_ids(redis_cluster, Keys(prefix), 3)
    ]
    running = RunningRelay(Relay(fast_config(pg_dsn, prefix), cluster_redis)).start()
    alices: list[Client] = []
    bobs: list[Client] = []
    try:
        # Alice on gateway one follows the three documents: it reads three masters.
        alices += [await open_ws(one, d) for d in docs]
        bobs += [await open_ws(two, d) for d in docs]
        for alice, bob in zip(alices, bobs, strict=True):
            await alice.hello(one.token("alice"))
            await bob.hello(two.token("bob"))
        n = 20

        async def write(k: int, first: int, count: int) -> None:
            for i in range(first, first + count):
                await bobs[k].op(f"b{k}-{i}", rename(f"b{i}"))

        await asyncio.gather(*(write(k, 0, n) for k in range(3)))
        for k, alice in enumerate(alices):
            events = check_stream(await read_events(alice, n), 2)
            assert [e["id"] for e in events] == [f"b{k}-{i}" for i in range(n)]
        # The relay stops: gateway one hears nothing of what two commits meanwhile...
        await running.stop()
        await asyncio.gather(*(write(k, n, 3) for k in range(3)))
        for alice in alices:
            await alice.quiet(0.3)
        # ...until it is back: then everything, in order, once, on every master.
        running = RunningRelay(Relay(fast_config(pg_dsn, prefix), cluster_redis)).start()
        for k, alice in enumerate(alices):
            later = check_stream(await read_events(alice, 3), n + 2)
            assert [e["id"] for e in later] == [f"b{k}-{i}" for i in range(n, n + 3)]
        for alice in alices:
            await alice.quiet(0.2)
        await running.caught_up(store)
        await assert_published_exactly(cluster_redis, Keys(prefix), store)
    finally:
        await running.stop()
        for client in alices + bobs:
            await client.ws.close()


async def test_every_master_flushed_mid_load_loses_nothing(
    make_gateway: Any,
    pg_dsn: str,
    store: PostgresStore,
    prefix: str,
    cluster_redis: Redis,
    redis_cluster: RedisCluster,
) -> None:
    one = await on_cluster(make_gateway, redis_cluster, prefix)
    two = await on_cluster(make_gateway, redis_cluster, prefix)
    members = {f"w{i}": "editor" for i in range(WRITERS)}
    members.update({f"v{i}": "viewer" for i in range(20)})
    (doc,) = spread_ids(redis_cluster, Keys(prefix), 1)
    await create_doc(one, doc, **members)
    async with one.client("alice") as http:
        r = await http.post(
            f"/api/documents/{doc}/ops",
            json={"id": "L1", "op": {"kind": "layer.add", "layer": "L1", "name": "ink"}},
        )
        assert r.json() == {"v": 2}, r.text

    async def flush() -> None:
        await asyncio.to_thread(redis_cluster.flush_all)

    relay = Relay(fast_config(pg_dsn, prefix), cluster_redis)
    async with RunningRelay(relay) as running:
        peers = await load(
            [one, two],
            doc,
            writer_urls=lambda i: [ws_url(one, doc)],
            viewer_urls=split(one, two, doc),
            fault=flush,
        )
        await check(peers, two, doc, store)
        await running.caught_up(store)
        # The relay noticed that the cluster lost its progress and published again.
        assert relay.republishes >= 2
        await assert_published_exactly(cluster_redis, Keys(prefix), store, after=relay.started_from)


async def test_presence_and_membership_cross_gateways_on_two_masters(
    make_gateway: Any,
    prefix: str,
    redis_cluster: RedisCluster,
) -> None:
    # Liveness lines every 100 ms; a peer not refreshed for 400 ms would expire.
    timing = {"WS_PRESENCE_HEARTBEAT_MS": "100", "WS_PRESENCE_TTL_MS": "400"}
    one = await on_cluster(make_gateway, redis_cluster, prefix, **timing)
    two = await on_cluster(make_gateway, redis_cluster, prefix, **timing)
    docs = [
        await create_doc(one, d, bob="editor") for d in spread_ids(redis_cluster, Keys(prefix), 2)
    ]
    alices = [await open_ws(one, d) for d in docs]
    bobs = [await open_ws(two, d) for d in docs]
    for alice, bob in zip(alices, bobs, strict=True):
        await alice.hello(one.token("alice"))
        await bob.hello(two.token("bob"))
    await asyncio.sleep(0.2)  # the subscriptions are in place
    for k, bob in enumerate(bobs):
        await bob.send({"type": "presence", "state": {"sel": [f"e{k}"]}})
    for k, alice in enumerate(alices):
        (seen,) = await presences(alice, 0.5)
        assert (seen["user"], seen["state"]) == ("bob", {"sel": [f"e{k}"]})
    # Three TTLs later bob is still there on both: the liveness lines came through.
    for alice in alices:
        assert await presences(alice, 1.2) == []
    # Bob removed over HTTP on gateway one: cut off at once on gateway two.
    await set_role(one, docs[0], "bob", None)
    assert await close_code(bobs[0], 2.0) == 4403
    (left,) = await presences(alices[0], 0.5)
    assert (left["user"], left["state"]) == ("bob", None)
    await bobs[1].ws.close()
    (left,) = await presences(alices[1], 0.5)
    assert (left["user"], left["state"]) == ("bob", None)
    for alice in alices:
        await alice.ws.close()
