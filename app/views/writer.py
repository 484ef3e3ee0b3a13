"""Write one batch of projected rows and move the checkpoints, in one transaction.

Why one transaction: a view's checkpoint says "every event of the shard up to here
is in the view" (DESIGN.md I5). Writing the rows and the checkpoint together means
a crash never applies an event twice or skips one. The checkpoint write is a
compare-and-set on ``(position, fencing, status = 'running')``: a worker that lost its
lease (its fencing was bumped by a takeover) or whose shard was paused writes
nothing, even if it has not noticed yet (EVENTSTORE.md 1.3).

    apply_batch(conn, claims=..., to_position=..., docs=...)  one batch, one transaction
    catch_up(pool)                                             every running shard to the head,
                                                               no lease (tests and tools)

Every statement takes whole arrays (``unnest``), so a batch costs a fixed number of
round trips whatever its size (plus one per state of 64 KiB or more, which goes with
scalar parameters: cheaper for PostgreSQL than an element of a ``bytea[]``): the
views are locked, the checkpoints compared and set (first: a lost claim then costs
no view writes, and the row locks it takes serialize two writers of the same shard),
then one statement per view and one ``pg_notify`` naming the batch's documents
(``{"docs": [...]}``; ``''``, "everyone", when the list is too long for a
notification; none for a batch that only moves checkpoints).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg
import orjson

from app.store.ports import StoredEvent
from app.views.loading import load_documents, read_events
from app.views.project import DocRows, fold
from app.views.schema import VIEWS, View, view
from app.views.shards import shard_of

__all__ = [
    "NOTIFY_CHANNEL",
    "Claim",
    "ClaimGroup",
    "apply_batch",
    "catch_up",
    "events_to_apply",
    "group_claims",
    "notify_payload",
]

# The gateway's min_v / min_position waiters LISTEN here; the notification is
# delivered when the batch commits, never before.
NOTIFY_CHANNEL: Final = "atelier_read"
_NOTIFY_MAX: Final = 7900


@dataclass(frozen=True, slots=True)
class Claim:
    """What the writer believes a shard's checkpoint row holds: the CAS's ``from``."""

    position: int
    fencing: int


@dataclass(frozen=True, slots=True)
class ClaimGroup:
    """Views whose checkpoints agree shard by shard: one ``apply_batch`` serves them."""

    views: tuple[View, ...]
    claims: dict[int, Claim]


class _LostClaim(Exception):
    """Raised inside the transaction to roll it back."""


_CAS: Final = (
    "UPDATE read.checkpoints AS c SET position = $1, heartbeat_at = now(), updated_at = now()"
    " FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[])"
    " AS x(view, shard, position, fencing)"
    " WHERE c.view = x.view AND c.shard = x.shard AND c.position = x.position"
    " AND c.fencing = x.fencing AND c.status = 'running'"
)
_DOC_STATE: Final = (
    "INSERT INTO read.doc_state (doc_id, v, state, updated_at)"
    " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bigint[])"
    " ON CONFLICT (doc_id) DO UPDATE SET v = EXCLUDED.v, state = EXCLUDED.state,"
    " updated_at = EXCLUDED.updated_at WHERE read.doc_state.v < EXCLUDED.v"
)
# The owner is the creator, set once: a batch without doc.create passes NULL. NOT
# NULL is checked before ON CONFLICT is, so a NULL takes the row's current owner (one
# index probe in the server); a document without a row and without its create is a
# broken stream and fails the batch.
_CATALOG: Final = (
    "INSERT INTO read.catalog (doc_id, title, owner, v, layers, elements, updated_at)"
    " SELECT x.doc_id, x.title,"
    " coalesce(x.owner, (SELECT c.owner FROM read.catalog AS c WHERE c.doc_id = x.doc_id)),"
    " x.v, x.layers, x.elements, x.updated_at"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[],"
    " $6::int[], $7::bigint[]) AS x(doc_id, title, owner, v, layers, elements, updated_at)"
    " ON CONFLICT (doc_id) DO UPDATE SET title = EXCLUDED.title, v = EXCLUDED.v,"
    " layers = EXCLUDED.layers, elements = EXCLUDED.elements,"
    " updated_at = EXCLUDED.updated_at WHERE read.catalog.v < EXCLUDED.v"
)
_ACTIVITY: Final = (
    "INSERT INTO read.activity (doc_id, v, actor, kind, ts)"
    " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])"
    " ON CONFLICT DO NOTHING"
)
_HISTORY: Final = (
    "INSERT INTO read.history (doc_id, v, state)"
    " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[]) ON CONFLICT DO NOTHING"
)
# A large state goes in a statement of its own, with scalar parameters: through
# unnest, PostgreSQL builds the bytea[] and copies each element out of it again, which
# cost 5 ms of 21 for a 3 MB state (docs/readside.md, "Workers"); small ones share one
# array statement, one round trip for the lot.
_LARGE_STATE: Final = 64 * 1024
_DOC_STATE_ONE: Final = (
    "INSERT INTO read.doc_state (doc_id, v, state, updated_at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (doc_id) DO UPDATE SET v = EXCLUDED.v, state = EXCLUDED.state,"
    " updated_at = EXCLUDED.updated_at WHERE read.doc_state.v < EXCLUDED.v"
)
_HISTORY_ONE: Final = (
    "INSERT INTO read.history (doc_id, v, state) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
)
_CHECKPOINTS: Final = (
    "SELECT view, shard, position, fencing FROM read.checkpoints WHERE status = 'running'"
)


async def apply_batch(
    conn: asyncpg.Connection,
    *,
    claims: Mapping[int, Claim],
    to_position: int,
    docs: Mapping[str, DocRows],
    views: Sequence[View] = VIEWS,
) -> bool:
    """Write ``docs`` into ``views`` and move every ``(view, shard)`` checkpoint of
    ``claims`` from its claim to ``to_position``, all or nothing. False (and nothing
    written) when any checkpoint is not as claimed: the lease was lost, the shard was
    paused, or someone else moved it. ``docs`` must hold only documents of claimed
    shards, each folded from the events after its shard's claim."""
    if not claims or not views:
        return True
    for shard, claim in claims.items():
        if to_position < claim.position:
            raise ValueError(f"shard {shard}: to_position {to_position} < {claim.position}")
    try:
        async with conn.transaction():
            # ROW EXCLUSIVE on every view first, in VIEWS order: a rebuild switches a
            # view's generation under ACCESS EXCLUSIVE, and locks taken midway through
            # the batch could deadlock with it.
            ordered = [name for name in VIEWS if name in views]
            await conn.execute(
                f"LOCK TABLE {', '.join(view(name) for name in ordered)} IN ROW EXCLUSIVE MODE"
            )
            await _compare_and_set(conn, claims, to_position, ordered)
            await _write_rows(conn, docs, ordered)
            if docs:  # a batch that only moves checkpoints changes no view row
                await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, notify_payload(docs))
    except _LostClaim:
        return False
    return True


