"""The relay on a Redis Cluster of three masters (tests/support/rediscluster.py):
documents whose streams lie on every master, published exactly once; the progress keys
on one slot; a restart resumes; the wipe reaches every master; every master flushed
mid-run republishes the window and a ``read_after`` consumer misses nothing (I4); the
progress keys of their earlier names adopted once; ``publish_all`` on several masters;
``python -m app relay`` with ``REDIS_CLUSTER=on``; a slot migrated mid-run and the
master of the progress restarted empty mid-run, with a consumer that misses nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from app.bus import Keys, Redis, publish_all, read_progress, wipe_streams
from app.gateway.pubsub import Subscription
from app.relay import Relay
from app.store.postgres import PostgresStore
from tests.conftest import delete_prefix
from tests.integration.test_relay_faults import DOCS, Consumer
from tests.support.appprocess import AppProcess
from tests.support.rediscluster import RedisCluster
from tests.support.relay import (
    RunningRelay,
    Writer,
    assert_published_exactly,
    fast_config,
    stream_contents,
    wait_until,
)


@pytest.fixture
def prefix(cluster_prefix: str) -> str:
    return cluster_prefix


def test_the_documents_lie_on_every_master(redis_cluster: RedisCluster) -> None:
    keys = Keys("atelier:")
    assert redis_cluster.owners(keys.doc_stream(d) for d in DOCS) == set(redis_cluster.ports)


async def test_the_relay_publishes_on_every_master_exactly_once_and_resumes(
    store: PostgresStore,
    pg_clean: str,
    cluster_redis: Redis,
    prefix: str,
    redis_cluster: RedisCluster,
) -> None:
    keys = Keys(prefix)
    progress_keys = [keys.relay_position, keys.relay_epoch, keys.relay_store]
    assert len({redis_cluster.keyslot(k) for k in progress_keys}) == 1
    async with Writer(store) as writer:
        await writer.documents(*DOCS)
        relay = Relay(fast_config(pg_clean, prefix, batch_size=7), cluster_redis)
        async with RunningRelay(relay) as running:
            await writer.edits(DOCS, 60)
            await running.caught_up(store)
        assert relay.republishes == 1  # the first start: no progress yet
        count = await assert_published_exactly(cluster_redis, keys, store)
        assert count == writer.acked == 2 * len(DOCS) + 60
        # A relay started again resumes from the progress: nothing republished.
        again = Relay(fast_config(pg_clean, prefix), cluster_redis)
        async with RunningRelay(again) as running:
            await writer.edits(DOCS, 20)
            await running.caught_up(store)
        assert again.republishes == 0
        assert again.started_from == count
    await assert_published_exactly(cluster_redis, keys, store)
    progress = await read_progress(cluster_redis, keys)
    assert progress.position == await store.head()
    # The wipe (a new store or epoch) finds the streams on every master.
    assert await wipe_streams(cluster_redis, keys) == len(DOCS)
    assert await stream_contents(cluster_redis, keys) == {}


async def test_every_master_flushed_mid_run_republishes_and_nothing_is_lost(
    store: PostgresStore,
    pg_clean: str,
    cluster_redis: Redis,
    redis_cluster: RedisCluster,
) -> None:
    # The whole cluster is flushed: this test owns the prefix's every key and the
    # module's cluster holds nothing else at this point.
    keys = Keys("atelier:")
    relay = Relay(fast_config(pg_clean, "atelier:", window=20), cluster_redis)
    consumer = Consumer(cluster_redis, store, keys)
    stop = asyncio.Event()
    try:
        async with Writer(store) as writer, RunningRelay(relay) as running:
            await writer.documents(*DOCS)
            polling = asyncio.create_task(consumer.keep_polling(stop))
            await writer.edits(DOCS, 60)
            await running.caught_up(store)
            before = relay.republishes
            await asyncio.to_thread(redis_cluster.flush_all)
            await writer.edits(DOCS, 60)
            await wait_until(lambda: relay.republishes > before, what="republish after flush")
            await running.caught_up(store)
            stop.set()
            await polling
            await consumer.assert_complete()
            assert relay.started_from >= 68 - 20
            await assert_published_exactly(cluster_redis, keys, store, after=relay.started_from)
            assert relay.republishes == before + 1
    finally:
        stop.set()
        await delete_prefix(cluster_redis, "atelier:")


@pytest.mark.parametrize("where", ["one node", "cluster"])
async def test_progress_under_the_earlier_key_names_is_adopted_once(
    where: str,
    redis: Redis,
    redis_prefix: str,
    cluster_redis: Redis,
    prefix: str,
) -> None:
    client, keys = (
        (redis, Keys(redis_prefix)) if where == "one node" else (cluster_redis, Keys(prefix))
    )
    old_position, old_epoch, old_store = keys.relay_legacy
    await client.set(old_position, b"41")
    await client.set(old_epoch, b"3")
    await client.set(old_store, b"5f0c0de0-0000-4000-8000-000000000001")
    progress = await read_progress(client, keys)
    assert (progress.position, progress.epoch, progress.store) == (
        41,
        3,
        "5f0c0de0-0000-4000-8000-000000000001",
    )
    assert await client.get(keys.relay_position) == b"41"
    assert await client.get(keys.relay_epoch) == b"3"
    assert await client.exists(old_position) + await client.exists(old_epoch) == 0
    assert await client.exists(old_store) == 0
    assert await read_progress(client, keys) == progress  # now from the current names


async def test_publish_all_reaches_subscribers_on_every_master(
    cluster_redis: Redis,
    prefix: str,
    redis_cluster: RedisCluster,
) -> None:
    keys = Keys(prefix)
    channels = [keys.doc_presence(d) for d in DOCS]
    assert redis_cluster.owners(channels) == set(redis_cluster.ports)
    heard: dict[str, list[bytes | str]] = {c: [] for c in channels}
    subscribed: set[str] = set()
    subscriptions = [
        Subscription(
            cluster_redis,
            channel,
            heard[channel].append,
            what="test",
            on_subscribed=lambda channel=channel: subscribed.add(channel),
        )
        for channel in channels
    ]
    try:
        await wait_until(lambda: len(subscribed) == len(channels), what="subscribed")
        await publish_all(cluster_redis, [(c, f"to {c}") for c in channels])
        await wait_until(lambda: all(heard.values()), what="every message heard")
        assert heard == {c: [f"to {c}".encode()] for c in channels}
    finally:
        for subscription in subscriptions:
            await subscription.stop()


async def test_the_relay_process_publishes_to_the_cluster(
    store: PostgresStore,
    pg_clean: str,
    cluster_redis: Redis,
    prefix: str,
    redis_cluster: RedisCluster,
) -> None:
    keys = Keys(prefix)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": pg_clean,
        **redis_cluster.settings_env(),
        "REDIS_PREFIX": prefix,
        "APP_ENV": "prod",
        "APP_SECRET": "s" * 40,
        "LOG_FORMAT": "json",
        "RELAY_METRICS_PORT": "off",
    }
    relay = await AppProcess(["relay"], env).start()
    try:
        async with Writer(store) as writer:
            await writer.documents(*DOCS)
            await writer.edits(DOCS, 40)
            head = await store.head()

            async def published() -> bool:
                return await cluster_redis.get(keys.relay_position) == b"%d" % head

            await wait_until(published, within=20, what=relay.output)
        assert await assert_published_exactly(cluster_redis, keys, store) == writer.acked
        assert await relay.end(signal.SIGTERM) == 0, relay.output
        assert relay.said("relay stopped")
        assert "Traceback" not in relay.output
    finally:
        if relay.running:
            await relay.end(signal.SIGKILL)


async def test_a_slot_moved_mid_run_is_followed_and_nothing_is_lost(
    store: PostgresStore,
    pg_clean: str,
    cluster_redis: Redis,
    prefix: str,
    redis_cluster: RedisCluster,
) -> None:
    keys = Keys(prefix)
    moved = keys.doc_stream("d1")
    slot, was = redis_cluster.keyslot(moved), redis_cluster.slot_owner(moved)
    to = next(port for port in redis_cluster.ports if port != was)
    consumer = Consumer(cluster_redis, store, keys)
    stop = asyncio.Event()
    relay = Relay(fast_config(pg_clean, prefix, batch_size=7), cluster_redis)
    try:
        async with Writer(store) as writer, RunningRelay(relay) as running:
            await writer.documents(*DOCS)
            polling = asyncio.create_task(consumer.keep_polling(stop))
            editing = asyncio.create_task(writer.keep_editing(DOCS, stop))
            await running.caught_up(store)
            # The slot moves with its keys while the relay writes to it and the
            # consumer reads it: ASK during the move, MOVED after.
            await asyncio.to_thread(redis_cluster.move_slot, slot, to)
            await asyncio.sleep(0.3)
            stop.set()
            await editing
            await running.caught_up(store)
            await polling
        assert redis_cluster.slot_owner(moved) == to
        await consumer.assert_complete()
        assert relay.republishes == 1  # the first start only
        assert await assert_published_exactly(cluster_redis, keys, store) == writer.acked
    finally:
        stop.set()
        await asyncio.to_thread(redis_cluster.move_slot, slot, was)


async def test_the_master_holding_the_progress_restarted_empty_republishes(
    store: PostgresStore,
    pg_clean: str,
    cluster_redis: Redis,
    prefix: str,
    redis_cluster: RedisCluster,
) -> None:
    keys = Keys(prefix)
    master = redis_cluster.slot_owner(keys.relay_position)
    lost = [d for d in DOCS if redis_cluster.slot_owner(keys.doc_stream(d)) == master]
    assert lost, "a document's stream shares the master of the progress"
    consumer = Consumer(cluster_redis, store, keys)
    stop = asyncio.Event()
    relay = Relay(fast_config(pg_clean, prefix), cluster_redis)
    try:
        async with Writer(store) as writer, RunningRelay(relay) as running:
            await writer.documents(*DOCS)
            polling = asyncio.create_task(consumer.keep_polling(stop))
            await writer.edits(DOCS, 40)
            await running.caught_up(store)
            before = relay.republishes
            await asyncio.to_thread(redis_cluster.restart_master, master)
            await writer.edits(DOCS, 40)
            await wait_until(lambda: relay.republishes > before, what="republish after restart")
            await running.caught_up(store)
            stop.set()
            await polling
        await consumer.assert_complete()
        # The window covers the whole log: every stream is whole again, once each.
        assert relay.started_from == 0
        assert await assert_published_exactly(cluster_redis, keys, store) == writer.acked
    finally:
        stop.set()
