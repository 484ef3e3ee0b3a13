"""Decide which documents need a snapshot, build it from the store, and save it.

Lazy by design: for each document it only counts the events it sees. When a
document is far enough past its newest snapshot, the snapshotter folds the events
after that snapshot onto it (or onto the model it keeps from last time) and saves the
result. The models it keeps are bounded (LRU); so is the table of snapshot versions
it remembers.

"Far enough" is ``max(every, size)`` events, where size is the document's element
count at its last snapshot. Writing a snapshot costs time in proportion to the
document's size, so this keeps the cost at most one element encoded per event however
large a document grows, while a load never replays more events than the snapshot it
starts from holds elements (or ``every``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import orjson
import structlog

from app.command.writemodels import fold
from app.domain import MODEL_SCHEMA, WriteModel, model_from_json, model_to_json
from app.observability import metrics
from app.store.ports import EventStore, Snapshot, StoredEvent

__all__ = ["Snapshotter"]

log = structlog.get_logger(__name__)

_KNOWN_VERSIONS = 100_000


class Snapshotter:
    def __init__(
        self, store: EventStore, *, every: int, cache_size: int = 256, undo_depth: int = 100
    ) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        self._store = store
        self._every = every
        self._cache_size = cache_size
        self._undo_depth = undo_depth
        self._models: OrderedDict[str, WriteModel] = OrderedDict()
        # doc -> (version of its newest snapshot, events to wait for before the next)
        self._base: OrderedDict[str, tuple[int, int]] = OrderedDict()

    async def on_events(self, events: Sequence[StoredEvent]) -> int:
        """Take note of committed events; write the snapshots now due. Returns how many."""
        latest: dict[str, int] = {}
        for event in events:
            latest[event.doc_id] = max(event.v, latest.get(event.doc_id, 0))
        written = 0
        for doc_id, v in latest.items():
            base, gap = await self._base_version(doc_id)
            if v - base >= gap:
                await self._snapshot(doc_id)
                written += 1
        return written

    async def _base_version(self, doc_id: str) -> tuple[int, int]:
        known = self._base.get(doc_id)
        if known is not None:
            self._base.move_to_end(doc_id)
            return known
        snapshot = await self._store.latest_snapshot(doc_id, MODEL_SCHEMA)
        base = 0 if snapshot is None else snapshot.v
        self._remember(doc_id, base, self._every)
        return base, self._every

    async def _snapshot(self, doc_id: str) -> None:
        model = self._models.pop(doc_id, None)
        if model is None:
            snapshot = await self._store.latest_snapshot(doc_id, MODEL_SCHEMA)
            if snapshot is None:
                model = WriteModel.new(doc_id, self._undo_depth)
            else:
                model = model_from_json(orjson.loads(snapshot.state))
        model = fold(model, await self._store.read_stream(doc_id, after_v=model.v))
        state = orjson.dumps(model_to_json(model))
        await self._store.save_snapshot(
            Snapshot(doc_id=doc_id, v=model.v, schema=MODEL_SCHEMA, state=state)
        )
        metrics.snapshots_written_total.inc()
        log.debug("snapshot written", doc=doc_id, v=model.v, bytes=len(state))
        self._models[doc_id] = model
        while len(self._models) > self._cache_size:
            self._models.popitem(last=False)
        size = sum(len(layer.elements) for layer in model.doc.layers)
        self._remember(doc_id, model.v, max(self._every, size))

    def _remember(self, doc_id: str, v: int, gap: int) -> None:
        self._base[doc_id] = (v, gap)
        self._base.move_to_end(doc_id)
        while len(self._base) > _KNOWN_VERSIONS:
            self._base.popitem(last=False)
