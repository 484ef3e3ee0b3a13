"""``ReadViews``: the queries' SQL over the read schema (docs/readside.md, "Queries").

Every query reads through the views ``read.<name>`` (never a generation's table), so
a blue-green rebuild switches what it serves without the gateway noticing. The one
join with the write side is the catalog's with ``members``: membership is not
event-sourced, and it is the truth of who may read what (DESIGN.md I8), so a member
removed a moment ago never sees the document listed, whatever the views say.

State bytes leave here as they are stored (``bytes``), never parsed: the gateway
splices them into its answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from app.store._errors import translate_errors
from app.views.project import Activity

__all__ = ["CatalogEntry", "ReadViews", "StateRow"]

_CATALOG_FIRST: Final = (
    "SELECT c.doc_id, c.title, c.owner, c.v, m.role, c.layers, c.elements, c.updated_at"
    " FROM members AS m JOIN read.catalog AS c ON c.doc_id = m.doc_id"
    " WHERE m.user_id = $1"
    " ORDER BY c.updated_at DESC, c.doc_id LIMIT $2"
)
# Keyset: strictly after (updated_at, doc_id) in the order "updated_at desc, doc_id asc".
_CATALOG_AFTER: Final = (
    "SELECT c.doc_id, c.title, c.owner, c.v, m.role, c.layers, c.elements, c.updated_at"
    " FROM members AS m JOIN read.catalog AS c ON c.doc_id = m.doc_id"
    " WHERE m.user_id = $1"
    " AND (c.updated_at < $3 OR (c.updated_at = $3 AND c.doc_id > $4))"
    " ORDER BY c.updated_at DESC, c.doc_id LIMIT $2"
)
# The best start for replaying up to $2: the newest history row at or below it, or the
# current state when that is at or below it (the view may be past the last history row).
_BASE: Final = (
    "SELECT v, state FROM ("
    " (SELECT v, state FROM read.history WHERE doc_id = $1 AND v <= $2 ORDER BY v DESC LIMIT 1)"
    " UNION ALL"
    " (SELECT v, state FROM read.doc_state WHERE doc_id = $1 AND v <= $2)"
    ") AS b ORDER BY v DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One summary of PROTOCOL.md section 5, with the caller's role."""

    id: str
    title: str
    v: int
    owner: str
    role: str
    layers: int
    elements: int
    updated_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "v": self.v,
            "owner": self.owner,
            "role": self.role,
            "layers": self.layers,
            "elements": self.elements,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class StateRow:
    """A document's state at ``v``: the stored JSON bytes of PROTOCOL.md section 2."""

    v: int
    state: bytes


class ReadViews:
    """The read side's queries over an asyncpg pool owned by the caller. Driver
    failures become ``Unavailable`` (503), as on the write side."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def catalog(
        self, user: str, limit: int, after: tuple[int, str] | None = None
    ) -> list[CatalogEntry]:
        """The documents ``user`` is a member of, most recently edited first, up to
        ``limit``, strictly after the ``(updated_at, doc_id)`` key ``after``."""
        with translate_errors("catalog"):
            if after is None:
                rows = await self._pool.fetch(_CATALOG_FIRST, user, limit)
            else:
                rows = await self._pool.fetch(_CATALOG_AFTER, user, limit, after[0], after[1])
        return [
            CatalogEntry(
                id=r["doc_id"],
                title=r["title"],
                v=r["v"],
                owner=r["owner"],
                role=r["role"],
                layers=r["layers"],
                elements=r["elements"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]

    async def state(self, doc_id: str) -> StateRow | None:
        """The view's current state of the document; None before the view has it."""
        with translate_errors("doc_state"):
            row = await self._pool.fetchrow(
                "SELECT v, state FROM read.doc_state WHERE doc_id = $1", doc_id
            )
        return None if row is None else StateRow(row["v"], row["state"])

    async def state_at_least(self, doc_id: str, v: int) -> StateRow | None:
        """The view's state when it has reached ``v``, else None (no bytes read then)."""
        with translate_errors("doc_state"):
            row = await self._pool.fetchrow(
                "SELECT v, state FROM read.doc_state WHERE doc_id = $1 AND v >= $2", doc_id, v
            )
        return None if row is None else StateRow(row["v"], row["state"])

    async def version(self, doc_id: str) -> int | None:
        """The version the view has reached for the document (no state bytes read)."""
        with translate_errors("doc_state_v"):
            v = await self._pool.fetchval("SELECT v FROM read.doc_state WHERE doc_id = $1", doc_id)
        return None if v is None else int(v)

    async def base(self, doc_id: str, v: int) -> StateRow | None:
        """The stored state closest at or below ``v`` (a history row or the current
        state), to replay from; None when the views hold none (replay from v = 0)."""
        with translate_errors("history"):
            row = await self._pool.fetchrow(_BASE, doc_id, v)
        return None if row is None else StateRow(row["v"], row["state"])

    async def activity(self, doc_id: str, limit: int) -> list[Activity]:
        """The document's newest ``limit`` events, newest first."""
        with translate_errors("activity"):
            rows = await self._pool.fetch(
                "SELECT v, actor, kind, ts FROM read.activity WHERE doc_id = $1"
                " ORDER BY v DESC LIMIT $2",
                doc_id,
                limit,
            )
        return [Activity(r["v"], r["actor"], r["kind"], r["ts"]) for r in rows]
