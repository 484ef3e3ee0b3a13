"""read_after decides between Redis and PostgreSQL (I4): the Redis range only when it
provably continues the consumer's history, else the store. Fakes of both sides here;
tests/integration/test_relay_catchup.py runs the same against the real servers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.bus import Entry, Keys, entry_id, read_after, to_entry
from app.bus.entry import entry_fields
from app.observability import metrics
from app.store.ports import StoredEvent

KEYS = Keys("t:")


def event(v: int, position: int, doc: str = "d1") -> StoredEvent:
    return StoredEvent(
        position=position,
        doc_id=doc,
        v=v,
        kind="doc.rename",
        op=b'{"kind":"doc.rename","title":"t%d"}' % v,
        effect=b"{}",
        actor="alice",
        op_id=f"o{v}",
        ts=1000 + v,
    )


# d1 at versions 1..10, at positions 2, 4, ..., 20 (another document between).
HISTORY = [event(v, 2 * v) for v in range(1, 11)]


class FakeStore:
    def __init__(self, events: Sequence[StoredEvent], epoch: int = 1) -> None:
        self.events = list(events)
        self.current_epoch = epoch
        self.reads = 0

    async def read_stream(
        self, doc_id: str, after_v: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        self.reads += 1
        found = [e for e in self.events if e.doc_id == doc_id and e.v > after_v]
        return found if limit is None else found[:limit]

    async def epoch(self) -> int:
        return self.current_epoch


class FakeRedis:
    """Just XRANGE, over streams given as lists of (position, fields)."""

    def __init__(self) -> None:
        self.streams: dict[str, list[tuple[bytes, dict[bytes, bytes]]]] = {}
        self.down = False

    def put(self, events: Sequence[StoredEvent], epoch: int = 1) -> None:
        for e in events:
            self.streams.setdefault(KEYS.doc_stream(e.doc_id), []).append(
                (entry_id(e.position).encode(), entry_fields(e, epoch))
            )

    async def xrange(
        self, name: str, min: str = "-", max: str = "+", count: int | None = None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        if self.down:
            raise RedisConnectionError("connection refused")
        low = 0 if min == "-" else int(min.split("-")[0])
        items = [item for item in self.streams.get(name, []) if int(item[0].split(b"-")[0]) >= low]
        return items if count is None else items[:count]


def expected(after_v: int, epoch: int = 1) -> list[Entry]:
    return [to_entry(e, epoch) for e in HISTORY if e.v > after_v]


def store_reads(reason: str) -> float:
    value = metrics.catchup_store_reads_total.labels(reason=reason)._value.get()
    return float(value)


async def read(redis: Any, store: FakeStore, after_v: int, **kw: Any) -> list[Entry]:
    after_position = 2 * after_v
    return await read_after(redis, store, "d1", after_v, after_position, keys=KEYS, **kw)


async def test_a_full_stream_is_read_from_redis_alone() -> None:
    redis, store = FakeRedis(), FakeStore(HISTORY)
    redis.put(HISTORY)
    for after in range(0, 11):
        assert await read(redis, store, after) == expected(after)
    assert store.reads == 0


async def test_an_up_to_date_consumer_gets_nothing_without_asking_the_store() -> None:
    redis, store = FakeRedis(), FakeStore(HISTORY)
    redis.put(HISTORY)
    assert await read(redis, store, 10) == []
    assert store.reads == 0


async def test_the_anchor_may_be_trimmed_if_the_next_version_is_there() -> None:
    redis, store = FakeRedis(), FakeStore(HISTORY)
    redis.put(HISTORY[5:])  # v 6..10 kept, 1..5 trimmed
    assert await read(redis, store, 5) == expected(5)
    assert store.reads == 0


async def test_a_point_before_the_trimmed_start_is_read_from_the_store() -> None:
    redis, store = FakeRedis(), FakeStore(HISTORY)
    redis.put(HISTORY[5:])
    before = store_reads("gap")
    assert await read(redis, store, 3) == expected(3)
    assert store.reads == 1
    assert store_reads("gap") == before + 1


async def test_a_missing_stream_is_read_from_the_store() -> None:
    redis, store = FakeRedis(), FakeStore(HISTORY)
    assert await read(redis, store, 0) == expected(0)
    assert await read(redis, store, 7) == expected(7)
    assert await read(redis, store, 10) == []
    assert store.reads == 3


async def test_a_hole_inside_the_range_is_read_from_the_store() -> None:
    # A failover to a replica that missed v 6 while the relay published on.
    redis, store = FakeRedis(), FakeStore(HISTORY)
    redis.put(HISTORY[:5] + HISTORY[6:])
    assert await read(redis, store, 2) == expected(2)
    assert store.reads == 1


async def test_a_stream_that_is_behind_the_consumer_is_read_from_the_store() -> None:
    # Redis restarted and got only older entries back (or the relay is behind).
    redis, store = FakeRedis(), FakeStore(HISTORY)
    redis.put(HISTORY[:4])
    assert await read(redis, store, 6) == expected(6)
    assert store.reads == 1


async def test_entries_of_another_epoch_are_not_used() -> None:
    redis, store = FakeRedis(), FakeStore(HISTORY, epoch=2)
    redis.put(HISTORY, epoch=1)
    assert await read(redis, store, 4, epoch=2) == expected(4, epoch=2)
    assert store.reads == 1
    # Without an epoch to check against, Redis answers as it holds.
    assert await read(redis, store, 4) == expected(4, epoch=1)


async def test_a_position_that_names_another_event_is_not_an_anchor() -> None:
    # Same position, another version: the consumer's point is of another history.
    redis, store = FakeRedis(), FakeStore(HISTORY)
    redis.put(HISTORY)
    got = await read_after(redis, store, "d1", 4, 10, keys=KEYS)  # v 4 is at 8, not 10
    assert got == expected(4)
    assert store.reads == 1


async def test_redis_down_is_read_from_the_store() -> None:
    redis, store = FakeRedis(), FakeStore(HISTORY)
    redis.put(HISTORY)
    redis.down = True
    before = store_reads("redis_error")
    assert await read(redis, store, 3) == expected(3)
    assert store_reads("redis_error") == before + 1


async def test_limit_bounds_both_sources() -> None:
    redis, store = FakeRedis(), FakeStore(HISTORY)
    redis.put(HISTORY)
    assert await read(redis, store, 2, limit=3) == expected(2)[:3]
    assert await read(redis, store, 10, limit=3) == []
    empty = FakeRedis()
    assert await read(empty, store, 2, limit=3) == expected(2)[:3]


async def test_entries_from_either_source_are_the_same_bytes() -> None:
    redis, store = FakeRedis(), FakeStore(HISTORY)
    redis.put(HISTORY)
    from_redis = await read(redis, store, 0)
    from_store = await read(FakeRedis(), store, 0)
    assert from_redis == from_store


async def test_bad_arguments_are_refused() -> None:
    redis, store = FakeRedis(), FakeStore(HISTORY)
    with pytest.raises(ValueError):
        await read_after(redis, store, "d1", -1, 0, keys=KEYS)
    with pytest.raises(ValueError):
        await read_after(redis, store, "d1", 0, 0, keys=KEYS, limit=0)
    with pytest.raises(ValueError):
        await read_after(redis, store, "d{1}", 0, 0, keys=KEYS)
