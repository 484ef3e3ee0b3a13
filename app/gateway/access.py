"""Who may do what to a document (I8), asked of the store for each HTTP request."""

from __future__ import annotations

from app.domain import Role, can_manage, can_write, valid_id
from app.errors import Forbidden, NotFound
from app.store.ports import EventStore

__all__ = ["require_manager", "require_role", "require_writer"]


async def require_role(store: EventStore, doc_id: str, user: str) -> Role:
    """The caller's role; 404 when the document does not exist, 403 when not a member."""
    if not valid_id(doc_id):  # no such document can exist (and PostgreSQL text holds no NUL)
        raise NotFound(f"document {doc_id[:80]!r} does not exist")
    role = await store.get_role(doc_id, user)
    if role is None:
        if await store.get_document(doc_id) is None:
            raise NotFound(f"document {doc_id!r} does not exist")
        raise Forbidden("you are not a member of this document")
    return role


async def require_writer(store: EventStore, doc_id: str, user: str) -> Role:
    role = await require_role(store, doc_id, user)
    if not can_write(role):
        raise Forbidden("viewers cannot change the document")
    return role


async def require_manager(store: EventStore, doc_id: str, user: str) -> Role:
    role = await require_role(store, doc_id, user)
    if not can_manage(role):
        raise Forbidden("only the owner manages members")
    return role
