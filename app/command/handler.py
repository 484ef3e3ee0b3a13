"""The command handler: an op goes in, an ``Ack`` comes out only after its event commits.

    submit ─▶ idempotency (recent ids, in-flight copies) ─▶ parse ─▶ write model head
           ─▶ decide ─▶ evolve the head ─▶ group commit ─▶ Ack   (I1, I3)

Decisions are made on the speculative head, so ops of one document that arrive
together chain in memory and share one transaction. A lost race (another process
appended first) or a failed commit drops the head; the op is decided again on the
rebuilt model, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable

import orjson
import structlog

from app.command.docstate import RETRY, Ack, DocState, OpKey, Pending
from app.command.groupcommit import GroupCommitter
from app.command.locked import LockedAppends, event_of
from app.command.writemodels import WriteModels, fold
from app.domain import (
    Decision,
    Role,
    WriteModel,
    create_op,
    decide,
    decide_restore,
    evolve,
    parse_op,
    valid_id,
)
from app.errors import AppError, Forbidden, Invalid, NotFound, Unavailable
from app.observability import metrics
from app.store.ports import AppendRequest, AppendResult, EventStore, NewEvent, StoredEvent

__all__ = ["Ack", "CommandHandler"]

log = structlog.get_logger(__name__)

# Label children bound once: looking them up per op is measurable on the hot path.
_ACKS = metrics.ops_total.labels(outcome="ack", code="")
_DUPLICATES = metrics.ops_total.labels(outcome="duplicate", code="")

# Optimistic decisions of one op (each dropped unsent, or rejected on a model the store
# had moved past) before it goes under the lock; and rounds there (each failed by a
# duplicate ahead of it) before it is answered `unavailable`.
_DECISIONS = 8
# How long a document stays contended after a race lost at the store: its ops are
# decided under its lock meanwhile (app/command/locked.py).
_CONTENDED_SECONDS = 1.0
_EMPTY_EFFECT = b"{}"


class CommandHandler:
    def __init__(
        self,
        store: EventStore,
        *,
        lanes: int = 1,
        max_batch: int = 256,
        cache_size: int = 2000,
        undo_depth: int = 100,
        commit_timeout: float = 5.0,
    ) -> None:
        self._store = store
        self._commit_timeout = commit_timeout
        self._undo_depth = undo_depth
        self._models = WriteModels(store, capacity=cache_size, undo_depth=undo_depth)
        self._locked = LockedAppends(store, self._models)
        self._committer = GroupCommitter(
            store, lanes=lanes, max_batch=max_batch, on_committed=self._committed
        )

    async def start(self) -> None:
        self._committer.start()

    async def close(self) -> None:
        """Drain: answer every op in flight, then stop."""
        await self._locked.close()
        await self._committer.close()

    # -- documents ---------------------------------------------------------------

    async def create_document(self, doc_id: str, owner: str, title: str) -> StoredEvent:
        if not valid_id(doc_id):
            raise Invalid("id must be 1-64 characters of [A-Za-z0-9_-]")
        op = create_op(title)
        event = NewEvent(
            actor=owner, op_id=None, kind="doc.create", op=orjson.dumps(op), effect=_EMPTY_EFFECT
        )
        stored = await self._store.create_document(doc_id, owner, title, event)
        state = self._models.state(doc_id)
        if state.model is None and state.loading is None:
            model = evolve(WriteModel.new(doc_id, self._undo_depth), 1, owner, op, {})
            state.model = state.committed = model
        return stored

    async def model(self, doc_id: str) -> WriteModel:
        """The document's write model as this process holds it (may include ops in flight)."""
        return await self._models.head(self._models.state(doc_id))

    async def committed_model(self, doc_id: str) -> WriteModel:
        """The write model after the last op known to be committed, never one still in
        flight (what a websocket ``welcome`` may show); other processes may be ahead."""
        state = self._models.state(doc_id)
        await self._models.head(state)
        assert state.committed is not None, "a loaded document has a committed model"
        return state.committed

    # -- ops -------------------------------------------------------------------

    async def submit(
        self,
        doc_id: str,
        actor: str,
        role: Role,
        op_id: str,
        raw_op: object,
        *,
        decided: Callable[[], None] | None = None,
    ) -> Ack:
        """Decide the op and return its ``Ack`` once its event is committed.

        ``decided``, when given, is called as soon as the op is decided and queued for
        its commit (the next op of the document is decided on the state it leaves), so a
        caller may hand over its next op without waiting for this one's commit. It may
        be called more than once (a decision retried after a lost race), and not at all
        when the op is answered without a commit (a rejection, a duplicate).
        """
        started = time.perf_counter()
        state = self._models.state(doc_id)
        key: OpKey = (actor, op_id)
        try:
            ack = await self._submit_once(state, key, role, raw_op, decided)
        except AppError as exc:
            metrics.ops_total.labels(outcome="reject", code=exc.code).inc()
            raise
        (_DUPLICATES if ack.duplicate else _ACKS).inc()
        metrics.ack_seconds.observe(time.perf_counter() - started)
        return ack

    async def _submit_once(
        self,
        state: DocState,
        key: OpKey,
        role: Role,
        raw: object,
        decided: Callable[[], None] | None,
    ) -> Ack:
        # I3: an op id is applied at most once per user and document. The ledger in the
        # store is the authority; these two checks only answer the common cases early.
        while True:
            known = state.recent_ops.get(key)
            if known is not None:
                return Ack(known, duplicate=True)
            late = state.late.get(key)
            if late is not None:
                # An earlier copy was answered `unavailable` while its commit was out:
                # its outcome first (committed: remembered above; not: decided afresh).
                await asyncio.wait((late,), timeout=self._commit_timeout)
                if not late.done():
                    raise Unavailable.store_silent(self._commit_timeout)
                if state.late.get(key) is late:
                    del state.late[key]
                continue
            first = state.pending_ops.get(key)
            if first is None:
                break
            try:
                ack = await asyncio.shield(first)
            except AppError:
                continue  # the first copy was rejected: this one is validated afresh
            return Ack(ack.v, ack.ts, duplicate=True)
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        state.pending_ops[key] = future
        try:
            ack = await self._decide_and_append(state, key, role, raw, decided)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: copies waiting on it re-raise it
            raise
        else:
            future.set_result(ack)
        finally:
            del state.pending_ops[key]
        return ack

    async def _decide_and_append(
        self,
        state: DocState,
        key: OpKey,
        role: Role,
        raw: object,
        decided: Callable[[], None] | None = None,
    ) -> Ack:
        actor, op_id = key
        try:
            op = parse_op(raw)
        except AppError as exc:
            return await self._rejected(state, key, exc)

        def decide_on(model: WriteModel) -> Decision:
            return decide(model, op, actor, role)

        try:
            result = await self._optimistically(state, actor, op_id, decide_on, decided)
        except _Rejection as rejection:
            return await self._rejected(state, key, rejection.error)
        if result is not None:
            return self._answer(state, key, result)
        return await self._decide_exclusively(state, actor, op_id, decide_on)

    async def _optimistically(
        self,
        state: DocState,
        actor: str,
        op_id: str | None,
        decide_on: Callable[[WriteModel], Decision],
        decided: Callable[[], None] | None = None,
    ) -> AppendResult | None:
        """Decide on the speculative head and append with the group commit; the store's
        result (not ``conflict``), or None when the op is to be decided under the lock:
        its document is contended (another process won a race for it lately), its
        rejection rested on ops still in flight, or it was dropped unsent too many
        times. Raises ``_Rejection`` when the decision's rejection is final."""
        for _ in range(_DECISIONS):
            if self._contended(state):
                return None
            model = await self._models.head(state)
            try:
                decision = decide_on(model)
            except AppError as exc:
                if await self._rejection_stands(state, model, exc):
                    raise _Rejection(exc) from exc
                if model is state.committed:
                    continue  # the head was dropped: decide again on the newer state
                return None
            result = await self._append(state, model, decision, actor, op_id, decided)
            if result.status != "conflict":
                return result
            self._lost(state, result)
        return None

    def _answer(self, state: DocState, key: OpKey, result: AppendResult) -> Ack:
        if result.status == "ok":
            return Ack(result.v, result.ts)
        if result.status == "duplicate":
            state.remember(key, result.v)
            return Ack(result.v, duplicate=True)
        if result.status == "missing":
            raise NotFound(f"document {state.doc_id!r} does not exist")
        raise Unavailable("the document is too busy right now; retry with the same id")

    async def _decide_exclusively(
        self,
        state: DocState,
        actor: str,
        op_id: str | None,
        decide_on: Callable[[WriteModel], Decision],
    ) -> Ack:
        """Decide and append under the document's lock, with the other ops waiting for
        it (``app.command.locked``); ``op_id`` None for a restore, which has no client op
        id (nothing goes to the ledger)."""
        key: OpKey = (actor, op_id or "")
        for _ in range(_DECISIONS):
            try:
                result = await self._locked.append(state, actor, op_id, decide_on)
            except Unavailable:
                raise
            except AppError as exc:
                if op_id is None:
                    raise
                return await self._rejected(state, key, exc)
            if result.status == "conflict":
                continue  # behind a duplicate in the same transaction: the next round
            if result.status == "ok" and op_id is not None:
                state.remember(key, result.v)
            return self._answer(state, key, result)
        raise Unavailable("the document is too busy right now; retry with the same id")

    def _contended(self, state: DocState) -> bool:
        until = state.contended_until  # 0.0 for a document never contended: no clock read
        return until > 0.0 and until > asyncio.get_running_loop().time()

    def _lost(self, state: DocState, result: AppendResult) -> None:
        """An append came back ``conflict``. A lost race at the store marks the document
        contended for a while: its ops go under the lock together, where they cannot
        lose. An op dropped unsent (``RETRY``: one ahead of it failed or took the lock)
        lost nothing; it is decided again."""
        if result is RETRY:
            return
        metrics.version_conflicts_total.inc()
        state.contended_until = asyncio.get_running_loop().time() + _CONTENDED_SECONDS

    async def _rejection_stands(self, state: DocState, model: WriteModel, exc: AppError) -> bool:
        """Whether ``exc``, raised deciding on ``model``, is the op's answer.

        A rejection is final only when decided on the document as the store holds it.
        Another process (a second gateway) may have appended since this one loaded or
        last appended, and this process learns of it only when an append of its own
        loses the race; the op at hand may need exactly what it added (a layer, an
        element, a later version to restore). So: a rejection decided on the committed
        model is checked against the store's version, one indexed read; when the store
        is ahead, the head is dropped (rebuilt from the events after it) and the op is
        decided again. One decided on ops of this process still in flight is decided
        again under the document's lock, where the state cannot move. ``Forbidden``
        depends on the role alone.
        """
        if isinstance(exc, Forbidden):
            return True
        if model is not state.committed:
            return False
        row = await self._store.get_document(state.doc_id)
        if row is not None and row.v > model.v:
            metrics.stale_decisions_total.inc()
            state.drop_head()
            return False
        return True

    async def _rejected(self, state: DocState, key: OpKey, exc: AppError) -> Ack:
        """An op that fails now may be a re-send of one that was acknowledged before,
        on this connection or another: the ledger says so (PROTOCOL.md 4, guarantee 3)."""
        actor, op_id = key
        try:
            v = await self._store.find_op(state.doc_id, actor, op_id)
        except Unavailable:
            # Without the ledger we cannot tell a re-send from a new op; answering
            # `conflict` could make a client drop an edit that is in fact stored.
            raise Unavailable("the event store is unavailable; retry with the same id") from exc
        if v is None:
            raise exc
        state.remember(key, v)
        return Ack(v, duplicate=True)

    async def _append(
        self,
        state: DocState,
        model: WriteModel,
        decision: Decision,
        actor: str,
        op_id: str | None,
        decided: Callable[[], None] | None = None,
    ) -> AppendResult:
        # No await between reading the head and enqueueing: the next op of this
        # document is decided on the state this one leaves.
        after = evolve(model, model.v + 1, actor, decision.op, decision.effect)
        event = event_of(decision, actor, op_id)
        request = AppendRequest(doc_id=state.doc_id, expected_v=model.v, event=event)
        pending = Pending(request, after, asyncio.get_running_loop().create_future())
        state.model = after
        self._committer.enqueue(state, pending)
        if decided is not None:
            decided()
        # A store that stops answering without a reset (a partition) would hold the op
        # until the driver's command timeout, and the ops queued behind it longer: the
        # caller is answered `unavailable` after ``commit_timeout`` instead. The
        # transaction goes on; until it ends, a re-sent copy waits for its outcome
        # (``state.late``), so the copy is never decided against the op's own effect.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[AppendResult] = loop.create_future()
        pending.future.add_done_callback(functools.partial(_pass_on, waiter))
        timer = loop.call_later(
            self._commit_timeout,
            _expire,
            state,
            (actor, op_id),
            pending.future,
            waiter,
            self._commit_timeout,
        )
        try:
            return await waiter
        finally:
            timer.cancel()

    # -- restore -----------------------------------------------------------------

    async def restore(self, doc_id: str, actor: str, role: Role, to_v: int) -> Ack:
        """Append a ``restore`` event that brings the state back to version ``to_v``."""
        state = self._models.state(doc_id)
        target = await self._state_at(doc_id, to_v)

        def decide_on(model: WriteModel) -> Decision:
            return decide_restore(model, target.doc, to_v, actor, role)

        try:
            result = await self._optimistically(state, actor, None, decide_on)
        except _Rejection as rejection:
            raise rejection.error from None
        if result is not None:
            return self._answer(state, (actor, ""), result)
        return await self._decide_exclusively(state, actor, None, decide_on)

    async def _state_at(self, doc_id: str, v: int) -> WriteModel:
        if v < 1:
            raise Invalid("v must be a version of the document (1 or more)")
        events = await self._store.read_stream(doc_id, after_v=0, limit=v)
        if not events:
            raise NotFound(f"document {doc_id!r} does not exist")
        if events[-1].v != v:
            raise Invalid(f"the document has no version {v} yet")
        return fold(WriteModel.new(doc_id, self._undo_depth), events)

    # -- after commit ------------------------------------------------------------

    def _committed(self, state: DocState, pending: Pending, result: AppendResult) -> None:
        state.advance(pending.model_after)
        event = pending.request.event
        if event.op_id is not None:
            state.remember((event.actor, event.op_id), result.v)


