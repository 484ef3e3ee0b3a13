"""A thin layer over redis.asyncio for the per-document streams and the relay's keys.

Every function maps Redis and network failures to ``app.errors.Unavailable`` (STYLE.md
habit 4: nothing above ``app.bus`` sees a redis exception), so a caller retries one
kind of error. What each write protects:

- ``publish``: one pipelined round trip per batch (``transaction=False``) of one script
  call per document stream (``ADD_SCRIPT``, app/bus/addscript.py), which adds the
  stream's events of the batch, each with its explicit id ``<position>-0``, and
  refreshes its ``EXPIRE``; then ``SET relay:position … GET``. Redis refuses an id at
  or below a stream's top: that refusal is counted as "already published", never as
  an error, so publishing a range again after a crash adds nothing twice (I4). That
  holds only if no stream ever has an entry missing below its top; the script
  guarantees it (atomic, and it stops at the stream's first other failure). Commands
  of one pipeline run in order on one connection, so when the position is written
  every script before it has run. On a Redis Cluster a pipeline is split by node and
  the parts run at once, so the position goes in a second round trip, once every
  script has answered.
- ``reset_progress``: the position is written before the epoch and the store id, so a
  crash between them leaves a progress that the next start still finds void.
- ``wipe_streams``: after a change of store or epoch the old streams hold ids that
  the new positions would collide with; they must go before anything is published.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, cast

from redis.exceptions import RedisError, ResponseError

from app.bus.addscript import ADD_SCRIPT, add_calls, parse_added
from app.bus.client import Redis, create_redis, is_cluster
from app.bus.entry import Entry, EventRecord, decode_entry
from app.bus.keys import Keys, entry_id
from app.errors import Unavailable

__all__ = [
    "Progress",
    "PublishResult",
    "Redis",
    "create_redis",
    "is_wrong_type",
    "publish",
    "read_progress",
    "read_range",
    "reset_progress",
    "translate_errors",
    "unlink_foreign",
    "wipe_streams",
]

_SCAN_COUNT: Final = 500


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Raise ``Unavailable`` for any Redis or network failure inside the block.

    Redis is a transport, never the truth (DESIGN.md): whatever it answers, the cure is
    to retry later or to read PostgreSQL, so one error kind is enough above this layer.
    """
    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable(f"redis unavailable during {what}: {exc}") from exc
    except (AttributeError, TypeError) as exc:
        if not _closed_under_a_write(exc):
            raise
        raise Unavailable(f"redis unavailable during {what}: connection closed ({exc})") from exc


# Where redis-py's asyncio connection writes: a connection torn down while a command is
# being written there raises AttributeError or TypeError (the writer or the transport's
# callback already None) instead of ConnectionError (redis/redis-py#3546, #4287; seen
# here when a cluster master restarted under the relay's progress read).
_WRITE_PATHS: Final = (
    f"redis{os.sep}asyncio{os.sep}",
    f"asyncio{os.sep}streams.py",
    f"asyncio{os.sep}selector_events.py",
)


def _closed_under_a_write(exc: BaseException) -> bool:
    """Whether ``exc`` was raised in redis-py's or asyncio's write path (not our code)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    return any(part in filename for part in _WRITE_PATHS)


@dataclass(frozen=True, slots=True)
class PublishResult:
    """``published``: entries added now. ``already``: refused as at or below a stream's
    top, i.e. published before. ``previous_position``: what ``relay:position`` held
    before this batch wrote it (None when the key was missing: Redis lost it)."""

    published: int
    already: int
    previous_position: int | None


@dataclass(frozen=True, slots=True)
class Progress:
    """The relay's progress as Redis holds it; None for each key that is missing."""

    position: int | None
    epoch: int | None
    store: str | None


def _int_or_none(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bytes | str):
        try:
            return int(value)
        except ValueError:
            return None  # garbage in our key: treated as missing, so void
    return None