def notify_payload(docs: Iterable[str]) -> str:
    """``{"docs": [...]}``, so the gateway wakes only those documents' waiters; ``''``
    (wake every waiter) when there are none or the list would not fit a notification
    (PostgreSQL's limit is 8000 bytes)."""
    ids = sorted(docs)
    if not ids:
        return ""
    payload = orjson.dumps({"docs": ids})
    return payload.decode() if len(payload) <= _NOTIFY_MAX else ""


async def _compare_and_set(
    conn: asyncpg.Connection, claims: Mapping[int, Claim], to_position: int, views: list[View]
) -> None:
    # Sorted by (view, shard): every writer takes the row locks in the same order.
    keys = sorted((name, shard) for name in views for shard in claims)
    status = await conn.execute(
        _CAS,
        to_position,
        [name for name, _ in keys],
        [shard for _, shard in keys],
        [claims[shard].position for _, shard in keys],
        [claims[shard].fencing for _, shard in keys],
    )
    if int(status.rsplit(" ", 1)[-1]) != len(keys):
        raise _LostClaim


async def _write_rows(
    conn: asyncpg.Connection, docs: Mapping[str, DocRows], views: list[View]
) -> None:
    if not docs:
        return
    ids = sorted(docs)  # one order for every writer's row locks
    rows = [docs[doc_id] for doc_id in ids]
    if "doc_state" in views:
        await _write_states(conn, ids, rows)
    if "catalog" in views:
        await conn.execute(
            _CATALOG,
            ids,
            [r.doc.title for r in rows],
            [r.owner for r in rows],
            [r.doc.v for r in rows],
            [r.layers for r in rows],
            [r.elements for r in rows],
            [r.updated_at for r in rows],
        )
    if "activity" in views:
        activity = [(doc_id, a) for doc_id, r in zip(ids, rows, strict=True) for a in r.activity]
        if activity:
            await conn.execute(
                _ACTIVITY,
                [doc_id for doc_id, _ in activity],
                [a.v for _, a in activity],
                [a.actor for _, a in activity],
                [a.kind for _, a in activity],
                [a.ts for _, a in activity],
            )
    if "history" in views:
        await _write_history(conn, ids, rows)


