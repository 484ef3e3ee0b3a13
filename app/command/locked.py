"""Ops decided under the document's row lock, in batches: the path for a contended
document.

Optimistic appends work while one process writes a document: its ops chain on the
speculative head and commit together. When two processes write one document (two
gateways, each with editors on it), each learns of the other's commits only by losing
a race at the store, and a head decided on a stale state loses again and again. Sent
through the lock one op at a time, as before, every op paid a transaction of its own
and dropped the queue behind it; at 375 ops/s on one document over two gateways, 99%
of the ops went that way and the acks took seconds (docs/benchmarks.md, "Two gateways
writing one document").

Here the ops queued for the lock go together: one task per document takes every op
waiting, locks the document's row (``append_exclusive``), folds the events the store
has after the last committed model, decides each op in order on the state the ones
before it leave, and appends them all in the same transaction. Nothing can overtake
it, so nothing it decided conflicts; the ops that came while it ran go in the next
round. A rejection is decided on the store's own state, so it is final.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import orjson
import structlog

from app.command.docstate import DocState, Locked
from app.command.writemodels import WriteModels, fold
from app.domain import Decision, WriteModel, evolve
from app.errors import AppError, Unavailable
from app.observability import metrics
from app.store.ports import AppendRequest, AppendResult, EventStore, NewEvent, StoredEvent

__all__ = ["LockedAppends", "event_of"]

log = structlog.get_logger(__name__)

# Whether the transaction under way committed is unknown: a retry with the same id
# finds out (I3).
_INTERRUPTED = Unavailable("the write was interrupted; retry with the same id")


class LockedAppends:
    def __init__(self, store: EventStore, models: WriteModels) -> None:
        self._store = store
        self._models = models
        self._drains: set[asyncio.Task[None]] = set()

    async def append(
        self,
        state: DocState,
        actor: str,
        op_id: str | None,
        decide_on: Callable[[WriteModel], Decision],
    ) -> AppendResult:
        """The store's result for this op, decided under the lock with the ops queued
        beside it; raises the decision's rejection (final: made on the store's state),
        or the store's ``NotFound`` or ``Unavailable``. ``conflict`` only when an op
        ahead of it in the same transaction was a duplicate (the store then fails the
        rest of the chain)."""
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        state.locked.append(Locked(actor, op_id, decide_on, future))
        if not state.draining:
            state.draining = True
            task = asyncio.create_task(self._drain(state))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        return await future

    async def close(self) -> None:
        """Wait for the rounds under way (their ops are answered)."""
        while self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)

    async def _drain(self, state: DocState) -> None:
        try:
            while state.locked:
                batch, state.locked = state.locked, []
                try:
                    await self._round(state, batch)
                except asyncio.CancelledError:
                    _fail(batch, _INTERRUPTED)
                    raise
                except Exception as exc:
                    if not isinstance(exc, AppError):
                        log.exception("locked append crashed", doc=state.doc_id, ops=len(batch))
                    _fail(batch, exc)
        finally:
            state.draining = False
            if state.locked:  # cancelled: no round is left to answer these
                _fail(state.locked, _INTERRUPTED)
                state.locked = []

    async def _round(self, state: DocState, batch: list[Locked]) -> None:
        if state.committed is None:  # never loaded here (the events come with the lock)
            await self._models.head(state)
        base = state.committed
        assert base is not None, "a loaded document has a committed model"
        built: list[tuple[Locked, WriteModel]] = []
        rejected: list[tuple[Locked, AppError]] = []

        def build(events: list[StoredEvent]) -> Sequence[AppendRequest]:
            built.clear()
            rejected.clear()
            model = fold(base, events)
            requests: list[AppendRequest] = []
            for item in batch:
                try:
                    decision = item.decide_on(model)
                except AppError as exc:
                    rejected.append((item, exc))
                    continue
                after = evolve(model, model.v + 1, item.actor, decision.op, decision.effect)
                event = event_of(decision, item.actor, item.op_id)
                requests.append(AppendRequest(state.doc_id, model.v, event))
                built.append((item, after))
                model = after
            return requests

        metrics.exclusive_appends_total.inc(len(batch))
        started = time.perf_counter()
        try:
            results = await self._store.append_exclusive(state.doc_id, base.v, build)
        finally:
            # Ops of this process decided before the lock find the document moved: drop
            # the head, so that they are decided again on the new state.
            state.drop_head()
        if results:  # observed as the group commit's transactions are
            metrics.append_seconds.observe(time.perf_counter() - started)
            metrics.append_batch_size.observe(len(results))
        for (item, after), result in zip(built, results, strict=True):
            if result.status == "ok":
                state.advance(after)
            if not item.future.done():
                item.future.set_result(result)
        for item, exc in rejected:
            if not item.future.done():
                item.future.set_exception(exc)


def _fail(batch: list[Locked], exc: Exception) -> None:
    """Every op of ``batch`` not yet answered gets ``exc`` (a fresh copy per op), or
    ``unavailable`` for anything that is not an ``AppError`` (whether it committed is
    unknown: a retry with the same id finds out, I3)."""
    for item in batch:
        if not item.future.done():
            if isinstance(exc, AppError):
                item.future.set_exception(type(exc)(exc.message))
            else:
                item.future.set_exception(Unavailable("the write failed; retry with the same id"))


def event_of(decision: Decision, actor: str, op_id: str | None) -> NewEvent:
    return NewEvent(
        actor=actor,
        op_id=op_id,
        kind=decision.kind,
        op=orjson.dumps(decision.op),
        effect=orjson.dumps(decision.effect),
    )
