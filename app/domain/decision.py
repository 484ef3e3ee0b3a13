"""``Decision``, what ``decide``, undo/redo and restore return, and the writer check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.domain.access import Role, can_write
from app.domain.writemodel import WriteModel
from app.errors import Forbidden, NotFound

__all__ = ["Decision", "check_writer"]


@dataclass(frozen=True, slots=True)
class Decision:
    """An accepted op. ``op`` is the event op (JSON-able: what is stored and what
    clients apply); ``effect`` is the JSON-able data undo and redo need (stored with
    the event, never sent to clients)."""

    kind: str
    op: dict[str, Any]
    effect: dict[str, Any]


def check_writer(model: WriteModel, role: Role) -> None:
    """Forbidden unless ``role`` may write (I8); NotFound before ``doc.create``."""
    if not can_write(role):
        raise Forbidden(f"role {role!r} cannot edit this document")
    if model.v == 0:
        raise NotFound(f"document {model.doc.id!r} does not exist")
