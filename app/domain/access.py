"""Who may do what to a document (PROTOCOL.md section 1; DESIGN.md invariant I8).

Owners and editors write; viewers only read (and send presence); only the owner
manages members. ``None`` means "not a member": no access at all.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Role", "can_manage", "can_read", "can_write"]

Role = Literal["owner", "editor", "viewer"]

_READERS = frozenset({"owner", "editor", "viewer"})
_WRITERS = frozenset({"owner", "editor"})


def can_read(role: Role | None) -> bool:
    return role in _READERS


def can_write(role: Role | None) -> bool:
    return role in _WRITERS


def can_manage(role: Role | None) -> bool:
    return role == "owner"
