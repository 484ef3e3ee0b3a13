"""Group commit: ops that arrive while earlier ones commit share the next transaction.

There is no waiting window: when a commit lane is free, whatever is queued goes at
once, so a lone op commits with the latency of one round trip, and under load the
batches grow by themselves (DESIGN.md, "Global order": the counter row is what all
appenders serialize on; one transaction per batch rather than per op is what makes
that fast).

A document is in at most one transaction at a time. Its ops are chained (each one's
expected version is the previous one's), so two transactions carrying ops of one
document could only conflict with each other; keeping them apart keeps every
conflict a real one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import structlog

from app.command.docstate import DocState, Pending
from app.errors import AppError, Unavailable
from app.observability import metrics
from app.store.ports import AppendRequest, AppendResult, EventStore

__all__ = ["GroupCommitter"]

log = structlog.get_logger(__name__)

Committed = Callable[[DocState, Pending, AppendResult], None]

# Checked before building the debug line of a commit (logging caches the answer).
_debugging = logging.getLogger(__name__).isEnabledFor


def _log_commit(
    requests: Sequence[AppendRequest], results: Sequence[AppendResult], seconds: float
) -> None:
    """The debug line of one group-commit transaction: every op it carried."""
    log.debug(
        "group commit",
        events=len(requests),
        seconds=round(seconds, 6),
        ops=[
            {
                "doc": r.doc_id,
                "user": r.event.actor,
                "op_id": r.event.op_id,
                "status": result.status,
                "v": result.v,
                "position": result.position,
            }
            for r, result in zip(requests, results, strict=True)
        ],
    )


class GroupCommitter:
    def __init__(
        self, store: EventStore, *, lanes: int, max_batch: int, on_committed: Committed
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._lanes = asyncio.Semaphore(lanes)
        self._ready: dict[str, DocState] = {}  # insertion-ordered: oldest first
        self._wake = asyncio.Event()
        self._on_committed = on_committed
        self._task: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._closing = False

    def start(self) -> None:
        assert self._task is None, "GroupCommitter.start() called twice"
        self._task = asyncio.create_task(self._run(), name="group-commit")

    async def close(self) -> None:
        """Stop taking new batches; wait for the transactions in flight to finish."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        for state in self._ready.values():
            for pending in state.queued:
                if not pending.future.done():
                    pending.future.set_exception(Unavailable("the server is shutting down"))
            state.queued.clear()
        self._ready.clear()

    def enqueue(self, state: DocState, pending: Pending) -> None:
        if self._closing:
            raise Unavailable("the server is shutting down")
        state.queued.append(pending)
        if not state.inflight:
            self._ready[state.doc_id] = state
            self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._ready and not self._closing:
                await self._lanes.acquire()
                batch = self._take()
                if not batch:
                    self._lanes.release()
                    break
                task = asyncio.create_task(self._flush(batch))
                self._flushes.add(task)
                task.add_done_callback(self._flushes.discard)

    def _take(self) -> list[tuple[DocState, list[Pending]]]:
        batch: list[tuple[DocState, list[Pending]]] = []
        room = self._max_batch
        while self._ready and room > 0:
            doc_id = next(iter(self._ready))
            state = self._ready.pop(doc_id)
            if not state.queued:
                continue
            taken, state.queued = state.queued[:room], state.queued[room:]
            room -= len(taken)
            state.inflight = True
            batch.append((state, taken))
        return batch

    async def _flush(self, batch: list[tuple[DocState, list[Pending]]]) -> None:
        requests = [p.request for _, pendings in batch for p in pendings]
        started = time.perf_counter()
        try:
            results = await self._store.append(requests)
        except AppError as exc:
            log.warning("append failed", ops=len(requests), code=exc.code, error=exc.message)
            self._fail(batch, exc)
        except Exception:
            # Whether it committed is unknown: the ops are answered `unavailable`, their
            # heads dropped, and a retry with the same id finds the first outcome (I3).
            log.exception("append crashed", ops=len(requests))
            self._fail(batch, Unavailable("the event store failed; retry with the same id"))
        else:
            seconds = time.perf_counter() - started
            metrics.append_seconds.observe(seconds)
            metrics.append_batch_size.observe(len(requests))
            if _debugging(logging.DEBUG):
                _log_commit(requests, results, seconds)
            self._settle(batch, results)
        finally:
            self._lanes.release()
            self._wake.set()

    def _settle(
        self, batch: list[tuple[DocState, list[Pending]]], results: list[AppendResult]
    ) -> None:
        assert len(results) == sum(len(p) for _, p in batch), "store returned a wrong count"
        it = iter(results)
        for state, pendings in batch:
            failed = False
            for pending in pendings:
                result = next(it)
                if result.status == "ok":
                    self._on_committed(state, pending, result)
                else:
                    failed = True
                if not pending.future.done():
                    pending.future.set_result(result)
            self._release(state, failed=failed)

    def _fail(self, batch: list[tuple[DocState, list[Pending]]], exc: AppError) -> None:
        for state, pendings in batch:
            for pending in pendings:
                if not pending.future.done():
                    pending.future.set_exception(type(exc)(exc.message))
            self._release(state, failed=True)

    def _release(self, state: DocState, *, failed: bool) -> None:
        state.inflight = False
        if failed:
            # Everything decided after the op that failed was decided on a state that
            # did not commit: drop it; its callers decide again on the rebuilt model.
            state.drop_head()
        elif state.queued:
            self._ready[state.doc_id] = state