class _Rejection(Exception):
    """A decision's rejection that stands (``_rejection_stands``), on its way out of
    ``_optimistically``; kept apart from the failures of the append itself."""

    def __init__(self, error: AppError) -> None:
        super().__init__(error.message)
        self.error = error


def _pass_on(waiter: asyncio.Future[AppendResult], future: asyncio.Future[AppendResult]) -> None:
    """The committer's outcome, to the caller still waiting for it (if any)."""
    if future.cancelled():
        waiter.cancel()
        return
    exc = future.exception()  # retrieved either way: no "never retrieved" warning
    if waiter.done():
        return
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(future.result())


def _expire(
    state: DocState,
    key: tuple[str, str | None],
    future: asyncio.Future[AppendResult],
    waiter: asyncio.Future[AppendResult],
    seconds: float,
) -> None:
    """The commit took too long: the caller hears `unavailable`; the op stays known as
    late until its transaction ends."""
    if waiter.done():
        return
    actor, op_id = key
    if op_id is not None:
        op_key: OpKey = (actor, op_id)
        state.late[op_key] = future

        def ended(done: asyncio.Future[AppendResult]) -> None:
            if state.late.get(op_key) is done:
                del state.late[op_key]

        future.add_done_callback(ended)
    waiter.set_exception(Unavailable.store_silent(seconds))
