"""The relay against real PostgreSQL and Redis: every event in its document's stream
exactly once, id = position, versions in order, ``e`` = the websocket event (I4).

Each test has its own Redis prefix (``redis_prefix``; keys deleted afterwards) and an
empty store (``pg_clean``).
"""

from __future__ import annotations

import asyncio
import time

import orjson

from app.bus import Keys, Redis, read_progress, to_entry
from app.observability import metrics
from app.relay import Relay
from app.store.postgres import PostgresStore
from tests.support.relay import (
    RunningRelay,
    Writer,
    assert_published_exactly,
    fast_config,
    stream_contents,
    wait_until,
)


async def test_each_event_lands_in_its_stream_once_in_order(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    relay = Relay(fast_config(pg_clean, redis_prefix), redis)
    async with Writer(store) as writer, RunningRelay(relay) as running:
        await writer.documents("d1", "d2", "d3")
        await writer.edits(["d1", "d2", "d3"], 60)
        await running.caught_up(store)
        assert await assert_published_exactly(redis, keys, store) == writer.acked == 66
        head = await store.head()
        progress = await read_progress(redis, keys)
        assert progress.position == head
        assert progress.epoch == 1
        store_id = await store.pool.fetchval("SELECT store_id::text FROM store_meta")
        assert progress.store == store_id
        assert relay.published == 66


async def test_the_e_field_is_the_websocket_event(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    async with (
        Writer(store) as writer,
        RunningRelay(Relay(fast_config(pg_clean, redis_prefix), redis)) as running,
    ):
        await writer.documents("d1")
        await writer.edit("d1")
        await running.caught_up(store)
    entries = (await stream_contents(redis, keys))["d1"]
    events = await store.read_stream("d1")
    assert [e.position for e in entries] == [e.position for e in events]
    for entry, event in zip(entries, events, strict=True):
        body = orjson.loads(entry.e)
        # PROTOCOL.md section 4, `event`: v, op, actor, id, ts (and the gateway adds type).
        assert list(body) == ["v", "op", "actor", "id", "ts"]
        assert body == {
            "v": event.v,
            "op": orjson.loads(event.op),
            "actor": "alice",
            "id": event.op_id,
            "ts": event.ts,
        }
        assert event.op in entry.e  # spliced, not re-encoded
        assert entry == to_entry(event, 1)
    assert orjson.loads(entries[0].e)["id"] is None  # doc.create: no client op
    assert orjson.loads(entries[0].e)["op"]["kind"] == "doc.create"
    assert orjson.loads(entries[2].e)["op"] == {"kind": "doc.rename", "title": "title 1"}
    raw = await redis.xrange(keys.doc_stream("d1"), count=1)
    assert raw[0][0] == b"%d-0" % events[0].position
    assert set(raw[0][1]) == {b"v", b"epoch", b"e"}


async def test_a_restart_resumes_where_it_stopped(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    async with Writer(store) as writer:
        await writer.documents("d1", "d2")
        async with RunningRelay(Relay(fast_config(pg_clean, redis_prefix), redis)) as running:
            await running.caught_up(store)
        stopped_at = await store.head()
        await writer.edits(["d1", "d2"], 20)  # while no relay runs
        second = Relay(fast_config(pg_clean, redis_prefix), redis)
        async with RunningRelay(second) as running:
            await running.caught_up(store)
            await writer.edits(["d1", "d2"], 10)
            await running.caught_up(store)
    assert second.republishes == 0
    assert second.published == (await store.head()) - stopped_at
    await assert_published_exactly(redis, keys, store)


async def test_a_crash_between_xadd_and_progress_duplicates_nothing(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    # The entries are in Redis but relay:position says 10 events less: as if the relay
    # died after its XADDs and before the position write.
    keys = Keys(redis_prefix)
    async with Writer(store) as writer:
        await writer.documents("d1", "d2")
        await writer.edits(["d1", "d2"], 20)
        async with RunningRelay(Relay(fast_config(pg_clean, redis_prefix), redis)) as running:
            await running.caught_up(store)
    head = await store.head()
    await redis.set(keys.relay_position, head - 10)
    already = metrics.relay_already_published_total._value.get()
    again = Relay(fast_config(pg_clean, redis_prefix), redis)
    async with RunningRelay(again) as running:
        await running.caught_up(store)
    assert again.published == 0
    assert metrics.relay_already_published_total._value.get() == already + 10
    assert again.republishes == 0
    await assert_published_exactly(redis, keys, store)


async def test_metrics_follow_the_relay(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    published = metrics.relay_published_total._value.get()
    trips, events = _batches()
    relay = Relay(fast_config(pg_clean, redis_prefix), redis)
    async with Writer(store) as writer, RunningRelay(relay) as running:
        await writer.documents("d1")
        await writer.edits(["d1"], 8)
        await running.caught_up(store)
        assert metrics.relay_lease_held._value.get() == 1
        assert metrics.relay_position._value.get() == await store.head()
        await wait_until(lambda: metrics.relay_lag_events._value.get() == 0)
        assert metrics.relay_lag_seconds._value.get() == 0
    assert metrics.relay_published_total._value.get() == published + 10
    now_trips, now_events = _batches()
    assert now_events == events + 10  # every event in one observed round trip
    assert 1 <= now_trips - trips <= 10
    assert metrics.relay_lease_held._value.get() == 0
    body = metrics.render()[0].decode()
    for name in (
        "atelier_relay_lag_events",
        "atelier_relay_lag_seconds",
        "atelier_relay_published_total",
        "atelier_relay_batch_events_count",
        "atelier_relay_republishes_total",
        "atelier_relay_redis_errors_total",
    ):
        assert name in body


async def test_streams_are_trimmed_and_expire(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    config = fast_config(pg_clean, redis_prefix, maxlen=10, ttl=300)
    async with Writer(store) as writer, RunningRelay(Relay(config, redis)) as running:
        await writer.documents("d1")
        await writer.edits(["d1"], 298)
        await running.caught_up(store)
    length = await redis.xlen(keys.doc_stream("d1"))
    # MAXLEN ~ trims whole radix-tree nodes (100 entries by default): at least 10
    # kept, fewer than all 300.
    assert 10 <= length < 300
    assert 0 < await redis.ttl(keys.doc_stream("d1")) <= 300
    kept = (await stream_contents(redis, keys))["d1"]
    assert [e.v for e in kept] == list(range(301 - length, 301))


def _batches() -> tuple[float, float]:
    """``atelier_relay_batch_events`` in this process: round trips observed, and the
    events they carried (the histogram's count and sum)."""
    samples = {s.name: s.value for f in metrics.relay_batch_events.collect() for s in f.samples}
    return samples["atelier_relay_batch_events_count"], samples["atelier_relay_batch_events_sum"]


async def test_a_lingering_relay_reads_at_once_after_a_pause_then_batches(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    # RELAY_LINGER_MS: after a batch that caught up, the follower waits before reading
    # again, so the commits of that time go to Redis in one round trip; a commit after a
    # quiet spell is read at once, never held for the linger.
    keys = Keys(redis_prefix)
    linger = 0.4
    relay = Relay(fast_config(pg_clean, redis_prefix, linger=linger), redis)
    async with Writer(store) as writer, RunningRelay(relay) as running:
        await writer.documents("d1")
        await running.caught_up(store)
        await asyncio.sleep(linger * 1.5)  # a quiet spell: the linger is over

        started = time.monotonic()
        await writer.edit("d1")
        await running.caught_up(store)
        assert time.monotonic() - started < linger / 2, "a lone commit waited for the linger"

        await asyncio.sleep(linger * 1.5)
        before, _ = _batches()
        for _ in range(20):  # 20 commits, one after the other, inside one linger
            await writer.edit("d1")
        await running.caught_up(store)
        # The first commit at once, the rest after the linger: 2 round trips (3 if the
        # host is slow enough that the 20 commits outlast the linger), not 20.
        after, _ = _batches()
        assert after - before <= 3, after - before
        assert await assert_published_exactly(redis, keys, store) == writer.acked == 23
