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

from app.domain import Document, Element, Layer, apply_event, state_from_json
from app.domain.codec import element_to_json
from app.store.ports import StoredEvent
from app.views.schema import HISTORY_EVERY, history_stride

__all__ = [
    "Activity",
    "DocRows",
    "StateEncoder",
    "decode_state",
    "encode_state",
    "fold",
    "keeps_history",
]


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


class _LayerBytes:
    """One layer's bytes, and each of its elements' bytes by element identity."""

    __slots__ = ("data", "elements", "layer")

    def __init__(self) -> None:
        self.layer: Layer | None = None
        self.data = b""
        # id(element) -> (element, its bytes); the element is kept so that its id
        # cannot be reused by another object while the entry exists.
        self.elements: dict[int, tuple[Element, bytes]] = {}

    def encode(self, layer: Layer) -> bytes:
        if self.layer is layer:
            return self.data
        cache = self.elements
        parts: list[bytes] = []
        for e in layer.elements:
            hit = cache.get(id(e))
            if hit is None or hit[0] is not e:
                hit = cache[id(e)] = (e, orjson.dumps(element_to_json(e)))
            parts.append(hit[1])
        if len(cache) > 2 * len(parts) + 64:  # forget elements the layer no longer holds
            self.elements = {id(e): cache[id(e)] for e in layer.elements}
        head = orjson.dumps(
            {
                "id": layer.id,
                "name": layer.name,
                "visible": layer.visible,
                "locked": layer.locked,
                "opacity": layer.opacity,
            }
        )
        self.data = b"".join((head[:-1], b',"elements":[', b",".join(parts), b"]}"))
        self.layer = layer
        return self.data


class StateEncoder:
    """``orjson.dumps(state_to_json(doc))``, byte for byte, for successive states of
    one document, re-encoding only what changed.

    Why: a hot document's state grows to megabytes, and encoding it whole took most of
    a worker's batch (docs/readside.md, "Workers"). Elements and layers are immutable
    and an op makes new objects only for what it changes, so the bytes of an element
    (or of a layer whose object is the same) are cached by object identity and the
    state is joined from them. Keep one encoder per document (the worker keeps it
    beside the document in its LRU); a fresh one encodes everything, so
    ``encode_state`` is this same function for rebuild, verify and time travel."""

    __slots__ = ("_layers",)

    def __init__(self) -> None:
        self._layers: dict[str, _LayerBytes] = {}

    def encode(self, doc: Document) -> bytes:
        old = self._layers
        new: dict[str, _LayerBytes] = {}
        parts: list[bytes] = []
        for layer in doc.layers:
            entry = new.get(layer.id) or old.get(layer.id) or _LayerBytes()
            new[layer.id] = entry
            parts.append(entry.encode(layer))
        self._layers = new
        head = orjson.dumps({"id": doc.id, "title": doc.title, "v": doc.v})
        return b"".join((head[:-1], b',"layers":[', b",".join(parts), b"]}"))


def encode_state(doc: Document) -> bytes:
    """The state's bytes, as stored in ``read.doc_state`` and ``read.history``: those
    of ``orjson.dumps(state_to_json(doc))`` (PROTOCOL.md section 2)."""
    return StateEncoder().encode(doc)


def keeps_history(v: int, doc: Document) -> bool:
    """Whether ``read.history`` holds the state ``doc`` at version ``v``: at multiples
    of ``HISTORY_EVERY``, and of ``HISTORY_EVERY * history_stride(elements)`` for a
    document with many elements at ``v`` (a function of the events up to ``v``, so a
    rebuild keeps the same rows)."""
    if v % HISTORY_EVERY:
        return False
    stride = history_stride(sum(len(layer.elements) for layer in doc.layers))
    return (v // HISTORY_EVERY) % stride == 0


def decode_state(data: bytes) -> Document:
    return state_from_json(orjson.loads(data))


def fold(
    doc: Document, events: Sequence[StoredEvent], encoder: StateEncoder | None = None
) -> DocRows:
    """Apply ``events`` (one document's, consecutive versions following ``doc.v``;
    ``doc`` is ``Document(doc_id)`` before ``doc.create``). Raises ``ValueError`` when
    an event cannot follow (a broken stream) or cannot be applied; the caller records
    it as a dead letter. ``encoder``: the document's ``StateEncoder`` from earlier
    folds (the bytes are the same with or without it, only cheaper)."""
    if not events:
        raise ValueError("fold needs at least one event")
    if encoder is None:
        encoder = StateEncoder()
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
        if keeps_history(event.v, doc):
            history.append((event.v, encoder.encode(doc)))
    return DocRows(doc, encoder.encode(doc), events[-1].ts, owner, activity, history)
