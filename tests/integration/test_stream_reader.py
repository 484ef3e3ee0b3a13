"""The process's stream readers (app/gateway/streams.py) against the real Redis: one
blocked XREAD on one connection serves many documents, a stream followed while that read
is blocked is read at once (the wake stream), every stream starts at its top, entries of
another epoch or malformed are skipped, and the readers clean up after themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.bus import Keys
from app.bus.client import create_redis
from app.gateway.fanout import Fanout
from app.gateway.streams import StreamReader
from app.protocol import WireEvent
from tests.support.appprocess import wait_until

EPOCH = 3
BLOCK_MS = 4_000  # longer than the waits below (and under the client's 5 s socket timeout)


class Epochs:
    def __init__(self) -> None:
        self.value = EPOCH

    async def epoch(self) -> int:
        return self.value


class Follower:
    def __init__(self, doc_id: str, fail: bool = False) -> None:
        self.doc_id = doc_id
        self.got: list[int] = []
        self.expected: list[int] = []
        self.fail = fail

    def offer(self, events: list[WireEvent]) -> None:
        if self.fail:
            raise RuntimeError("bug")
        self.got.extend(e.v for e in events)

    def expect(self, v: int) -> None:
        self.expected.append(v)


@pytest.fixture
async def client(redis_url: str, redis_prefix: str) -> AsyncIterator[Any]:
    redis = create_redis(redis_url)
    redis.connection_pool.connection_kwargs["client_name"] = f"{redis_prefix[:-1]}-reader"
    try:
        yield redis
    finally:
        await redis.aclose()


async def add(redis: Any, key: str, v: int, *, epoch: int = EPOCH) -> None:
    body = f'{{"v":{v},"op":{{}},"actor":"a","id":null,"ts":1}}'.encode()
    await redis.xadd(key, {b"v": b"%d" % v, b"epoch": b"%d" % epoch, b"e": body})


async def blocked_reads(redis: Any, name: str) -> int:
    listed = await redis.client_list()
    return sum(1 for c in listed if c.get("name") == name and c.get("cmd") == "xread")


async def until_started(reader: StreamReader, key: str) -> None:
    """Until ``key`` was started at its top and a read naming it is in flight."""

    def started() -> bool:
        reading = reader._reading
        return reading is not None and key.encode() in reading.streams

    await wait_until(started, within=10, what=f"{key} read")
    await asyncio.sleep(0.05)  # the command reaches the server


async def until_blocked(reader: StreamReader) -> None:
    await wait_until(lambda: reader._reading is not None, within=10, what="the read blocked")
    await asyncio.sleep(0.05)  # the command reaches the server


async def test_one_read_serves_many_streams_and_wakes_for_a_new_one(
    client: Any, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    docs = [f"d{i}" for i in range(30)]
    followers = {d: Follower(d) for d in docs}
    wake = keys.gateway_wake("t", 0)
    reader = StreamReader(client, Epochs(), block_ms=BLOCK_MS, wake_key=wake)
    try:
        for d in docs:
            reader.add(keys.doc_stream(d), followers[d])
        await until_blocked(reader)
        name = f"{redis_prefix[:-1]}-reader"
        assert await blocked_reads(client, name) == 1
        for d in docs:
            await add(client, keys.doc_stream(d), 1)
            await add(client, keys.doc_stream(d), 2)
        await wait_until(
            lambda: all(f.got == [1, 2] for f in followers.values()),
            within=5,
            what="every stream's entries, in order",
        )
        # A document followed while the read is blocked: the wake ends that read, so
        # its entries come long before the block would have.
        await until_blocked(reader)
        late = Follower("late")
        started = time.monotonic()
        reader.add(keys.doc_stream("late"), late)
        await until_started(reader, keys.doc_stream("late"))
        await add(client, keys.doc_stream("late"), 7)
        await wait_until(lambda: late.got == [7], within=5, what="the late stream read")
        assert time.monotonic() - started < BLOCK_MS / 1000 / 2
        assert await client.xlen(wake) == 1  # capped at one entry
        assert 0 < await client.ttl(wake) <= 86_400  # and left to expire, should we die
        assert await blocked_reads(client, name) == 1
    finally:
        started = time.monotonic()
        await reader.close()
    # A wake ends the blocked read (redis-py may not end it on cancellation).
    assert time.monotonic() - started < BLOCK_MS / 1000 / 2
    assert await client.exists(wake) == 0
    assert reader._task is not None and reader._task.done()


async def test_streams_start_at_their_top_and_skip_foreign_entries(
    client: Any, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    key = keys.doc_stream("d")
    for v in (1, 2, 3):
        await add(client, key, v)  # older than the follow: never offered
    follower, broken, other = Follower("d"), Follower("x", fail=True), Follower("o")
    reader = StreamReader(client, Epochs(), block_ms=BLOCK_MS, wake_key=keys.gateway_wake("t", 0))
    try:
        reader.add(key, follower)
        reader.add(keys.doc_stream("x"), broken)
        reader.add(keys.doc_stream("o"), other)
        await until_blocked(reader)
        assert follower.expected == [3]  # the top tells what is committed
        await add(client, key, 4, epoch=EPOCH + 1)  # another history
        await client.xadd(key, {b"v": b"5"})  # malformed
        await add(client, keys.doc_stream("x"), 1)  # a follower that raises
        await add(client, key, 6)
        await add(client, keys.doc_stream("o"), 1)
        await wait_until(lambda: follower.got == [6] and other.got == [1], within=5)

        # A stream no longer followed is not offered; followed again, it starts afresh
        # at its top.
        reader.remove(key, Follower("d"))  # another follower's: nothing changes
        assert reader.following == 3
        reader.remove(key, follower)
        await add(client, key, 7)
        await add(client, keys.doc_stream("o"), 2)
        await wait_until(lambda: other.got == [1, 2], within=5)
        again = Follower("d")
        reader.add(key, again)
        await until_started(reader, key)
        await add(client, key, 8)
        await wait_until(lambda: again.got == [8], within=5)
        assert again.expected == [7]
        assert follower.got == [6]
    finally:
        await reader.close()


async def test_the_fanout_spreads_channels_over_shared_readers(
    client: Any, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    fanout = Fanout(
        Epochs(),  # type: ignore[arg-type]
        client,
        keys.doc_stream,
        block_ms=BLOCK_MS,
        wake_key=lambda n: keys.gateway_wake("t", n),
        streams_per_read=4,
    )
    got: dict[str, list[int]] = {f"d{i}": [] for i in range(10)}

    def sink_of(doc: str) -> Any:
        return lambda events, frame: got[doc].extend(e.v for e in events)

    sinks = {doc: sink_of(doc) for doc in got}
    try:
        for doc, sink in sinks.items():
            assert fanout.join(doc, sink, 0)
        readers = fanout._readers
        assert [r.following for r in readers] == [4, 4, 2]
        await wait_until(lambda: all(r._reading is not None for r in readers), within=10)
        await asyncio.sleep(0.05)
        for doc in got:
            await add(client, keys.doc_stream(doc), 1)
        await wait_until(lambda: all(v == [1] for v in got.values()), within=5)
        # A channel that stops leaves its reader's room to the next.
        fanout.leave("d0", sinks["d0"])
        await wait_until(lambda: readers[0].following == 3, within=5)
        assert fanout.join("d10", lambda events, frame: None, 0)
        assert [r.following for r in readers] == [3, 4, 3]  # the emptiest with room

        # A document left and joined again before the old channel stopped: the old
        # channel's stop does not take the new one's stream away.
        fanout.leave("d1", sinks["d1"])
        assert fanout.join("d1", sinks["d1"], 1)
        await asyncio.sleep(0.1)  # the old channel's stop runs
        reader = fanout.channel("d1").reader  # type: ignore[union-attr]
        assert reader is not None
        await until_started(reader, keys.doc_stream("d1"))
        await add(client, keys.doc_stream("d1"), 2)
        await wait_until(lambda: got["d1"] == [1, 2], within=5, what="d1 read again")
    finally:
        await fanout.close()
    for n in range(3):
        assert await client.exists(keys.gateway_wake("t", n)) == 0


async def test_a_followed_key_of_another_type_is_deleted_and_the_reads_go_on(
    client: Any, redis_prefix: str
) -> None:
    """One key of another type fails the shared read of every document; the reader
    deletes it (the name is the relay's) and every stream is read again."""
    keys = Keys(redis_prefix)
    a, b = Follower("a"), Follower("b")
    reader = StreamReader(client, Epochs(), block_ms=BLOCK_MS, wake_key=keys.gateway_wake("t", 0))
    try:
        reader.add(keys.doc_stream("a"), a)
        reader.add(keys.doc_stream("b"), b)
        await until_blocked(reader)
        await client.set(keys.doc_stream("b"), b"a foreign value")
        await add(client, keys.doc_stream("a"), 1)  # ends the blocked read
        await wait_until(lambda: a.got == [1], within=5, what="the read before")
        # The next read names b and fails with WRONGTYPE until b is gone.
        deadline = time.monotonic() + 10
        while await client.exists(keys.doc_stream("b")):
            assert time.monotonic() < deadline, "the key of another type is still there"
            await asyncio.sleep(0.05)
        await add(client, keys.doc_stream("a"), 2)
        await add(client, keys.doc_stream("b"), 1)
        await wait_until(lambda: a.got == [1, 2] and b.got == [1], within=10, what="reads")
    finally:
        await reader.close()
