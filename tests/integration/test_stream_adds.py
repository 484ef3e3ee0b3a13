"""The relay's stream writes (app/bus/addscript.py, app/bus/streams.py ``publish``)
against the real Redis: a batch's entries land in each stream as a prefix, never with
a hole below the top that a later "already published" refusal would hide (I4)."""

from __future__ import annotations

import orjson

from app.bus import Keys, Redis, position_of, publish
from app.bus.addscript import ADD_SCRIPT, Added, add_calls, parse_added
from app.errors import Unavailable
from app.store.ports import StoredEvent


def event(position: int, doc_id: str, v: int) -> StoredEvent:
    return StoredEvent(
        position=position,
        doc_id=doc_id,
        v=v,
        kind="op",
        op=orjson.dumps({"type": "noop", "n": position}),
        effect=b"{}",
        actor="u1",
        op_id=f"op{position}",
        ts=1_700_000_000_000 + position,
    )


async def positions(redis: Redis, key: str) -> list[int]:
    return [position_of(entry_id) for entry_id, _ in await redis.xrange(key)]


async def test_a_failure_mid_batch_stops_the_stream_and_the_retry_fills_it(
    redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    key = keys.doc_stream("d1")
    batch = [event(5, "d1", 1), event(6, "d1", 2), event(7, "d1", 3)]
    argv = add_calls(keys, batch, epoch=1, maxlen=1000, ttl=0)[key]
    width = int(argv[2])
    broken = list(argv)
    broken[3 + width] = "not-an-id"  # the second entry's id: Redis refuses that XADD
    answer = parse_added(await redis.eval(ADD_SCRIPT, 1, key, *broken))

    assert answer.added == 1 and answer.already == 0
    assert answer.error is not None and "Invalid stream ID" in answer.error
    # The third entry was not tried: had it landed, the stream's top (7) would be above
    # the missing 6, and the retry below would count 6 as "already published".
    assert await positions(redis, key) == [5]

    result = await publish(redis, keys, batch, epoch=1, position=7, maxlen=1000, ttl=0)
    assert (result.published, result.already) == (2, 1)
    assert await positions(redis, key) == [5, 6, 7]


async def test_a_stream_call_that_stopped_fails_the_publish_and_keeps_the_progress(
    redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    await publish(redis, keys, [event(1, "d1", 1)], epoch=1, position=1, maxlen=1000, ttl=0)
    # A foreign value where the stream of d2 should be: its call stops at WRONGTYPE.
    await redis.set(keys.doc_stream("d2"), b"not a stream")
    batch = [event(2, "d1", 2), event(3, "d2", 1), event(4, "d1", 3)]
    try:
        await publish(redis, keys, batch, epoch=1, position=4, maxlen=1000, ttl=0)
    except Unavailable as exc:
        assert "WRONGTYPE" in exc.message
    else:
        raise AssertionError("a publish with a refused stream must raise Unavailable")
    assert await redis.get(keys.relay_position) == b"1"  # put back: 2..4 are not done
    assert await positions(redis, keys.doc_stream("d1")) == [1, 2, 4]


async def test_a_key_of_another_type_is_deleted_so_the_retry_publishes(
    redis: Redis, redis_prefix: str
) -> None:
    """A foreign value where a document's stream belongs would fail every publish that
    touches the document, and so stall the relay for every document: the failed
    publish deletes it, and the retry recreates the stream."""
    keys = Keys(redis_prefix)
    await redis.set(keys.doc_stream("d2"), b"not a stream")
    batch = [event(1, "d1", 1), event(2, "d2", 1), event(3, "d2", 2)]
    try:
        await publish(redis, keys, batch, epoch=1, position=3, maxlen=1000, ttl=0)
    except Unavailable as exc:
        assert "WRONGTYPE" in exc.message and keys.doc_stream("d2") in exc.message
    else:
        raise AssertionError("a publish with a refused stream must raise Unavailable")
    assert await redis.exists(keys.doc_stream("d2")) == 0
    result = await publish(redis, keys, batch, epoch=1, position=3, maxlen=1000, ttl=0)
    assert (result.published, result.already) == (2, 1)
    assert await positions(redis, keys.doc_stream("d2")) == [2, 3]
    assert await redis.get(keys.relay_position) == b"3"


async def test_a_republished_batch_adds_nothing_and_each_stream_gets_its_expiry(
    redis: Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    batch = [event(p, f"d{p % 3}", p // 3 + 1) for p in range(1, 13)]
    first = await publish(redis, keys, batch, epoch=2, position=12, maxlen=1000, ttl=600)
    again = await publish(redis, keys, batch, epoch=2, position=12, maxlen=1000, ttl=600)

    assert (first.published, first.already) == (12, 0)
    assert (again.published, again.already) == (0, 12)
    assert again.previous_position == 12
    for d in range(3):
        key = keys.doc_stream(f"d{d}")
        assert await positions(redis, key) == [p for p in range(1, 13) if p % 3 == d]
        assert 0 < await redis.ttl(key) <= 600


async def test_streams_are_trimmed_to_about_maxlen(redis: Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    batch = [event(p, "d1", p) for p in range(1, 2001)]
    await publish(redis, keys, batch, epoch=1, position=2000, maxlen=100, ttl=0)
    kept = await positions(redis, keys.doc_stream("d1"))
    # MAXLEN ~ trims whole radix-tree nodes (100 entries each by default): at most one
    # node's worth beyond the bound, and always the newest entries.
    assert 100 <= len(kept) < 300
    assert kept == list(range(2001 - len(kept), 2001))


def test_the_answer_is_parsed_or_refused() -> None:
    assert parse_added([3, 1]) == Added(3, 1, None)
    assert parse_added([0, 0, b"OOM command not allowed"]) == Added(0, 0, "OOM command not allowed")
    for bad in ([1], [b"1", 0], "OK", None):
        try:
            parse_added(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
