"""The worker's LRU of recent documents: ``doc_id -> Document`` at some version.

Why: a batch folds each document from its state just before the batch. Decoding that
state from ``read.doc_state`` costs a query and a JSON parse per document per batch;
a hot document is in every batch. A ``Document`` at version v is a pure function of
the document's first v events (I6), so a cached one can never be wrong, only at
another version than the batch needs, which ``get`` treats as a miss.
"""

from __future__ import annotations

from collections import OrderedDict

from app.domain import Document
from app.views.project import StateEncoder

__all__ = ["DocumentCache"]


class DocumentCache:
    """At most ``capacity`` documents, least recently used evicted first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be at least 0, not {capacity}")
        self._capacity = capacity
        self._docs: OrderedDict[str, Document] = OrderedDict()
        # Each cached document's StateEncoder: its elements' bytes, so the next batch
        # encodes only what changed (app/views/project.py).
        self._encoders: dict[str, StateEncoder] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._docs)

    def get(self, doc_id: str, v: int) -> Document | None:
        """The document at version ``v``, if cached at exactly that version."""
        doc = self._docs.get(doc_id)
        if doc is None or doc.v != v:
            self.misses += 1
            return None
        self._docs.move_to_end(doc_id)
        self.hits += 1
        return doc

    def encoder(self, doc_id: str) -> StateEncoder:
        """The encoder kept with the document (whatever its version: its cache is by
        object identity, never wrong), or a new one."""
        encoder = self._encoders.get(doc_id)
        return StateEncoder() if encoder is None else encoder

    def put(self, doc: Document, encoder: StateEncoder | None = None) -> None:
        """Keep ``doc`` (and the encoder that encoded it) unless a later version of it
        is cached already."""
        if self._capacity == 0:
            return
        old = self._docs.get(doc.id)
        if old is not None and old.v > doc.v:
            return
        self._docs[doc.id] = doc
        self._docs.move_to_end(doc.id)
        if encoder is not None:
            self._encoders[doc.id] = encoder
        while len(self._docs) > self._capacity:
            evicted, _ = self._docs.popitem(last=False)
            self._encoders.pop(evicted, None)

    def discard(self, doc_id: str) -> None:
        self._docs.pop(doc_id, None)
        self._encoders.pop(doc_id, None)
