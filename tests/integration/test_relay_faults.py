"""The relay through faults (EVENTSTORE.md tests 11 and 12): killed at random moments,
Redis flushed or restarted empty, two relays at once, PostgreSQL connections
terminated, a new epoch. After each, every stream holds each event exactly once, and a
consumer reading with ``read_after`` has missed nothing (I4).

Tests that flush or restart Redis use a private redis-server (``redis_server``); the
others a prefix of their own on the shared one.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from app.bus import Entry, Keys, Redis, read_after, to_entry
from app.observability import metrics
from app.relay import Relay
from app.store.postgres import PostgresStore
from tests.conftest import RedisServer
from tests.support.relay import (
    RunningRelay,
    Writer,
    assert_published_exactly,
    fast_config,
    stream_contents,
    wait_until,
)

DOCS = ["d1", "d2", "d3", "d4"]


def republishes(reason: str) -> float:
    return float(metrics.relay_republishes_total.labels(reason=reason)._value.get())


class Consumer:
    """What a gateway does per document: remember (v, position), ask ``read_after``."""

    def __init__(self, redis: Redis, store: PostgresStore, keys: Keys) -> None:
        self.redis, self.store, self.keys = redis, store, keys
        self.seen: dict[str, list[Entry]] = {doc: [] for doc in DOCS}

    async def poll(self) -> None:
        for doc, seen in self.seen.items():
            v, position = (seen[-1].v, seen[-1].position) if seen else (0, 0)
            for entry in await read_after(
                self.redis, self.store, doc, v, position, keys=self.keys, epoch=1
            ):
                # Exactly once, in order: each entry is the next version.
                assert entry.v == (seen[-1].v if seen else 0) + 1, (doc, entry.v)
                seen.append(entry)

    async def keep_polling(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            await asyncio.sleep(0.01)

    async def assert_complete(self) -> None:
        await self.poll()
        for doc, seen in self.seen.items():
            assert seen == [to_entry(e, 1) for e in await self.store.read_stream(doc)], doc


async def test_a_relay_killed_at_random_moments_publishes_each_event_once(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    keys = Keys(redis_prefix)
    stop = asyncio.Event()
    async with Writer(store) as writer:
        await writer.documents(*DOCS)
        editing = asyncio.create_task(writer.keep_editing(DOCS, stop))
        try:
            for _ in range(8):
                # Small batches, so that a kill often lands between XADDs and the
                # position write of a batch.
                running = RunningRelay(
                    Relay(fast_config(pg_clean, redis_prefix, batch_size=7), redis)
                ).start()
                await asyncio.sleep(rng.uniform(0.0, 0.15))
                await running.stop()  # cancelled wherever it is
        finally:
            stop.set()
            await editing
        final = Relay(fast_config(pg_clean, redis_prefix), redis)
        async with RunningRelay(final) as running:
            await running.caught_up(store)
    assert final.republishes == 0, f"seed {seed}"
    count = await assert_published_exactly(redis, keys, store)
    assert count == writer.acked > 50, f"seed {seed}"


async def test_flushall_mid_run_republishes_the_window_and_nothing_is_lost(
    store: PostgresStore, pg_clean: str, redis_server: RedisServer
) -> None:
    redis = redis_server.client()
    keys = Keys("atelier:")
    relay = Relay(fast_config(pg_clean, "atelier:", window=20), redis)
    consumer = Consumer(redis, store, keys)
    stop = asyncio.Event()
    missing = republishes("missing")
    try:
        async with Writer(store) as writer, RunningRelay(relay) as running:
            await writer.documents(*DOCS)
            polling = asyncio.create_task(consumer.keep_polling(stop))
            await writer.edits(DOCS, 60)
            await running.caught_up(store)
            before = relay.republishes  # 1: the first start found no progress either
            await redis.flushall()
            await writer.edits(DOCS, 60)
            await wait_until(lambda: relay.republishes > before, what="republish after FLUSHALL")
            await running.caught_up(store)
            stop.set()
            await polling
            await consumer.assert_complete()
            # The window and everything after it are back in Redis, once each.
            assert relay.started_from >= 68 - 20
            await assert_published_exactly(redis, keys, store, after=relay.started_from)
            assert relay.republishes == before + 1
            assert republishes("missing") == missing + relay.republishes
    finally:
        await redis.aclose()


async def test_redis_restarted_empty_while_events_commit(
    store: PostgresStore, pg_clean: str, redis_server: RedisServer
) -> None:
    redis = redis_server.client()
    keys = Keys("atelier:")
    relay = Relay(fast_config(pg_clean, "atelier:"), redis)
    errors = metrics.relay_redis_errors_total._value.get()
    try:
        async with Writer(store) as writer, RunningRelay(relay) as running:
            await writer.documents(*DOCS)
            await running.caught_up(store)
            before = relay.republishes
            redis_server.stop()
            await writer.edits(DOCS, 40)  # committed while Redis is down
            await wait_until(lambda: metrics.relay_redis_errors_total._value.get() > errors)
            redis_server.start()  # same port, no data
            await writer.edits(DOCS, 8)
            await wait_until(lambda: relay.republishes > before, what="republish after restart")
            await running.caught_up(store)
            await assert_published_exactly(redis, keys, store)
            assert running.task is not None and not running.task.done()  # never crashed
    finally:
        await redis.aclose()


async def test_two_relays_one_publishes_and_the_other_takes_over(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    first = RunningRelay(Relay(fast_config(pg_clean, redis_prefix), redis)).start()
    second = RunningRelay(Relay(fast_config(pg_clean, redis_prefix), redis)).start()
    try:
        async with Writer(store) as writer:
            await wait_until(lambda: first.relay.holding or second.relay.holding)
            await asyncio.sleep(0.3)  # several lease polls of the other one
            assert [first.relay.holding, second.relay.holding].count(True) == 1
            leader, waiting = (first, second) if first.relay.holding else (second, first)
            holders = await store.pool.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND objid = $1::bigint::oid",
                waiting.relay.lease._key,
            )
            assert holders == 1
            await writer.documents(*DOCS)
            await writer.edits(DOCS, 20)
            await leader.caught_up(store)
            assert leader.relay.published == 28
            assert waiting.relay.published == 0
            await leader.stop()
            await wait_until(lambda: waiting.relay.holding, within=3, what="takeover")
            await writer.edits(DOCS, 20)
            await waiting.caught_up(store)
            assert waiting.relay.published == 20
        await assert_published_exactly(redis, keys, store)
    finally:
        await first.stop()
        await second.stop()


async def test_terminated_postgres_connections_are_survived(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    relay = Relay(fast_config(pg_clean, redis_prefix), redis)
    async with Writer(store) as writer, RunningRelay(relay) as running:
        await writer.documents(*DOCS)
        await running.caught_up(store)
        # The log follower's backend: it reconnects and resumes from its cursor.
        follower = relay.follower
        assert follower is not None and follower.backend_pid is not None
        await store.pool.execute("SELECT pg_terminate_backend($1)", follower.backend_pid)
        await writer.edits(DOCS, 20)
        await running.caught_up(store)
        assert follower.reconnects >= 1
        # The lease's backend: the lease is lost with it; the relay queues, takes it
        # again (no one else wants it) and carries on from Redis's progress.
        lease_pid = relay.lease.backend_pid
        assert lease_pid is not None
        await store.pool.execute("SELECT pg_terminate_backend($1)", lease_pid)
        await wait_until(lambda: relay.lease.backend_pid not in (None, lease_pid))
        await writer.edits(DOCS, 20)
        await running.caught_up(store)
    assert relay.republishes == 1  # the first start only: a new prefix has no progress
    await assert_published_exactly(redis, keys, store)


async def test_a_new_epoch_replaces_the_streams(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    relay = Relay(fast_config(pg_clean, redis_prefix), redis)
    epoch = republishes("epoch")
    async with Writer(store) as writer, RunningRelay(relay) as running:
        await writer.documents(*DOCS)
        await writer.edits(DOCS, 8)
        await running.caught_up(store)
        before = relay.republishes
        await store.pool.execute("UPDATE store_meta SET epoch = 2")  # the restore runbook
        await wait_until(lambda: relay.republishes > before, what="restart on the new epoch")
        await writer.edits(DOCS, 8)
        await running.caught_up(store)
    assert republishes("epoch") == epoch + 1
    await assert_published_exactly(redis, keys, store, epoch=2)
    assert int(await redis.get(keys.relay_epoch)) == 2


@pytest.mark.parametrize("case", ["ahead", "store"])
async def test_void_progress_on_start_wipes_and_republishes(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str, case: str
) -> None:
    keys = Keys(redis_prefix)
    async with Writer(store) as writer:
        await writer.documents(*DOCS)
        async with RunningRelay(Relay(fast_config(pg_clean, redis_prefix), redis)) as running:
            await running.caught_up(store)
    # Another store's streams and progress under our prefix (a restore without an
    # epoch bump looks like "ahead"; a fresh database on an old Redis like "store").
    await redis.xadd(keys.doc_stream("d1"), {"v": "9", "epoch": "1", "e": "{}"}, id="999-0")
    await redis.xadd(keys.doc_stream("old"), {"v": "1", "epoch": "1", "e": "{}"}, id="5-0")
    await redis.set(keys.relay_position, 999)
    if case == "store":
        await redis.set(keys.relay_store, "00000000-0000-0000-0000-000000000000")
        await redis.set(keys.relay_position, 3)
    before = republishes(case)
    relay = Relay(fast_config(pg_clean, redis_prefix), redis)
    async with RunningRelay(relay) as running:
        await running.caught_up(store)
    assert republishes(case) == before + 1
    assert "old" not in await stream_contents(redis, keys)
    await assert_published_exactly(redis, keys, store)
