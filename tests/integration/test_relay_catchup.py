"""``read_after`` on real streams written by the relay: a consumer behind the trimmed
start, or whose stream expired or was deleted, gets the full range from PostgreSQL,
the same bytes Redis would have given (I4)."""

from __future__ import annotations

from app.bus import Keys, Redis, read_after, to_entry
from app.observability import metrics
from app.relay import Relay
from app.store.postgres import PostgresStore
from tests.support.relay import RunningRelay, Writer, fast_config, stream_contents


def store_reads() -> float:
    return float(metrics.catchup_store_reads_total.labels(reason="gap")._value.get())


async def test_reading_after_a_trimmed_point_heals_from_postgres(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    config = fast_config(pg_clean, redis_prefix, maxlen=10)
    async with Writer(store) as writer, RunningRelay(Relay(config, redis)) as running:
        await writer.documents("d1", "d2")
        await writer.edits(["d1", "d2"], 400)
        await running.caught_up(store)
    events = await store.read_stream("d1")
    assert len(events) == 202
    kept = (await stream_contents(redis, keys))["d1"]
    assert 10 <= len(kept) < 202  # trimmed
    first_kept = kept[0].v
    everything = [to_entry(e, 1) for e in events]

    def point(v: int) -> tuple[int, int]:
        return (v, events[v - 1].position) if v else (0, 0)

    # Behind the trimmed start: the whole range, from PostgreSQL.
    before = store_reads()
    for v in (0, 1, first_kept - 2):
        assert await read_after(redis, store, "d1", *point(v), keys=keys) == everything[v:]
    assert store_reads() == before + 3
    # Still held (the anchor trimmed or not): from Redis alone.
    for v in (first_kept - 1, first_kept, (first_kept + 202) // 2, 201, 202):
        assert await read_after(redis, store, "d1", *point(v), keys=keys) == everything[v:]
        assert store_reads() == before + 3, v
    # A limit pages through either source.
    assert await read_after(redis, store, "d1", *point(5), keys=keys, limit=7) == everything[5:12]
    held = await read_after(redis, store, "d1", *point(first_kept), keys=keys, limit=3)
    assert held == everything[first_kept : first_kept + 3]
    assert store_reads() == before + 4


async def test_a_vanished_or_emptied_stream_heals_from_postgres(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    async with (
        Writer(store) as writer,
        RunningRelay(Relay(fast_config(pg_clean, redis_prefix), redis)) as running,
    ):
        await writer.documents("d1")
        await writer.edits(["d1"], 10)
        await running.caught_up(store)
    events = await store.read_stream("d1")
    everything = [to_entry(e, 1) for e in events]
    at5 = (5, events[4].position)
    assert await read_after(redis, store, "d1", *at5, keys=keys) == everything[5:]
    before = store_reads()
    await redis.xtrim(keys.doc_stream("d1"), maxlen=0)  # exists, but empty
    assert await read_after(redis, store, "d1", *at5, keys=keys) == everything[5:]
    await redis.delete(keys.doc_stream("d1"))  # expired, flushed, never published
    assert await read_after(redis, store, "d1", *at5, keys=keys) == everything[5:]
    last = (len(events), events[-1].position)
    assert await read_after(redis, store, "d1", *last, keys=keys) == []
    assert store_reads() == before + 3
    # An unknown document: nothing, from either side.
    assert await read_after(redis, store, "nope", 0, 0, keys=keys) == []
