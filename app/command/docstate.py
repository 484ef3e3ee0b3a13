"""Per-document state kept by the command handler in one process.

``model`` is the speculative head: the write model after every op that was decided
here, including those still waiting for their commit. ``committed`` is the model
after the last op known to be committed. When an append fails or loses a race, the
head is dropped (``model = None``) and rebuilt from ``committed`` plus whatever the
store holds after it, so a decision is never kept that was made on a state that did
not commit.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from app.domain import Decision, WriteModel
from app.store.ports import AppendRequest, AppendResult

__all__ = ["RETRY", "Ack", "DocState", "Locked", "OpKey", "Pending"]

OpKey = tuple[str, str]  # (actor, client op id)

# The result given to ops that were decided on a head that turned out not to commit:
# their callers decide again on the rebuilt model.
RETRY = AppendResult(status="conflict", v=-1)

_RECENT_OPS = 4096


@dataclass(frozen=True, slots=True)
class Ack:
    """The op is durably committed at version ``v`` (``duplicate``: it was before)."""

    v: int
    ts: int = 0
    duplicate: bool = False


@dataclass(slots=True, eq=False)
class Pending:
    """One decided op on its way to the store."""

    request: AppendRequest
    model_after: WriteModel
    future: asyncio.Future[AppendResult]


@dataclass(slots=True, eq=False)
class Locked:
    """One op waiting to be decided under the document's lock (``app.command.locked``);
    ``op_id`` None for a restore. The future gets the store's result, or the decision's
    rejection as an exception."""

    actor: str
    op_id: str | None
    decide_on: Callable[[WriteModel], Decision]
    future: asyncio.Future[AppendResult]


@dataclass(slots=True, eq=False)
class DocState:
    doc_id: str
    model: WriteModel | None = None
    committed: WriteModel | None = None
    queued: list[Pending] = field(default_factory=list)
    inflight: bool = False
    loading: asyncio.Future[WriteModel] | None = None
    # Answers for op ids seen lately, so a re-sent op is answered without a query (I3);
    # the store's ledger stays the authority.
    recent_ops: OrderedDict[OpKey, int] = field(default_factory=OrderedDict)
    # Ops with these ids are on their way: a second copy waits for the first's outcome.
    pending_ops: dict[OpKey, asyncio.Future[Ack]] = field(default_factory=dict)
    # Ops answered `unavailable` while their commit was still out (the store was slow to
    # answer): a re-sent copy waits for that commit's outcome before it is decided again.
    late: dict[OpKey, asyncio.Future[AppendResult]] = field(default_factory=dict)
    # Ops to be decided under the document's lock, and whether a task is at it; until
    # ``contended_until`` (the event loop's clock) every op of the document goes there:
    # another process lately won a race for it (app/command/locked.py).
    locked: list[Locked] = field(default_factory=list)
    draining: bool = False
    contended_until: float = 0.0

    @property
    def idle(self) -> bool:
        return (
            not self.queued
            and not self.inflight
            and self.loading is None
            and not self.pending_ops
            and not self.late
            and not self.locked
            and not self.draining
        )

    def remember(self, key: OpKey, v: int) -> None:
        self.recent_ops[key] = v
        self.recent_ops.move_to_end(key)
        if len(self.recent_ops) > _RECENT_OPS:
            self.recent_ops.popitem(last=False)

    def advance(self, model: WriteModel) -> None:
        """``model`` committed: the newest committed model, whatever order the answers
        of this process's transactions come back in."""
        if self.committed is None or model.v > self.committed.v:
            self.committed = model

    def drop_head(self) -> None:
        """Forget the speculative head and every op decided on it that has not been sent."""
        self.model = None
        for pending in self.queued:
            if not pending.future.done():
                pending.future.set_result(RETRY)
        self.queued.clear()