async def publish(
    redis: Redis,
    keys: Keys,
    events: Sequence[EventRecord],
    *,
    epoch: int,
    position: int,
    maxlen: int,
    ttl: int,
) -> PublishResult:
    """Publish ``events`` (ascending positions) and record ``position`` as published.

    One round trip, with one ``ADD_SCRIPT`` call per stream. ``maxlen`` trims each
    stream approximately (``MAXLEN ~``: whole radix-tree nodes, cheap); ``ttl`` > 0
    refreshes each touched stream's expiry. Raises ``Unavailable`` if Redis failed any
    command or a stream's call stopped at an error; ``relay:position`` is then put back
    as it was, so a crash right after cannot skip an entry that was not written.
    """
    cluster = is_cluster(redis)
    calls = add_calls(keys, events, epoch=epoch, maxlen=maxlen, ttl=ttl)
    with translate_errors("publish"):
        async with redis.pipeline(transaction=False) as pipe:
            for key, argv in calls.items():
                pipe.eval(ADD_SCRIPT, 1, key, *argv)
            if not cluster:
                pipe.set(keys.relay_position, b"%d" % position, get=True)
            results = await pipe.execute(raise_on_error=False)
    # On a cluster the parts of a pipeline run on their nodes at once: the position is
    # written only after every stream's call before it has answered, in a second round
    # trip.
    previous = None if cluster else results.pop()
    published, already, failure, wrong_type = _tally(list(calls), results)
    if failure is None and not cluster and isinstance(previous, BaseException):
        failure = previous
    if failure is not None:
        if not cluster:
            await _put_back(redis, keys, previous)
        message = f"redis refused part of a publish: {failure}"
        if wrong_type:
            message += await _delete_foreign(redis, wrong_type)
        raise Unavailable(message) from failure
    if cluster:
        with translate_errors("publish"):
            previous = await redis.set(keys.relay_position, b"%d" % position, get=True)
    return PublishResult(published, already, _int_or_none(previous))


def _tally(
    stream_keys: Sequence[str], results: Sequence[object]
) -> tuple[int, int, BaseException | None, list[str]]:
    """Entries added, refused as published before, the first failure, and the streams
    whose call stopped because the key holds another type."""
    published = already = 0
    failure: BaseException | None = None
    wrong_type: list[str] = []
    for key, result in zip(stream_keys, results, strict=True):
        if isinstance(result, BaseException):
            failure = failure or result
            continue
        try:
            added = parse_added(result)
        except ValueError as exc:
            failure = failure or ResponseError(str(exc))
            continue
        published += added.added
        already += added.already
        if added.error is not None:
            failure = failure or ResponseError(added.error)
            if is_wrong_type(added.error):
                wrong_type.append(key)
    return published, already, failure, wrong_type


def is_wrong_type(error: object) -> bool:
    """Whether ``error`` is Redis's refusal of a command on a key of another type."""
    return str(error).startswith("WRONGTYPE")


async def unlink_foreign(redis: Redis, keys: Sequence[str | bytes]) -> list[str | bytes]:
    """Delete those of ``keys`` (document streams, or a gateway's wake stream) that hold
    a value of another type than a stream; the keys deleted.

    Those names are Atelier's (docs/relay.md, "Keys"): a value of another type there
    came from a foreign writer, and while it stays every relay batch that touches the
    document fails, and with it the relay for every document, as does a gateway's
    shared read of its followed streams. Redis is a transport, never the truth:
    consumers read what a deleted key held again from PostgreSQL."""
    foreign: list[str | bytes] = []
    with translate_errors("unlink_foreign"):
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
            types = await pipe.execute()
        for key, kind in zip(keys, types, strict=True):
            name = kind.decode() if isinstance(kind, bytes) else str(kind)
            if name not in ("stream", "none"):
                foreign.append(key)
        if foreign:
            async with redis.pipeline(transaction=False) as pipe:
                for key in foreign:
                    pipe.unlink(key)  # one key a command: on a cluster they lie on many slots
                await pipe.execute()
    return foreign


async def _delete_foreign(redis: Redis, candidates: Sequence[str]) -> str:
    """``unlink_foreign`` after a publish refused with ``WRONGTYPE``, so that the
    caller's retry recreates the streams; what to add to its error message."""
    try:
        deleted = await unlink_foreign(redis, candidates)
    except Unavailable as exc:
        return f"; could not delete the keys of another type: {exc.message}"
    if not deleted:
        return ""
    shown = ", ".join(map(str, deleted[:5])) + (", ..." if len(deleted) > 5 else "")
    return (
        f"; deleted {len(deleted)} document stream key(s) that held another type than a"
        f" stream ({shown}), for the retry to recreate"
    )


