"""The document streams this process follows, read by ONE ``XREAD`` for all of them.

Each fan-out channel (app/gateway/fanout.py) needs its document's Redis stream read
from where it started following it. A reader task per channel cost an await chain each,
re-armed at every event, which the gateway's cyclic GC walked as young objects
(docs/benchmarks.md, "The many-docs tail"), a blocked connection each, and a round trip
per document per event. On a single Redis server one ``StreamReader`` reads them all:
one ``XREAD BLOCK`` names every followed stream, on one connection, and its reply hands
each document's entries to its channel.

A channel that starts while that ``XREAD`` is blocked is not in it. The reader is woken
by an entry on its own wake stream (``Keys.gateway_wake``), which every ``XREAD`` names
too, read from the last wake entry seen: an entry added at any moment is seen, by the
blocked read or by the next (no race between building the command and the ``XADD``).
One wake is sent per blocked read at most. The wake stream keeps one entry and is
deleted when the reader closes (and expires a day after its last wake, should the
process die without closing: the stream comes back with the next wake, and the read's
last seen id is still below the new entry's).

A Redis Cluster refuses one ``XREAD`` over keys of different slots, so there each
channel has a reader of its own, with no wake stream (its one key is known from the
start).

Every stream is read from its top at the moment it is first followed: what is older is
in every session's welcome or comes from PostgreSQL, and the top's version tells the
channel what is committed (``Follower.expect``). Entries of another store epoch belong
to another history (DESIGN.md, "Global order") and are never delivered; the epoch is
read again whenever new streams are started.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import structlog

from app.bus import is_wrong_type, unlink_foreign
from app.errors import Unavailable
from app.observability import metrics
from app.protocol import WireEvent

__all__ = ["Follower", "StreamReader"]

log = structlog.get_logger(__name__)

_READ_COUNT: Final = 500  # entries per stream per read
_BACKOFF_MIN: Final = 0.1
_BACKOFF_MAX: Final = 5.0
_STOP_WAIT: Final = 0.5
_WAKE_TTL: Final = 86_400  # seconds a wake stream outlives its last wake


class Follower(Protocol):
    """What the reader hands a stream's events to (a fan-out channel)."""

    @property
    def doc_id(self) -> str: ...

    def offer(self, events: list[WireEvent]) -> None: ...

    def expect(self, v: int) -> None: ...


class Epochs(Protocol):
    async def epoch(self) -> int: ...


