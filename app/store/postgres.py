"""``PostgresStore``: the ports of ``app.store.ports`` over an asyncpg pool.

The write path lives in ``append.py`` (one function call per group commit), assets in
``assets.py``; this module holds the reads and the small writes around them. Every
method maps driver and network failures to ``Unavailable`` (``_errors.py``) and
returns records, never rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, cast, get_args

import asyncpg

from app.errors import Invalid, NotFound
from app.store import append as _append
from app.store import assets as _assets
from app.store._errors import translate_errors
from app.store._rows import EVENT_COLUMNS, to_event
from app.store.ports import (
    AppendRequest,
    AppendResult,
    Asset,
    DocumentRow,
    EventLog,
    EventStore,
    Member,
    NamedVersion,
    NewEvent,
    Role,
    Snapshot,
    StoredEvent,
)

__all__ = ["PostgresStore"]

_ROLES: Final = frozenset(get_args(Role))
# Snapshots kept per document: the newest, and one to fall back on while a newer one
# is being written or if the newest turns out unreadable.
SNAPSHOTS_KEPT: Final = 2


class PostgresStore:
    """The event store (``EventStore``) and the global log (``EventLog``) in PostgreSQL.

    The pool is owned by the caller (created in a lifespan with ``create_pool``).
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    # -- documents and members -------------------------------------------------------

    async def create_document(
        self, doc_id: str, owner: str, title: str, event: NewEvent
    ) -> StoredEvent:
        return await _append.create_document(self._pool, doc_id, owner, title, event)

    async def get_document(self, doc_id: str) -> DocumentRow | None:
        with translate_errors("get_document"):
            row = await self._pool.fetchrow(
                "SELECT id, title, owner, v, atelier_ms(created_at) AS created_at,"
                " atelier_ms(updated_at) AS updated_at FROM documents WHERE id = $1",
                doc_id,
            )
        if row is None:
            return None
        return DocumentRow(
            id=row["id"],
            title=row["title"],
            owner=row["owner"],
            v=row["v"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    async def get_role(self, doc_id: str, user: str) -> Role | None:
        with translate_errors("get_role"):
            role = await self._pool.fetchval(
                "SELECT role FROM members WHERE doc_id = $1 AND user_id = $2", doc_id, user
            )
        return _role(role) if role is not None else None

    async def set_member(self, doc_id: str, user: str, role: Role) -> None:
        """Add the member or change its role. Raises ``NotFound`` for a missing document."""
        if role not in _ROLES:
            raise Invalid(f"role must be one of {sorted(_ROLES)}, got {role!r}")
        with translate_errors("set_member"):
            try:
                await self._pool.execute(
                    "INSERT INTO members (doc_id, user_id, role) VALUES ($1, $2, $3)"
                    " ON CONFLICT (doc_id, user_id) DO UPDATE SET role = EXCLUDED.role",
                    doc_id,
                    user,
                    role,
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(f"no document {doc_id!r}") from None

    async def remove_member(self, doc_id: str, user: str) -> bool:
        with translate_errors("remove_member"):
            removed = await self._pool.fetchval(
                "DELETE FROM members WHERE doc_id = $1 AND user_id = $2 RETURNING true",
                doc_id,
                user,
            )
        return removed is not None

    async def list_members(self, doc_id: str) -> list[Member]:
        """The owner first, then the others by user id."""
        with translate_errors("list_members"):
            rows = await self._pool.fetch(
                "SELECT user_id, role FROM members WHERE doc_id = $1"
                " ORDER BY role <> 'owner', user_id",
                doc_id,
            )
        return [Member(user=row["user_id"], role=_role(row["role"])) for row in rows]

    # -- events ----------------------------------------------------------------------

    async def append(self, batch: Sequence[AppendRequest]) -> list[AppendResult]:
        return await _append.append_batch(self._pool, batch)

    async def append_exclusive(
        self,
        doc_id: str,
        after_v: int,
        build: Callable[[list[StoredEvent]], Sequence[AppendRequest]],
    ) -> list[AppendResult]:
        return await _append.append_exclusive(self._pool, doc_id, after_v, build)

    async def find_op(self, doc_id: str, actor: str, op_id: str) -> int | None:
        with translate_errors("find_op"):
            v = await self._pool.fetchval(
                "SELECT v FROM op_ledger WHERE doc_id = $1 AND user_id = $2 AND op_id = $3",
                doc_id,
                actor,
                op_id,
            )
        return int(v) if v is not None else None

    async def read_stream(
        self, doc_id: str, after_v: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """Events of one document with version > ``after_v``, in version order."""
        with translate_errors("read_stream"):
            rows = await self._pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE doc_id = $1 AND v > $2"
                " ORDER BY v LIMIT $3",
                doc_id,
                after_v,
                limit,  # LIMIT NULL is no limit
            )
        return [to_event(row) for row in rows]

    # -- snapshots -------------------------------------------------------------------

    async def latest_snapshot(self, doc_id: str, schema: int) -> Snapshot | None:
        """The newest snapshot written in state format ``schema``; others are ignored."""
        with translate_errors("latest_snapshot"):
            row = await self._pool.fetchrow(
                "SELECT v, state FROM snapshots WHERE doc_id = $1 AND schema = $2"
                " ORDER BY v DESC LIMIT 1",
                doc_id,
                schema,
            )
        if row is None:
            return None
        return Snapshot(doc_id=doc_id, v=row["v"], schema=schema, state=row["state"])

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store the snapshot (replacing one at the same version) and keep only the
        newest ``SNAPSHOTS_KEPT`` of the document. A snapshot beyond the document's
        version would be a state no event produced: ``Invalid``."""
        with translate_errors("save_snapshot"):
            async with self._pool.acquire() as conn, conn.transaction():
                doc_v = await conn.fetchval(
                    "SELECT v FROM documents WHERE id = $1", snapshot.doc_id
                )
                if doc_v is None:
                    raise NotFound(f"no document {snapshot.doc_id!r}")
                if not 1 <= snapshot.v <= doc_v:
                    raise Invalid(
                        f"snapshot version {snapshot.v} outside 1..{doc_v} of {snapshot.doc_id!r}"
                    )
                await conn.execute(
                    "INSERT INTO snapshots (doc_id, v, schema, state) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (doc_id, v) DO UPDATE"
                    " SET schema = EXCLUDED.schema, state = EXCLUDED.state, created_at = now()",
                    snapshot.doc_id,
                    snapshot.v,
                    snapshot.schema,
                    snapshot.state,
                )
                await conn.execute(
                    "DELETE FROM snapshots WHERE doc_id = $1 AND v NOT IN"
                    " (SELECT v FROM snapshots WHERE doc_id = $1 ORDER BY v DESC LIMIT $2)",
                    snapshot.doc_id,
                    SNAPSHOTS_KEPT,
                )

    # -- named versions --------------------------------------------------------------

    async def add_version(self, doc_id: str, name: str, v: int, actor: str) -> NamedVersion:
        """Name version ``v`` (1 .. the document's version). Names may repeat."""
        with translate_errors("add_version"):
            row = await self._pool.fetchrow(
                "INSERT INTO named_versions (doc_id, name, v, actor)"
                " SELECT id, $2, $3::bigint, $4 FROM documents"
                " WHERE id = $1 AND $3::bigint BETWEEN 1 AND v"
                " RETURNING name, v, atelier_ms(ts) AS ts, actor",
                doc_id,
                name,
                v,
                actor,
            )
            if row is None:
                doc_v = await self._pool.fetchval("SELECT v FROM documents WHERE id = $1", doc_id)
                if doc_v is None:
                    raise NotFound(f"no document {doc_id!r}")
                raise Invalid(f"version {v} outside 1..{doc_v} of {doc_id!r}")
        return NamedVersion(name=row["name"], v=row["v"], ts=row["ts"], actor=row["actor"])

    async def list_versions(self, doc_id: str) -> list[NamedVersion]:
        """Named versions, oldest version first (in naming order for one version)."""
        with translate_errors("list_versions"):
            rows = await self._pool.fetch(
                "SELECT name, v, atelier_ms(ts) AS ts, actor FROM named_versions"
                " WHERE doc_id = $1 ORDER BY v, id",
                doc_id,
            )
        return [
            NamedVersion(name=row["name"], v=row["v"], ts=row["ts"], actor=row["actor"])
            for row in rows
        ]

    # -- assets ----------------------------------------------------------------------

    async def put_asset(self, sha256: str, content_type: str, data: bytes) -> bool:
        return await _assets.put_asset(self._pool, sha256, content_type, data)

    async def get_asset(self, sha256: str) -> Asset | None:
        return await _assets.get_asset(self._pool, sha256)

    async def asset_exists(self, sha256: str) -> bool:
        return await _assets.asset_exists(self._pool, sha256)

    # -- the global log (EventLog) ---------------------------------------------------

    async def head(self) -> int:
        """The last position handed out by a committed append (0 for an empty log)."""
        with translate_errors("head"):
            return int(await self._pool.fetchval("SELECT last_position FROM log_head"))

    async def epoch(self) -> int:
        """The store's epoch; a change voids every cursor (DESIGN.md, "Global order")."""
        with translate_errors("epoch"):
            return int(await self._pool.fetchval("SELECT epoch FROM store_meta"))

    async def read_log(self, after_position: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events with position > ``after_position``, in position order.

        Positions are dense and committed in order, so the result is always the
        contiguous range after ``after_position`` (``follow.py`` asserts it)."""
        with translate_errors("read_log"):
            rows = await self._pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1"
                " ORDER BY position LIMIT $2",
                after_position,
                limit,
            )
        return [to_event(row) for row in rows]


def _role(value: str) -> Role:
    if value not in _ROLES:  # the CHECK constraint on members.role makes this a bug
        raise ValueError(f"unknown role {value!r} in members")
    return cast(Role, value)


def _check_ports(store: PostgresStore) -> tuple[EventStore, EventLog]:
    # mypy checks here that PostgresStore satisfies both Protocols.
    return store, store
