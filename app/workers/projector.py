"""Fold one batch of events per document, from the cache or the views, and find the
first event each shard cannot apply.

Why per shard: a shard is the unit of ownership and of checkpoints. An event the
projection cannot apply stops its shard just before it (the checkpoint cannot pass an
event that is not in the view); every other shard goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from app.domain import Document
from app.store.ports import StoredEvent
from app.views.loading import load_documents
from app.views.project import DocRows, fold
from app.views.shards import shard_of
from app.workers.cache import DocumentCache

__all__ = ["Failure", "Folded", "fold_batch"]


@dataclass(frozen=True, slots=True)
class Failure:
    """The first event of a shard that the projection refused, and why."""

    event: StoredEvent
    error: str


@dataclass(slots=True)
class Folded:
    """``rows``: what each document of the healthy shards writes; ``failures``: the
    shards that stop, each at its first bad event, with ``prefix`` the rows of that
    shard's events before it (they go in, so the checkpoint stops right before it)."""

    rows: dict[str, DocRows] = field(default_factory=dict)
    failures: dict[int, Failure] = field(default_factory=dict)
    prefix: dict[int, dict[str, DocRows]] = field(default_factory=dict)


async def fold_batch(
    conn: asyncpg.Connection,
    per_doc: Mapping[str, Sequence[StoredEvent]],
    cache: DocumentCache,
    shards: int,
) -> Folded:
    """Fold each document's events (consecutive versions) from its state just before
    them: the cache's when it has that version, else one query for all the others."""
    starts: dict[str, Document] = {}
    missing: dict[str, int] = {}
    for doc_id, events in per_doc.items():
        doc = cache.get(doc_id, events[0].v - 1)
        if doc is None:
            missing[doc_id] = events[0].v
        else:
            starts[doc_id] = doc
    if missing:
        starts.update(await load_documents(conn, missing))
    out = Folded()
    bad: dict[str, Failure] = {}
    for doc_id, events in per_doc.items():
        encoder = cache.encoder(doc_id)
        try:
            rows = fold(starts[doc_id], events, encoder)
        except Exception:  # any refusal of the projection is a dead letter, not a crash
            bad[doc_id] = _first_failure(starts[doc_id], events)
            continue
        out.rows[doc_id] = rows
        cache.put(rows.doc, encoder)
    for failure in bad.values():
        shard = shard_of(failure.event.doc_id, shards)
        known = out.failures.get(shard)
        if known is None or failure.event.position < known.event.position:
            out.failures[shard] = failure
    if out.failures:
        _split_failed_shards(out, per_doc, starts, shards)
    return out


def _first_failure(doc: Document, events: Sequence[StoredEvent]) -> Failure:
    for event in events:
        try:
            doc = fold(doc, [event]).doc
        except Exception as exc:
            return Failure(event, f"{type(exc).__name__}: {exc}")
    raise AssertionError("a fold that failed as a whole succeeded event by event")


def _split_failed_shards(
    out: Folded,
    per_doc: Mapping[str, Sequence[StoredEvent]],
    starts: Mapping[str, Document],
    shards: int,
) -> None:
    """Move the failed shards' documents out of ``rows``, folded again up to (not
    including) their shard's first bad event."""
    for doc_id, events in per_doc.items():
        shard = shard_of(doc_id, shards)
        failure = out.failures.get(shard)
        if failure is None:
            continue
        out.rows.pop(doc_id, None)
        before = [e for e in events if e.position < failure.event.position]
        prefix = out.prefix.setdefault(shard, {})
        if before:
            # Cannot fail: each document's first bad event is at or after the shard's.
            prefix[doc_id] = fold(starts[doc_id], before)
