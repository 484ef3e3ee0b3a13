"""The warm write models: a bounded LRU of ``DocState`` and their loading.

A model is loaded from the latest snapshot plus the events after it, or rebuilt from
the last committed model plus the events after it, once per document however many
ops ask for it at once (single flight).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import orjson

from app.command.docstate import DocState
from app.domain import MODEL_SCHEMA, WriteModel, evolve, model_from_json
from app.errors import NotFound
from app.observability import metrics
from app.store.ports import EventStore, StoredEvent

__all__ = ["WriteModels"]


class WriteModels:
    def __init__(self, store: EventStore, *, capacity: int, undo_depth: int) -> None:
        self._store = store
        self._capacity = capacity
        self._undo_depth = undo_depth
        self._states: OrderedDict[str, DocState] = OrderedDict()

    def state(self, doc_id: str) -> DocState:
        state = self._states.get(doc_id)
        if state is None:
            state = self._states[doc_id] = DocState(doc_id)
            self._evict()
        else:
            self._states.move_to_end(doc_id)
        return state

    def __len__(self) -> int:
        return len(self._states)

    async def head(self, state: DocState) -> WriteModel:
        """The speculative head of ``state``, loading it when needed."""
        while state.model is None:
            if state.loading is not None:
                await asyncio.shield(state.loading)  # a failed load fails its waiters too
                continue
            loading = state.loading = asyncio.get_running_loop().create_future()
            try:
                model = await self._load(state)
            except asyncio.CancelledError:
                loading.cancel()
                raise
            except BaseException as exc:
                loading.set_exception(exc)
                loading.exception()  # mark retrieved: waiters, if any, re-raise it
                raise
            finally:
                state.loading = None
            if state.model is None:
                state.model = state.committed = model
            loading.set_result(model)
        return state.model

    async def _load(self, state: DocState) -> WriteModel:
        metrics.write_model_loads_total.inc()
        base = state.committed
        if base is None:
            snapshot = await self._store.latest_snapshot(state.doc_id, MODEL_SCHEMA)
            if snapshot is not None:
                base = model_from_json(orjson.loads(snapshot.state))
            else:
                base = WriteModel.new(state.doc_id, self._undo_depth)
        events = await self._store.read_stream(state.doc_id, after_v=base.v)
        model = fold(base, events)
        if model.v == 0:
            raise NotFound(f"document {state.doc_id!r} does not exist")
        return model

    def _evict(self) -> None:
        if len(self._states) <= self._capacity:
            return
        for doc_id in list(self._states):
            if len(self._states) <= self._capacity:
                break
            if self._states[doc_id].idle:
                del self._states[doc_id]
        metrics.write_models_cached.set(len(self._states))


def fold(model: WriteModel, events: list[StoredEvent]) -> WriteModel:
    for event in events:
        op: dict[str, Any] = orjson.loads(event.op)
        effect: dict[str, Any] = orjson.loads(event.effect) if event.effect else {}
        model = evolve(model, event.v, event.actor, op, effect)
    return model
