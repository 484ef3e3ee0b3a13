"""The projection: what one batch of events writes to each view (pure, no I/O).

A read worker, a rebuild and ``verify`` all fold events the same way, through
``fold``, so a view built live and a view rebuilt from scratch hold the same bytes
(DESIGN.md I5). The fold of a document's state is ``apply_event`` of the domain,
the same function the clients' apply is (I6); the write model's undo histories are not
needed here, because every event carries the ops it applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.domain import Document, apply_event, state_from_json, state_to_json
from app.store.ports import StoredEvent
from app.views.schema import HISTORY_EVERY

__all__ = ["Activity", "DocRows", "decode_state", "encode_state", "fold"]


@dataclass(frozen=True, slots=True)
class Activity:
    """One row of ``read.activity``."""

    v: int
    actor: str
    kind: str
    ts: int


@dataclass(slots=True)
class DocRows:
    """What one batch of one document's events writes: ``doc`` is the state after the
    last event, ``state`` its bytes (``read.doc_state.state``); ``owner`` is set only
    when the batch holds ``doc.create`` (the catalog row is created then)."""

    doc: Document
    state: bytes
    updated_at: int
    owner: str | None = None
    activity: list[Activity] = field(default_factory=list)
    history: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def layers(self) -> int:
        return len(self.doc.layers)

    @property
    def elements(self) -> int:
        return sum(len(layer.elements) for layer in self.doc.layers)


def encode_state(doc: Document) -> bytes:
    """The state's bytes, as stored in ``read.doc_state`` and ``read.history``."""
    return orjson.dumps(state_to_json(doc))


def decode_state(data: bytes) -> Document:
    return state_from_json(orjson.loads(data))


def fold(doc: Document, events: Sequence[StoredEvent]) -> DocRows:
    """Apply ``events`` (one document's, consecutive versions following ``doc.v``;
    ``doc`` is ``Document(doc_id)`` before ``doc.create``). Raises ``ValueError`` when
    an event cannot follow (a broken stream) or cannot be applied; the caller records
    it as a dead letter."""
    if not events:
        raise ValueError("fold needs at least one event")
    owner: str | None = None
    activity: list[Activity] = []
    history: list[tuple[int, bytes]] = []
    for event in events:
        if event.doc_id != doc.id:
            raise ValueError(f"event of {event.doc_id!r} in the fold of {doc.id!r}")
        op: dict[str, Any] = orjson.loads(event.op)
        doc = apply_event(doc, event.v, op)
        if event.v == 1:
            owner = event.actor
        activity.append(Activity(event.v, event.actor, event.kind, event.ts))
        if event.v % HISTORY_EVERY == 0:
            history.append((event.v, encode_state(doc)))
    return DocRows(doc, encode_state(doc), events[-1].ts, owner, activity, history)
