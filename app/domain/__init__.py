"""The document domain: pure, deterministic, no I/O (DESIGN.md; STYLE.md section 2).

What other layers use, and nothing else:

- ``parse_op(raw) -> Op``: validate and normalize a client op (``Invalid``);
- ``decide(model, op, actor, role) -> Decision``: check it against the write model
  (``Forbidden``, ``NotFound``, ``Conflict``, ``Invalid``) and compute the event op
  and its undo effect; ``decide_restore`` for restores; ``create_op`` for creation;
- ``evolve`` / ``replay``: fold events into a ``WriteModel``;
- ``apply``: a client's-eye apply of one event op, ``apply_event`` the same with the
  version check and bump (the read side's fold); ``diff``; JSON codecs;
- ``can_read`` / ``can_write`` / ``can_manage``; ``valid_id`` / ``valid_user``.

docs/domain.md describes the model, the effect and undo design, and the limits.
"""

from __future__ import annotations

from app.domain.access import Role, can_manage, can_read, can_write
from app.domain.apply import apply, apply_event
from app.domain.codec import state_from_json, state_to_json
from app.domain.decide import decide
from app.domain.decision import Decision
from app.domain.diff import diff
from app.domain.ids import valid_id, valid_user
from app.domain.model import Document, Element, Layer
from app.domain.parse import create_op, parse_op
from app.domain.restore import decide_restore
from app.domain.schema import (
    Batch,
    DocRename,
    ElementAdd,
    ElementMove,
    ElementRemove,
    ElementUpdate,
    LayerAdd,
    LayerMove,
    LayerRemove,
    LayerUpdate,
    Op,
    PrimitiveOp,
    Redo,
    Undo,
)
from app.domain.snapshot import MODEL_SCHEMA, model_from_json, model_to_json
from app.domain.writemodel import WriteModel, evolve, replay

__all__ = [
    "MODEL_SCHEMA",
    "Batch",
    "Decision",
    "DocRename",
    "Document",
    "Element",
    "ElementAdd",
    "ElementMove",
    "ElementRemove",
    "ElementUpdate",
    "Layer",
    "LayerAdd",
    "LayerMove",
    "LayerRemove",
    "LayerUpdate",
    "Op",
    "PrimitiveOp",
    "Redo",
    "Role",
    "Undo",
    "WriteModel",
    "apply",
    "apply_event",
    "can_manage",
    "can_read",
    "can_write",
    "create_op",
    "decide",
    "decide_restore",
    "diff",
    "evolve",
    "model_from_json",
    "model_to_json",
    "parse_op",
    "replay",
    "state_from_json",
    "state_to_json",
    "valid_id",
    "valid_user",
]
