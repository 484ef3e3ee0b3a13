"""The event store's ports: record types and Protocols, no driver imports.

The store never sees domain classes (STYLE.md, finding 6): it takes and returns
records of ids, versions, kinds and JSON bytes. The command handler maps domain
decisions to these records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "AppendRequest",
    "AppendResult",
    "Asset",
    "DocumentRow",
    "EventLog",
    "EventStore",
    "Member",
    "NamedVersion",
    "NewEvent",
    "Role",
    "Snapshot",
    "StoredEvent",
]

Role = Literal["owner", "editor", "viewer"]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``op`` is the event's op as orjson bytes (what clients apply);
    ``effect`` the data the domain needs to undo or redo it (never sent to clients)."""

    actor: str
    op_id: str | None
    kind: str
    op: bytes
    effect: bytes


@dataclass(frozen=True, slots=True)
class StoredEvent:
    position: int
    doc_id: str
    v: int
    kind: str
    op: bytes
    effect: bytes
    actor: str
    op_id: str | None
    ts: int  # epoch milliseconds, set at commit


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """Append ``event`` as version ``expected_v + 1`` of ``doc_id``."""

    doc_id: str
    expected_v: int
    event: NewEvent


@dataclass(frozen=True, slots=True)
class AppendResult:
    """``ok``: stored at ``v``/``position``/``ts``. ``duplicate``: the (doc, actor, op id)
    was stored before, at ``v`` (I3). ``conflict``: the document is at ``v``, not at the
    expected version (another writer moved it; re-decide and retry). ``missing``: no
    such document."""

    status: Literal["ok", "duplicate", "conflict", "missing"]
    v: int
    position: int = 0
    ts: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    doc_id: str
    v: int
    schema: int
    state: bytes


@dataclass(frozen=True, slots=True)
class DocumentRow:
    id: str
    title: str
    owner: str
    v: int
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Member:
    user: str
    role: Role


@dataclass(frozen=True, slots=True)
class NamedVersion:
    name: str
    v: int
    ts: int
    actor: str


@dataclass(frozen=True, slots=True)
class Asset:
    sha256: str
    content_type: str
    data: bytes


class EventStore(Protocol):
    """Per-document streams, their members and everything that hangs off them."""

    async def create_document(
        self, doc_id: str, owner: str, title: str, event: NewEvent
    ) -> StoredEvent:
        """Create the document with its owner and its ``doc.create`` event at v = 1.
        Raises ``Conflict`` when the id is taken."""
        ...

    async def get_document(self, doc_id: str) -> DocumentRow | None: ...

    async def get_role(self, doc_id: str, user: str) -> Role | None: ...

    async def set_member(self, doc_id: str, user: str, role: Role) -> None: ...

    async def remove_member(self, doc_id: str, user: str) -> bool: ...

    async def list_members(self, doc_id: str) -> list[Member]: ...

    async def append(self, batch: Sequence[AppendRequest]) -> list[AppendResult]:
        """Group commit: every request in one transaction, results in request order.
        A request whose document is not at its expected version (or one chained after
        it in the same batch) fails alone with ``conflict``; the others commit.
        Raises ``Unavailable`` when nothing could be committed."""
        ...

    async def append_exclusive(
        self,
        doc_id: str,
        after_v: int,
        build: Callable[[list[StoredEvent]], Sequence[AppendRequest]],
    ) -> list[AppendResult]:
        """Lock the document, give ``build`` the events after ``after_v``, and append the
        requests it returns (a chain of this document, possibly none) in the same
        transaction (no one can overtake them); results in request order. Exceptions
        from ``build`` roll back and propagate. Raises ``NotFound`` when the document
        does not exist."""
        ...

    async def find_op(self, doc_id: str, actor: str, op_id: str) -> int | None:
        """The version at which this client op id was stored, if it was (I3)."""
        ...

    async def read_stream(
        self, doc_id: str, after_v: int = 0, limit: int | None = None
    ) -> list[StoredEvent]: ...

    async def latest_snapshot(self, doc_id: str, schema: int) -> Snapshot | None: ...

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...

    async def add_version(self, doc_id: str, name: str, v: int, actor: str) -> NamedVersion: ...

    async def list_versions(self, doc_id: str) -> list[NamedVersion]: ...

    async def put_asset(self, sha256: str, content_type: str, data: bytes) -> bool:
        """Store the bytes under their hash; False when they were there already."""
        ...

    async def get_asset(self, sha256: str) -> Asset | None: ...

    async def asset_exists(self, sha256: str) -> bool: ...


class EventLog(Protocol):
    """The global log in commit order (DESIGN.md, "Global order")."""

    async def head(self) -> int: ...

    async def epoch(self) -> int: ...

    async def read_log(self, after_position: int, limit: int) -> list[StoredEvent]: ...
