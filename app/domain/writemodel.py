"""The write model: a document's state plus each user's undo and redo stacks.

``evolve`` is the one transition: it applies event ``v`` to the state and updates the
acting user's stacks (PROTOCOL.md section 3, undo and redo):

- an undoable event (a primitive op or a batch) pushes ``Entry(v, records)`` on the
  user's undo stack (oldest dropped past ``undo_depth``) and clears their redo stack;
- ``undo`` pops the undo stack's top (which must be the entry ``of`` names) and pushes
  ``Entry(of, the undo event's records)`` on the redo stack;
- ``redo`` pops the redo stack's top and pushes ``Entry(of, the redo's records)`` on
  the undo stack, so the op is undoable again;
- ``doc.create`` and ``restore`` leave the stacks alone (they are not undoable).

Entries hold effect records (see ``changes``), so undoing never needs the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from app.domain._edit import with_version
from app.domain.apply import apply_op
from app.domain.model import Document

__all__ = ["UNDOABLE", "Entry", "History", "WriteModel", "evolve", "replay"]

UNDOABLE: Final = frozenset(
    {
        "doc.rename",
        "layer.add",
        "layer.update",
        "layer.move",
        "layer.remove",
        "element.add",
        "element.update",
        "element.move",
        "element.remove",
        "batch",
    }
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One undo (or redo) stack entry: the version of the original op and the effect
    records to revert (for redo: the records of the undo event)."""

    v: int
    records: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class History:
    undo: tuple[Entry, ...] = ()
    redo: tuple[Entry, ...] = ()


_NO_HISTORY: Final = History()


@dataclass(frozen=True, slots=True)
class WriteModel:
    doc: Document
    undo_depth: int = 100
    histories: Mapping[str, History] = field(default_factory=dict)

    @property
    def v(self) -> int:
        return self.doc.v

    @classmethod
    def new(cls, doc_id: str, undo_depth: int = 100) -> WriteModel:
        """The model before ``doc.create`` (``v == 0``)."""
        return cls(Document(doc_id), undo_depth, {})

    def history(self, actor: str) -> History:
        return self.histories.get(actor, _NO_HISTORY)


def evolve(
    model: WriteModel,
    v: int,
    actor: str,
    op: Mapping[str, Any],
    effect: Mapping[str, Any],
) -> WriteModel:
    """Apply event ``v`` (``model.v + 1``). ``op`` and ``effect`` are what ``decide``
    produced, as they are or after a JSON round trip. Raises ``ValueError`` when the
    event cannot follow this model: that is a broken stream, not bad input."""
    if v != model.doc.v + 1:
        raise ValueError(f"event v{v} cannot follow v{model.doc.v}")
    kind = op["kind"]
    if (kind == "doc.create") != (v == 1):
        raise ValueError(f"event v{v} is {kind!r}: v1 and only v1 is 'doc.create'")
    doc = with_version(apply_op(model.doc, op), v)
    if kind in UNDOABLE:
        hist = model.history(actor)
        depth = model.undo_depth
        undo = (*hist.undo, Entry(v, tuple(effect.get("records", ()))))
        hist = History(undo[-depth:] if depth > 0 else (), ())
    elif kind == "undo":
        hist = _move_top(model.history(actor), op, effect, from_undo=True)
    elif kind == "redo":
        hist = _move_top(model.history(actor), op, effect, from_undo=False)
    else:
        return WriteModel(doc, model.undo_depth, model.histories)
    histories = dict(model.histories)
    histories[actor] = hist
    return WriteModel(doc, model.undo_depth, histories)


def _move_top(
    hist: History, op: Mapping[str, Any], effect: Mapping[str, Any], *, from_undo: bool
) -> History:
    source = hist.undo if from_undo else hist.redo
    of = op["of"]
    if not source or source[-1].v != of:
        raise ValueError(f"{op['kind']} of v{of} does not match the actor's stack")
    entry = Entry(of, tuple(effect.get("records", ())))
    if from_undo:
        return History(hist.undo[:-1], (*hist.redo, entry))
    return History((*hist.undo, entry), hist.redo[:-1])


def replay(
    doc_id: str,
    events: Iterable[tuple[int, str, Mapping[str, Any], Mapping[str, Any]]],
    undo_depth: int = 100,
) -> WriteModel:
    """Fold ``evolve`` over ``(v, actor, op, effect)`` events, from version 1."""
    model = WriteModel.new(doc_id, undo_depth)
    for v, actor, op, effect in events:
        model = evolve(model, v, actor, op, effect)
    return model
