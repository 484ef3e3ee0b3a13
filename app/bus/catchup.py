"""``read_after``: a document's events after a point, from Redis while it holds them,
else from PostgreSQL, so that a consumer never misses one (I4).

Redis holds only the recent past of each stream and may lose even that (trimmed by
``MAXLEN ~``, expired, flushed, restarted without persistence, failed over to a replica
that lagged). PostgreSQL is the truth. A consumer remembers the version and the
position of the last event it applied, and asks for what follows::

    entries = await read_after(redis, store, doc_id, after_v, after_position, keys=keys)

The Redis range is used only when it provably continues the consumer's history: it
starts with the consumer's own last event (same position and version) or, when that
one was trimmed away, with version ``after_v + 1``; and every later entry is the
next version. Anything else (no stream, a stream that starts later, a hole inside, an
entry of another epoch) is a gap, and the whole range is read from PostgreSQL
instead. Either way the entries are the same bytes the relay publishes.

The store is any object with ``read_stream`` and ``epoch`` (``PostgresStore`` is one):
the bus sees it through the structural ``EventSource``, not through ``app.store``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from app.bus.entry import Entry, EventRecord, to_entry
from app.bus.keys import Keys
from app.bus.streams import Redis, read_range
from app.errors import Unavailable
from app.observability import metrics

__all__ = ["EventSource", "read_after"]


class EventSource(Protocol):
    """The part of the event store that heals gaps (``PostgresStore`` satisfies it)."""

    async def read_stream(
        self, doc_id: str, after_v: int = 0, limit: int | None = None
    ) -> Sequence[EventRecord]: ...

    async def epoch(self) -> int: ...


def _continues(
    entries: list[Entry], after_v: int, after_position: int, epoch: int | None
) -> list[Entry] | None:
    """The entries after the consumer's point if ``entries`` (read from
    ``after_position`` inclusive) continue its history without a hole; else None."""
    if not entries:
        return None  # not even the consumer's own last event: the stream was lost
    first = entries[0]
    if first.position == after_position and first.v == after_v and after_v > 0:
        entries = entries[1:]  # the anchor: the consumer's own last event, still there
    elif first.v != after_v + 1 or first.position <= after_position:
        return None  # trimmed past the point, or another history (epoch change)
    expected = after_v + 1
    for entry in entries:
        # A hole can open when Redis failed over to a replica that had not yet
        # received some entries while the relay published on; the relay's explicit
        # ids never repair it, so only PostgreSQL can.
        if entry.v != expected or (epoch is not None and entry.epoch != epoch):
            return None
        expected += 1
    return entries


async def read_after(
    redis: Redis,
    store: EventSource,
    doc_id: str,
    after_v: int,
    after_position: int,
    *,
    keys: Keys,
    epoch: int | None = None,
    limit: int | None = None,
) -> list[Entry]:
    """The events of ``doc_id`` after version ``after_v`` (whose event had global
    position ``after_position``; 0 and 0 for "from the start"), oldest first.

    ``epoch``, when given, is the epoch the consumer's point belongs to; Redis entries
    of another epoch are not used. Entries read from PostgreSQL carry the store's
    current epoch, so a consumer that sees a different one knows its point is void and
    resyncs. ``limit`` bounds the answer (call again for more). Raises ``Unavailable``
    only when PostgreSQL cannot be read: a Redis failure falls back to PostgreSQL.
    """
    if after_v < 0 or after_position < 0 or (limit is not None and limit < 1):
        raise ValueError("need after_v >= 0, after_position >= 0 and limit >= 1")
    keys.doc_stream(doc_id)  # a malformed id is the caller's bug, not a gap
    reason = "gap"
    try:
        # +1: the anchor (the consumer's own last event) comes back too.
        ranged = await read_range(
            redis, keys, doc_id, after_position, None if limit is None else limit + 1
        )
    except (Unavailable, ValueError):
        # Redis down, or an entry the relay did not write: PostgreSQL is the truth.
        ranged, reason = [], "redis_error"
    held = _continues(ranged, after_v, after_position, epoch)
    if held is not None:
        return held if limit is None else held[:limit]
    metrics.catchup_store_reads_total.labels(reason=reason).inc()
    events = await store.read_stream(doc_id, after_v, limit)
    current = await store.epoch() if events else 0
    return [to_entry(event, current) for event in events]
