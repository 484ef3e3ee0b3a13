"""Reads the read side needs before a fold: events by position, documents at a version.

A fold starts from the document's state just before its first event in the batch.
That state is normally ``read.doc_state`` (the view holds the document at its
checkpoint), or nothing at all before ``doc.create``. When ``doc_state`` is elsewhere
(a view of another group, a rebuild's, is behind it) the state is folded from the
document's events instead: slower, always right.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import asyncpg

from app.domain import Document
from app.store._rows import EVENT_COLUMNS, to_event
from app.store.ports import StoredEvent
from app.views.project import decode_state, fold

__all__ = ["load_documents", "read_events"]

_EVENTS: Final = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
)
_STREAM: Final = f"SELECT {EVENT_COLUMNS} FROM events WHERE doc_id = $1 AND v < $2 ORDER BY v"
_STATES: Final = "SELECT doc_id, v, state FROM read.doc_state WHERE doc_id = ANY($1::text[])"


async def read_events(conn: asyncpg.Connection, after: int, limit: int) -> list[StoredEvent]:
    """Up to ``limit`` events after position ``after``, in position order."""
    return [to_event(row) for row in await conn.fetch(_EVENTS, after, limit)]


async def load_documents(
    conn: asyncpg.Connection, starts: Mapping[str, int]
) -> dict[str, Document]:
    """For each ``doc_id -> v``, the document at version ``v - 1`` (``Document(doc_id)``
    when ``v`` is 1). One query for all the states in ``doc_state``; a document whose
    stored state is at another version is folded from its events."""
    out: dict[str, Document] = {}
    wanted = [doc_id for doc_id, v in starts.items() if v > 1]
    for doc_id, v in starts.items():
        if v <= 1:
            out[doc_id] = Document(doc_id)
    if not wanted:
        return out
    for row in await conn.fetch(_STATES, wanted):
        if int(row["v"]) == starts[row["doc_id"]] - 1:
            out[row["doc_id"]] = decode_state(row["state"])
    for doc_id in wanted:
        if doc_id not in out:
            out[doc_id] = await _replay(conn, doc_id, starts[doc_id])
    return out


async def _replay(conn: asyncpg.Connection, doc_id: str, before_v: int) -> Document:
    events = [to_event(row) for row in await conn.fetch(_STREAM, doc_id, before_v)]
    if len(events) != before_v - 1:
        raise ValueError(f"{doc_id}: {len(events)} events before v{before_v}, not {before_v - 1}")
    return fold(Document(doc_id), events).doc
