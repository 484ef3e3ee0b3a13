"""``?at=v``: a document's state as it was at version ``v`` (PROTOCOL.md section 5).

A state at a version never changes (events are append-only), so it is computed once
and kept in a byte-bounded LRU cache of ``(doc_id, v) -> state bytes``. Computing it:
the nearest stored state at or below ``v`` (a ``read.history`` row, one every
``HISTORY_EVERY`` versions, or every 2, 4 or 8 times that for a large document, see
``app.views.schema.history_stride``; or the current ``read.doc_state`` when that is at
or below ``v``), then the events after it up to ``v`` from the events table (the truth),
folded with ``app.domain.apply_event``, the same fold as the views' (I5, I6). With the
views current that is at most ``HISTORY_EVERY - 1`` events for a document under 1,000
elements and ``HISTORY_EVERY * HISTORY_MAX_STRIDE - 1`` for any, whatever the stream's
length; with the views behind, more events are replayed (correct, only slower).

Concurrent requests for the same uncached version share one computation.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Final, Protocol

import orjson

from app.domain import Document, apply_event
from app.errors import Invalid
from app.store.ports import StoredEvent
from app.views.project import decode_state, encode_state
from app.views.reader import StateRow

__all__ = ["CACHE_BYTES", "Bases", "ReplicaStreams", "StateCache", "Streams", "TimeTravel"]

# The cache holds at most this many bytes of state (the sum of the cached states'
# lengths; Python's own overhead per entry is small beside a state). 64 MiB is about
# a hundred versions of a 10,000-element document, or thousands of small ones.
CACHE_BYTES: Final = 64 * 1024 * 1024
# Events read per query while replaying (only more than one page when the views lag).
_PAGE: Final = 1000


class Bases(Protocol):
    """Where replays start: ``ReadViews.base``."""

    async def base(self, doc_id: str, v: int) -> StateRow | None: ...


class Streams(Protocol):
    """The events: ``PostgresStore.read_stream``."""

    async def read_stream(
        self, doc_id: str, after_v: int = 0, limit: int | None = None
    ) -> list[StoredEvent]: ...


class ReplicaStreams:
    """The events of a streaming replica, or the primary's when the replica has none
    after ``after_v``: a replica a little behind must not make a version that was
    committed look beyond the document's last one (400)."""

    def __init__(self, replica: Streams, primary: Streams) -> None:
        self._replica = replica
        self._primary = primary

    async def read_stream(
        self, doc_id: str, after_v: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        events = await self._replica.read_stream(doc_id, after_v, limit)
        return events or await self._primary.read_stream(doc_id, after_v, limit)


class StateCache:
    """LRU of ``(doc_id, v) -> bytes``, bounded by the total length of the values."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[str, int]) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: tuple[str, int], value: bytes) -> None:
        if len(value) > self.max_bytes:
            return  # would evict everything else and still not fit
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._items[key] = value
        self.size += len(value)
        while self.size > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.size -= len(evicted)


class TimeTravel:
    def __init__(self, bases: Bases, streams: Streams, cache_bytes: int = CACHE_BYTES) -> None:
        self._bases = bases
        self._streams = streams
        self.cache = StateCache(cache_bytes)
        self._computing: dict[tuple[str, int], asyncio.Future[bytes]] = {}

    async def state_at(self, doc_id: str, v: int) -> bytes:
        """The state's JSON bytes at ``v``. ``Invalid`` when the document has no
        version ``v`` (below 1 or beyond its last event)."""
        if v < 1:
            raise Invalid(f"a version is at least 1, not {v}")
        key = (doc_id, v)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        pending = self._computing.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The request computing it was cancelled, not this one: compute anew.
                return await self.state_at(doc_id, v)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._computing[key] = future
        try:
            state = await self._compute(doc_id, v)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        except BaseException:
            future.cancel()
            raise
        else:
            self.cache.put(key, state)
            future.set_result(state)
            return state
        finally:
            del self._computing[key]

    async def document_at(self, doc_id: str, v: int) -> Document:
        """The state at ``v`` as a ``Document`` (for ``diff``)."""
        return decode_state(await self.state_at(doc_id, v))

    async def _compute(self, doc_id: str, v: int) -> bytes:
        base = await self._bases.base(doc_id, v)
        if base is not None and base.v == v:
            return base.state
        doc = Document(doc_id) if base is None else decode_state(base.state)
        while doc.v < v:
            events = await self._streams.read_stream(
                doc_id, after_v=doc.v, limit=min(_PAGE, v - doc.v)
            )
            if not events:
                raise Invalid(f"version {v} is beyond the document's last version {doc.v}")
            for event in events:
                doc = apply_event(doc, event.v, orjson.loads(event.op))
        return encode_state(doc)