async def _write_states(conn: asyncpg.Connection, ids: list[str], rows: list[DocRows]) -> None:
    small = [(doc_id, r) for doc_id, r in zip(ids, rows, strict=True) if not _large(r.state)]
    for doc_id, r in zip(ids, rows, strict=True):
        if _large(r.state):
            await conn.execute(_DOC_STATE_ONE, doc_id, r.doc.v, r.state, r.updated_at)
    if small:
        await conn.execute(
            _DOC_STATE,
            [doc_id for doc_id, _ in small],
            [r.doc.v for _, r in small],
            [r.state for _, r in small],
            [r.updated_at for _, r in small],
        )


async def _write_history(conn: asyncpg.Connection, ids: list[str], rows: list[DocRows]) -> None:
    small: list[tuple[str, int, bytes]] = []
    for doc_id, r in zip(ids, rows, strict=True):
        for v, state in r.history:
            if _large(state):
                await conn.execute(_HISTORY_ONE, doc_id, v, state)
            else:
                small.append((doc_id, v, state))
    if small:
        await conn.execute(
            _HISTORY,
            [doc_id for doc_id, _, _ in small],
            [v for _, v, _ in small],
            [state for _, _, state in small],
        )


def _large(state: bytes) -> bool:
    return len(state) >= _LARGE_STATE


def group_claims(rows: Mapping[tuple[View, int], Claim]) -> list[ClaimGroup]:
    """Split ``(view, shard) -> claim`` into groups of views that agree on every shard's
    claim. Normally one group holds every view; a view whose checkpoints differ (a
    rebuild caught up, one view paused) gets its own ``apply_batch``."""
    by_view: dict[View, dict[int, Claim]] = defaultdict(dict)
    for (name, shard), claim in rows.items():
        by_view[name][shard] = claim
    groups: dict[tuple[tuple[int, Claim], ...], list[View]] = defaultdict(list)
    for name in VIEWS:
        if name in by_view:
            groups[tuple(sorted(by_view[name].items(), key=lambda item: item[0]))].append(name)
    return [ClaimGroup(tuple(names), dict(key)) for key, names in groups.items()]


def events_to_apply(
    events: Sequence[StoredEvent], claims: Mapping[int, Claim], shards: int
) -> dict[str, list[StoredEvent]]:
    """Each document's events of ``events`` that its shard's claim has not applied yet
    (shards not in ``claims`` are someone else's), in version order."""
    per_doc: dict[str, list[StoredEvent]] = defaultdict(list)
    shard_cache: dict[str, int] = {}
    for event in events:
        shard = shard_cache.get(event.doc_id)
        if shard is None:
            shard = shard_cache[event.doc_id] = shard_of(event.doc_id, shards)
        claim = claims.get(shard)
        if claim is not None and event.position > claim.position:
            per_doc[event.doc_id].append(event)
    return per_doc


async def catch_up(pool: asyncpg.Pool, *, batch: int = 2000) -> int:
    """Bring every running shard of every view up to the log's head, without a lease;
    returns how many events were applied. Each step compares and sets with whatever
    fencing each checkpoint has now, so it never overwrites a worker's progress (a
    lost race just means reading the checkpoints again). Raises when an event cannot
    be applied (the worker dead-letters those; a tool should stop)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    applied = 0
    async with pool.acquire() as conn:
        shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
        while True:
            rows = await conn.fetch(_CHECKPOINTS)
            head = int(await conn.fetchval("SELECT last_position FROM log_head"))
            claims = {
                (row["view"], int(row["shard"])): Claim(int(row["position"]), int(row["fencing"]))
                for row in rows
            }
            behind = [claim.position for claim in claims.values() if claim.position < head]
            if not behind:
                return applied
            events = await read_events(conn, min(behind), batch)
            if not events:
                return applied
            to_position = events[-1].position
            positions: set[int] = set()
            for group in group_claims(claims):
                moving = {s: c for s, c in group.claims.items() if c.position < to_position}
                per_doc = events_to_apply(events, moving, shards)
                starts = {doc_id: evs[0].v for doc_id, evs in per_doc.items()}
                docs = await load_documents(conn, starts)
                folded = {doc_id: fold(docs[doc_id], evs) for doc_id, evs in per_doc.items()}
                if await apply_batch(
                    conn, claims=moving, to_position=to_position, docs=folded, views=group.views
                ):
                    positions.update(e.position for evs in per_doc.values() for e in evs)
            applied += len(positions)