async def _put_back(redis: Redis, keys: Keys, previous: object) -> None:
    """Best effort: restore ``relay:position`` after a partly failed publish."""
    try:
        if isinstance(previous, bytes):
            await redis.set(keys.relay_position, previous)
        elif previous is None:
            await redis.delete(keys.relay_position)
    except (RedisError, OSError):
        pass  # Redis is failing anyway; the caller retries the whole batch


async def read_progress(redis: Redis, keys: Keys) -> Progress:
    """The relay's position, epoch and store id, each None when missing or unreadable.

    When none of them is there but the keys of their earlier names are
    (``Keys.relay_legacy``, before they shared a hash tag), those are adopted: written
    under the current names (position first) and deleted, once."""
    with translate_errors("read_progress"):
        progress = await _read_progress(
            redis, keys.relay_position, keys.relay_epoch, keys.relay_store
        )
        if progress == _NO_PROGRESS:
            legacy = await _read_progress(redis, *keys.relay_legacy)
            if legacy != _NO_PROGRESS:
                await _adopt(redis, keys, legacy)
                return legacy
    return progress


_NO_PROGRESS: Final = Progress(None, None, None)


async def _read_progress(redis: Redis, position: str, epoch: str, store: str) -> Progress:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(position)
        pipe.get(epoch)
        pipe.get(store)
        values = await pipe.execute()
    return Progress(
        position=_int_or_none(values[0]),
        epoch=_int_or_none(values[1]),
        store=values[2].decode() if isinstance(values[2], bytes) else None,
    )


async def _adopt(redis: Redis, keys: Keys, legacy: Progress) -> None:
    """Write ``legacy`` under the current names (what is missing stays missing, and
    the relay treats it as void), then delete the old keys."""
    async with redis.pipeline(transaction=False) as pipe:
        if legacy.position is not None:
            pipe.set(keys.relay_position, b"%d" % legacy.position)
        if legacy.epoch is not None:
            pipe.set(keys.relay_epoch, b"%d" % legacy.epoch)
        if legacy.store is not None:
            pipe.set(keys.relay_store, legacy.store.encode())
        await pipe.execute()
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys.relay_legacy:
            pipe.delete(key)  # one key a command: on a cluster they lie on three slots
        await pipe.execute()


async def reset_progress(
    redis: Redis, keys: Keys, *, position: int, epoch: int, store: str
) -> None:
    """Record a new starting point: the position first, then epoch and store id."""
    with translate_errors("reset_progress"):
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.relay_position, b"%d" % position)
            pipe.set(keys.relay_epoch, b"%d" % epoch)
            pipe.set(keys.relay_store, store.encode())
            await pipe.execute()


async def wipe_streams(redis: Redis, keys: Keys) -> int:
    """Delete every document stream under the prefix; how many there were."""
    deleted = 0
    with translate_errors("wipe_streams"):
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=keys.doc_stream_pattern, count=_SCAN_COUNT):
            batch.append(key)
            if len(batch) >= _SCAN_COUNT:
                deleted += await redis.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await redis.unlink(*batch)
    return deleted


async def read_range(
    redis: Redis, keys: Keys, doc_id: str, from_position: int, count: int | None = None
) -> list[Entry]:
    """Entries of ``doc_id`` with position >= ``from_position`` (inclusive), oldest
    first, at most ``count``. Empty when the stream does not exist."""
    start = entry_id(from_position) if from_position >= 1 else "-"
    with translate_errors("read_range"):
        items = await redis.xrange(keys.doc_stream(doc_id), min=start, max="+", count=count)
    entries = []
    for item_id, fields in items or ():
        if item_id is None or fields is None:
            raise ValueError(f"a stream entry without id or fields in {doc_id!r}")
        entries.append(decode_entry(item_id, cast(Mapping[bytes, bytes], fields)))
    return entries