def _bulk(value: bytes) -> bytes:
    """``value`` as a RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


@dataclass(eq=False, slots=True)
class _Followed:
    follower: Follower
    key: bytes  # RESP-encoded, as the read sends it
    last_id: bytes | None = None  # None: not started (read from the top first)
    id_bulk: bytes = b""  # last_id RESP-encoded

    def at(self, entry_id: bytes | str) -> None:
        raw = entry_id.encode() if isinstance(entry_id, str) else entry_id
        self.last_id = raw
        self.id_bulk = _bulk(raw)


@dataclass(slots=True)
class _Reading:
    """One ``XREAD`` in flight: which follow of each key it was built for."""

    gen: int
    streams: dict[bytes, _Followed] = field(default_factory=dict)


class StreamReader:
    """Reads the streams of its followers and offers each its events, until ``close``."""

    def __init__(
        self,
        redis: Any,
        store: Epochs,
        *,
        block_ms: int,
        wake_key: str | None,
        name: str = "fanout:streams",
    ) -> None:
        self.redis = redis  # redis.asyncio.Redis (or RedisCluster); stubs are partial
        self.store = store
        self.block_ms = block_ms
        self.wake_key = wake_key.encode() if wake_key is not None else None
        self.name = name
        self._follow: dict[bytes, _Followed] = {}
        self._epoch = 0
        self._wake_id = b"0-0"
        self._wake_bulk = _bulk(self.wake_key) if self.wake_key is not None else b""
        self._head = b"".join(
            _bulk(part)
            for part in (b"XREAD", b"COUNT", b"%d" % _READ_COUNT, b"BLOCK", b"%d" % block_ms)
        ) + _bulk(b"STREAMS")
        self._conn: Any = None  # the shared reader's own connection, while it has one
        self._reading: _Reading | None = None  # set while an XREAD is in flight
        self._gen = 0  # XREADs issued
        self._woken = -1  # the XREAD a wake was last sent for
        self._task: asyncio.Task[None] | None = None
        self._added = asyncio.Event()  # a reader with nothing to read waits for this
        self._side: set[asyncio.Task[None]] = set()
        self._stopped = False

    @property
    def following(self) -> int:
        return len(self._follow)

    def add(self, key: str, follower: Follower) -> None:
        """Follow ``key`` for ``follower``, from the stream's top (a key followed before
        is started afresh)."""
        raw = key.encode()
        if self.wake_key is None and self._follow and raw not in self._follow:
            raise ValueError("a reader without a wake stream follows one key")
        self._follow[raw] = _Followed(follower, _bulk(raw))
        self._added.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)
        elif (
            self.wake_key is not None
            and self._reading is not None
            and self._woken != self._reading.gen
        ):
            self._woken = self._reading.gen
            self._spawn(self._wake())

    def remove(self, key: str, follower: Follower) -> None:
        """Stop following ``key`` for ``follower`` (not for another follower that took
        the key since); entries of a read already in flight are dropped."""
        raw = key.encode()
        followed = self._follow.get(raw)
        if followed is not None and followed.follower is follower:
            del self._follow[raw]

    async def close(self) -> None:
        self._stopped = True
        tasks = [t for t in (self._task, *self._side) if t is not None]
        for task in tasks:
            task.cancel()
        # redis-py can swallow a cancellation that lands in the middle of a command;
        # the reader then stops at its next turn by the flag. That turn is waited for:
        # the Redis client is closed after the readers, and a reader still in a command
        # would reconnect it (a cluster client would reload its slot map) and leave
        # those connections open. A wake ends the blocked read at once; a reader with
        # no wake stream takes at most one block.
        if self.wake_key is not None and self._task is not None:
            await self._wake(within=_STOP_WAIT)
        if tasks:
            await asyncio.wait(tasks, timeout=self.block_ms / 1000 + _STOP_WAIT)
        if self.wake_key is not None and self._task is not None:
            try:
                async with asyncio.timeout(_STOP_WAIT):
                    await self.redis.delete(self.wake_key)
            except Exception as exc:  # Redis gone: the key holds one entry
                log.info("fanout wake stream left behind", error=repr(exc))

    # -- the reader ------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = _BACKOFF_MIN
        try:
            while not self._stopped:
                try:
                    await self._start_new()
                    reading = self._reading = self._next_read()
                    if self.wake_key is None and not reading.streams:
                        # A one-key reader whose key was removed: until one is added.
                        self._reading = None
                        self._added.clear()
                        await self._added.wait()
                        continue
                    try:
                        reply = await self._read(reading)
                    finally:
                        self._reading = None
                    if backoff > _BACKOFF_MIN:
                        log.info("fanout redis read resumed", reader=self.name)
                    backoff = _BACKOFF_MIN
                    self._dispatch(reading, reply)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self._stopped:
                        return
                    metrics.redis_errors_total.labels(where="fanout").inc()
                    log.warning("fanout redis read failed", error=repr(exc), reader=self.name)
                    if is_wrong_type(exc):
                        await self._delete_foreign()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                await self.redis.connection_pool.release(conn)

    async def _delete_foreign(self) -> None:
        """Delete the followed keys that hold another type than a stream: one such key
        fails every shared read, and with it the delivery through Redis of every
        document this reader follows (``unlink_foreign``; the relay does the same)."""
        keys = [*self._follow, *((self.wake_key,) if self.wake_key is not None else ())]
        try:
            deleted = await unlink_foreign(self.redis, keys)
        except Unavailable as exc:  # Redis failing: the next read fails and tries again
            log.warning("fanout could not check its keys' types", error=exc.message)
            return
        if deleted:
            log.error(
                "fanout deleted keys of another type than a stream",
                keys=[k.decode(errors="replace") if isinstance(k, bytes) else k for k in deleted],
                reader=self.name,
            )

    async def _read(self, reading: _Reading) -> Any:
        """One ``XREAD BLOCK`` of the streams of ``reading`` (and the wake stream)."""
        if self.wake_key is None:  # one key (a cluster): the client routes it
            key, followed = next(iter(reading.streams.items()))
            return await self.redis.xread(
                {key: followed.last_id}, count=_READ_COUNT, block=self.block_ms
            )
        # The command is sent pre-encoded on a connection of the reader's own: redis-py
        # would encode every key and id again at each read (~1.3 µs a stream, 0.17 ms
        # for 128 streams), where here only the ids that moved were encoded, once.
        streams = reading.streams.values()
        command = b"".join(
            (
                b"*%d\r\n" % (2 * len(streams) + 8),
                self._head,
                *(f.key for f in streams),
                self._wake_bulk,
                *(f.id_bulk for f in streams),
                _bulk(self._wake_id),
            )
        )
        conn = self._conn
        if conn is None:
            conn = self._conn = await self.redis.connection_pool.get_connection()
        try:
            await conn.send_packed_command(command, check_health=False)
            return await conn.read_response()
        except BaseException:
            # A reply half read (cancelled, timed out) must not reach the next reader.
            self._conn = None
            await conn.disconnect(nowait=True)
            await self.redis.connection_pool.release(conn)
            raise

    def _next_read(self) -> _Reading:
        self._gen += 1
        reading = _Reading(self._gen)
        for key, followed in self._follow.items():
            if followed.last_id is not None:
                reading.streams[key] = followed
        return reading

    async def _start_new(self) -> None:
        """Start every stream not yet started at its top (until none is left: streams
        added meanwhile are not in a blocked read, and nothing would wake it for them)."""
        while new := [(key, f) for key, f in self._follow.items() if f.last_id is None]:
            self._epoch = await self.store.epoch()
            if len(new) == 1:
                tops = [await self.redis.xrevrange(new[0][0], "+", "-", count=1)]
            else:
                pipe = self.redis.pipeline(transaction=False)
                for key, _ in new:
                    pipe.xrevrange(key, "+", "-", count=1)
                tops = await pipe.execute()
            for (key, followed), top in zip(new, tops, strict=True):
                if self._follow.get(key) is not followed:
                    continue  # removed (or re-added) meanwhile
                if not top:
                    followed.at(b"0-0")
                    continue
                entry_id, fields = top[0]
                followed.at(entry_id)
                event = self._event(fields)
                if event is not None:
                    followed.follower.expect(event.v)

    def _dispatch(self, reading: _Reading, reply: Any) -> None:
        # A raw reply on RESP3 is a map of key to entries; RESP2 (and redis-py's own
        # parsing) gives [key, entries] pairs.
        for key, entries in reply.items() if isinstance(reply, dict) else reply or ():
            if key == self.wake_key:
                self._wake_id = bytes(entries[-1][0])
                continue
            followed = reading.streams.get(key)
            if followed is None or self._follow.get(key) is not followed:
                continue  # no longer followed, or started afresh since this read
            batch = []
            for entry_id, fields in entries:
                event = self._event(fields)
                if event is None:
                    log.warning(
                        "fanout: stream entry skipped (malformed, or of another epoch)",
                        doc=followed.follower.doc_id,
                        id=entry_id,
                    )
                    continue
                batch.append(event)
            followed.at(entries[-1][0])
            try:
                followed.follower.offer(batch)
            except Exception:  # one channel's bug must not stop the others' reads
                log.exception("fanout offer failed", doc=followed.follower.doc_id)

    def _event(self, fields: Any) -> WireEvent | None:
        """The event of a stream entry (app/bus/entry.py); None if malformed or of
        another epoch."""
        try:
            if isinstance(fields, list):  # a raw reply: field, value, field, value...
                fields = dict(zip(fields[::2], fields[1::2], strict=True))
            if int(fields.get(b"epoch", self._epoch)) != self._epoch:
                return None
            return WireEvent.from_body(int(fields[b"v"]), fields[b"e"].decode())
        except (KeyError, ValueError, TypeError, AttributeError):
            return None

    # -- waking ----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _wake(self, within: float | None = None) -> None:
        """End the blocked read (an entry on the wake stream): a stream was added, or
        the reader is closing."""
        try:
            async with asyncio.timeout(within):
                pipe = self.redis.pipeline(transaction=False)
                pipe.xadd(self.wake_key, {b"w": b"1"}, maxlen=1, approximate=False)
                # A process that dies without closing leaves the stream for this long.
                pipe.expire(self.wake_key, _WAKE_TTL)
                await pipe.execute()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis failing: the read fails too and starts over
            metrics.redis_errors_total.labels(where="fanout").inc()
            log.warning("fanout wake failed", error=repr(exc))
