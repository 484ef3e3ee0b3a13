"""The write path: group commit and document creation, one round trip each.

Both go through the ``atelier_append`` function (migrations 0002, 0003, 0007; a batch
of one request goes through ``atelier_append_one`` of 0008, the same protocol on scalar
parameters), which does the whole protocol of DESIGN.md "Global order" inside the
server: lock the documents in id order, check versions and the op ledger under those
locks, write the ledger, and as its last statement take positions from ``log_head`` and
write the events. Called in autocommit mode, a batch is one statement, one transaction
and one round trip, so there is nothing half-written to clean up when anything fails:
either the whole batch committed or none of it did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import asyncpg

from app.errors import Conflict, Internal, NotFound
from app.store._errors import translate_errors
from app.store._rows import EVENT_COLUMNS, to_event
from app.store.ports import AppendRequest, AppendResult, NewEvent, StoredEvent

__all__ = ["append_batch", "append_exclusive", "create_document"]

_APPEND: Final = (
    "SELECT status, v, position, ts FROM atelier_append("
    "$1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[])"
)
_APPEND_ONE: Final = (
    "SELECT status, v, position, ts FROM atelier_append_one("
    "$1, $2::bigint, $3, $4, $5, $6::bytea, $7::bytea)"
)
_CREATE: Final = (
    "SELECT status, v, position, ts FROM atelier_create_document("
    "$1, $2, $3, $4, $5, $6, $7::bytea, $8::bytea)"
)
_STATUSES: Final = frozenset({"ok", "duplicate", "conflict", "missing"})


async def append_batch(pool: Any, batch: Sequence[AppendRequest]) -> list[AppendResult]:
    """Append every request of ``batch`` in one transaction; results in request order.

    Requests of one document are chained in order (expected_v, expected_v + 1, ...).
    Raises ``Unavailable`` when the batch could not be committed (nothing of it was).
    ``pool`` may also be a connection inside a transaction (``append_exclusive``).
    """
    if not batch:
        return []
    if len(batch) == 1:
        return [await _append_one(pool, batch[0])]
    args = (
        [r.doc_id for r in batch],
        [r.expected_v for r in batch],
        [r.event.actor for r in batch],
        [r.event.op_id for r in batch],
        [r.event.kind for r in batch],
        [r.event.op for r in batch],
        [r.event.effect for r in batch],
    )
    with translate_errors("append"):
        rows = await pool.fetch(_APPEND, *args)
    if len(rows) != len(batch):
        raise Internal(f"atelier_append returned {len(rows)} results for {len(batch)} requests")
    return [_to_result(row) for row in rows]


async def _append_one(pool: Any, request: AppendRequest) -> AppendResult:
    """A batch of one: ``atelier_append_one`` (migration 0008), the same protocol and
    answers on scalar parameters, at about half the server's CPU of a call."""
    event = request.event
    with translate_errors("append"):
        row = await pool.fetchrow(
            _APPEND_ONE,
            request.doc_id,
            request.expected_v,
            event.actor,
            event.op_id,
            event.kind,
            event.op,
            event.effect,
        )
    if row is None:
        raise Internal("atelier_append_one returned no result")
    return _to_result(row)


async def append_exclusive(
    pool: asyncpg.Pool,
    doc_id: str,
    after_v: int,
    build: Callable[[list[StoredEvent]], Sequence[AppendRequest]],
) -> list[AppendResult]:
    """Append requests decided under the document's row lock: the progress guarantee.

    Optimistic appends can starve: a writer whose ops always find the document moved
    on by another keeps losing the race. This path locks the document's row first, so
    no one else can append to it; hands ``build`` every event after ``after_v`` (the
    caller folds them into its model and decides); and appends the chain ``build``
    returns (of this document; possibly empty) in the same transaction, so the
    decisions cannot be overtaken. An exception from ``build`` (a bug: rejections are
    the caller's to keep) rolls everything back. Raises ``NotFound`` for a document
    that does not exist.
    """
    with translate_errors("append_exclusive"):
        async with pool.acquire() as conn, conn.transaction():
            current = await conn.fetchval(
                "SELECT v FROM documents WHERE id = $1 FOR NO KEY UPDATE", doc_id
            )
            if current is None:
                raise NotFound(f"document {doc_id!r} does not exist")
            rows = await conn.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE doc_id = $1 AND v > $2 ORDER BY v",
                doc_id,
                after_v,
            )
            requests = build([to_event(row) for row in rows])
            return await append_batch(conn, requests)


async def create_document(
    pool: asyncpg.Pool, doc_id: str, owner: str, title: str, event: NewEvent
) -> StoredEvent:
    """Create the document, its owner membership and its first event (v = 1) in one
    transaction. Raises ``Conflict`` when the id is taken."""
    with translate_errors("create_document"):
        row = await pool.fetchrow(
            _CREATE,
            doc_id,
            title,
            owner,
            event.actor,
            event.op_id,
            event.kind,
            event.op,
            event.effect,
        )
    if row is None or row["status"] == "exists":
        raise Conflict(f"document {doc_id!r} already exists")
    if row["status"] != "ok":
        raise Internal(f"creating {doc_id!r} appended with status {row['status']!r}")
    return StoredEvent(
        position=row["position"],
        doc_id=doc_id,
        v=row["v"],
        kind=event.kind,
        op=event.op,
        effect=event.effect,
        actor=event.actor,
        op_id=event.op_id,
        ts=row["ts"],
    )


def _to_result(row: Any) -> AppendResult:
    status = row["status"]
    if status not in _STATUSES:
        raise Internal(f"atelier_append returned an unknown status {status!r}")
    return AppendResult(status=status, v=row["v"], position=row["position"], ts=row["ts"])
