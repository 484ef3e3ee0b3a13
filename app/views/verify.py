"""Replay every stream and check the invariants the read side rests on (DESIGN.md).

- **I2**: each document's versions are 1..n without a gap, ``documents.v == n``, and
  its positions grow with its versions; positions are dense 1..head and ``log_head``
  is the greatest.
- **I5**: each view equals the fold (``project.fold``, what workers and rebuilds run)
  of its events up to its checkpoint: for a document of shard ``s``, its events at or
  below ``checkpoint(view, s)``. No view holds rows of a document without events.
- **I6**: replaying the stored ops and effects through the write model
  (``evolve``, undo histories included) gives the state the read fold gives, and every
  stored snapshot of the current ``MODEL_SCHEMA`` equals the replay at its version.

Everything is read in one REPEATABLE READ transaction, so workers may run meanwhile:
they write a view's rows and its checkpoint in one transaction, and one snapshot sees
both or neither. Documents are checked a group at a time (by event count), so memory
holds one group's events and rows, not the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import orjson

from app.domain import MODEL_SCHEMA, Document, WriteModel, evolve, model_to_json
from app.store._rows import EVENT_COLUMNS, to_event
from app.store.ports import StoredEvent
from app.views.project import DocRows, encode_state, fold
from app.views.rebuild import Bars, doc_rows, stream_rows
from app.views.schema import VIEWS, View, view
from app.views.shards import shard_of

__all__ = ["Check", "Report", "verify"]

GROUP_EVENTS: Final = 20_000  # events read per group of documents
_PER_DOC: Final[tuple[View, ...]] = ("doc_state", "catalog")

_STREAMS: Final = (
    "SELECT coalesce(e.doc_id, d.id) AS doc_id, coalesce(e.n, 0) AS n, e.min_v, e.max_v,"
    " e.inversions, e.last, d.v AS doc_v, d.last_position AS doc_last"
    " FROM (SELECT doc_id, count(*) AS n, min(v) AS min_v, max(v) AS max_v,"
    "       max(position) AS last,"
    "       count(*) FILTER (WHERE prev_position > position) AS inversions"
    "       FROM (SELECT doc_id, v, position,"
    "             lag(position) OVER (PARTITION BY doc_id ORDER BY v) AS prev_position"
    "             FROM events {where}) AS w"
    "       GROUP BY doc_id) AS e"
    " FULL JOIN (SELECT id, v, last_position FROM documents {dwhere}) AS d ON d.id = e.doc_id"
    " ORDER BY 1"
)
_LOG: Final = (
    "SELECT (SELECT last_position FROM log_head) AS head, count(*) AS n,"
    " coalesce(min(position), 0) AS first, coalesce(max(position), 0) AS last FROM events"
)
_AHEAD: Final = (
    "SELECT view, shard, position FROM read.checkpoints WHERE position > $1"
    " ORDER BY view, shard LIMIT $2"
)
# Positions are unique by construction (log_head hands each out once), not by a
# constraint: events is partitioned by doc_id, and a unique index must contain it
# (migration 0006). This finds any position held by two events; surplus is the number
# of events beyond one per position.
_SHARED: Final = (
    "SELECT position, count(*) AS n, sum(count(*) - 1) OVER () AS surplus FROM events"
    " GROUP BY position HAVING count(*) > 1 ORDER BY position LIMIT $1"
)
_HOLES: Final = (
    "SELECT p FROM generate_series(1, $1::bigint) AS p"
    " WHERE NOT EXISTS (SELECT FROM events WHERE position = p) LIMIT $2"
)
_EVENTS: Final = f"SELECT {EVENT_COLUMNS} FROM events WHERE doc_id = ANY($1) ORDER BY doc_id, v"
_ORPHANS: Final = (
    "SELECT DISTINCT r.doc_id FROM {v} AS r"
    " WHERE NOT EXISTS (SELECT FROM events AS e WHERE e.doc_id = r.doc_id) {extra}"
    " ORDER BY 1 LIMIT $1"
)
_ROWS: Final[dict[View, str]] = {
    "doc_state": "SELECT doc_id, v, state, updated_at FROM read.doc_state WHERE doc_id = ANY($1)",
    "catalog": (
        "SELECT doc_id, title, owner, v, layers, elements, updated_at FROM read.catalog"
        " WHERE doc_id = ANY($1)"
    ),
    "activity": (
        "SELECT doc_id, v, actor, kind, ts FROM read.activity WHERE doc_id = ANY($1)"
        " ORDER BY doc_id, v"
    ),
    "history": (
        "SELECT doc_id, v, state FROM read.history WHERE doc_id = ANY($1) ORDER BY doc_id, v"
    ),
}
_SNAPSHOTS: Final = (
    "SELECT doc_id, v, schema, state FROM snapshots WHERE doc_id = ANY($1) ORDER BY doc_id, v"
)


@dataclass(slots=True)
class Check:
    """One line of the report: what was checked and the differences found (the first
    ``limit`` of them described)."""

    name: str
    what: str
    limit: int
    checked: int = 0
    unit: str = "documents"
    differences: int = 0
    details: list[str] = field(default_factory=list)
    note: str = ""

    def differ(self, detail: str) -> None:
        self.differences += 1
        if len(self.details) < self.limit:
            self.details.append(detail)

    @property
    def ok(self) -> bool:
        return self.differences == 0

    def lines(self) -> list[str]:
        head = f"{self.name} {self.what}"
        if self.ok:
            status = f"OK ({self.checked:,} {self.unit}{'; ' + self.note if self.note else ''})"
        else:
            status = f"{self.differences:,} difference{'s' if self.differences != 1 else ''}"
        lines = [f"{head} {'.' * max(3, 72 - len(head))} {status}"]
        lines += [f"    - {detail}" for detail in self.details]
        if self.differences > len(self.details):
            lines.append(f"    ... and {self.differences - len(self.details):,} more")
        return lines


@dataclass(slots=True)
class Report:
    checks: list[Check]
    documents: int = 0
    events: int = 0

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def lines(self) -> list[str]:
        out = [line for check in self.checks for line in check.lines()]
        bad = [check for check in self.checks if not check.ok]
        total = sum(check.differences for check in bad)
        scope = f"{self.documents:,} documents, {self.events:,} events"
        if bad:
            out.append(
                f"verify: {total:,} difference{'s' if total != 1 else ''} in {len(bad)}"
                f" check{'s' if len(bad) != 1 else ''} ({scope})"
            )
        else:
            out.append(f"verify: OK ({scope})")
        return out


@dataclass(slots=True)
class _Checks:
    streams: Check
    log: Check
    views: dict[View, Check]
    replay: Check
    snapshots: Check
    skipped_snapshots: int = 0

    def all(self) -> list[Check]:
        return [self.streams, self.log, *self.views.values(), self.replay, self.snapshots]


def _checks(limit: int) -> _Checks:
    return _Checks(
        streams=Check("I2", "versions 1..n, documents.v == n, positions grow with v", limit),
        log=Check(
            "I2",
            "positions dense 1..head, log_head == max(position), checkpoints <= head",
            limit,
            unit="events",
        ),
        views={
            name: Check("I5", f"{view(name)} == fold up to its checkpoint", limit) for name in VIEWS
        },
        replay=Check("I6", "write-model replay == read fold", limit),
        snapshots=Check(
            "I6", f"snapshots (schema {MODEL_SCHEMA}) == replay at their v", limit, unit="snapshots"
        ),
    )


async def verify(
    pool: asyncpg.Pool,
    *,
    doc: str | None = None,
    limit: int = 10,
    undo_depth: int = 100,
    bars: Bars | None = None,
    group_events: int = GROUP_EVENTS,
) -> Report:
    """Check I2, I5 and I6 over every document (or ``doc`` alone); ``limit``
    differences are described per check."""
    checks = _checks(limit)
    report = Report(checks.all())
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
        cps = await _checkpoints(conn)
        streams = await _stream_stats(conn, doc, checks.streams)
        if doc is None:
            await _check_log(conn, checks.log)
        else:
            checks.log.note = f"not checked for one document ({doc})"
        await _check_orphans(conn, doc, checks, limit)
        bar = bars("verify", len(streams), "doc") if bars else None
        try:
            for group in _groups(streams, group_events):
                events = await _group_events(conn, group)
                rows = {name: await _view_rows(conn, name, group) for name in VIEWS}
                snapshots = await _snapshots(conn, group)
                for doc_id in group:
                    evs = events.get(doc_id, [])
                    report.events += len(evs)
                    cuts = {
                        name: _prefix(evs, cps[name][shard_of(doc_id, shards)]) for name in VIEWS
                    }
                    _check_doc(
                        doc_id, evs, cuts, rows, snapshots.get(doc_id, []), checks, undo_depth
                    )
                if bar is not None:
                    bar.update(len(group))
        finally:
            if bar is not None:
                bar.close()
    report.documents = len(streams)
    if checks.skipped_snapshots:
        checks.snapshots.note = f"{checks.skipped_snapshots:,} of another schema skipped"
    return report


async def _checkpoints(conn: asyncpg.Connection) -> dict[View, list[int]]:
    shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
    out: dict[View, list[int]] = {name: [0] * shards for name in VIEWS}
    for row in await conn.fetch("SELECT view, shard, position FROM read.checkpoints"):
        if row["view"] in out and row["shard"] < shards:
            out[row["view"]][row["shard"]] = int(row["position"])
    return out


async def _stream_stats(conn: asyncpg.Connection, doc: str | None, check: Check) -> dict[str, int]:
    """I2 per document; returns each document's event count (in id order)."""
    where, dwhere, args = (
        ("", "", []) if doc is None else ("WHERE doc_id = $1", "WHERE id = $1", [doc])
    )
    out: dict[str, int] = {}
    for row in await conn.fetch(_STREAMS.format(where=where, dwhere=dwhere), *args):
        doc_id, n = str(row["doc_id"]), int(row["n"])
        out[doc_id] = n
        check.checked += 1
        if row["doc_v"] is None:
            check.differ(f"{doc_id}: {n} events, no row in documents")
        elif n == 0:
            check.differ(f"{doc_id}: documents.v = {row['doc_v']}, no events")
        elif row["min_v"] != 1 or row["max_v"] != n:
            check.differ(
                f"{doc_id}: {n} events with versions {row['min_v']}..{row['max_v']}: not 1..{n}"
            )
        elif row["doc_v"] != n:
            check.differ(f"{doc_id}: documents.v = {row['doc_v']}, {n} events")
        elif row["doc_last"] != row["last"]:
            check.differ(
                f"{doc_id}: documents.last_position = {row['doc_last']},"
                f" its last event is at {row['last']}"
            )
        elif row["inversions"]:
            check.differ(
                f"{doc_id}: {row['inversions']} events at a lower position than the one before"
            )
    if doc is not None and not out:
        check.differ(f"{doc}: no such document (no events, no row in documents)")
    return out


async def _check_log(conn: asyncpg.Connection, check: Check) -> None:
    row = await conn.fetchrow(_LOG)
    head, n, first, last = (int(row[k]) for k in ("head", "n", "first", "last"))
    check.checked = n
    if n and first != 1:
        check.differ(f"the first position is {first}, not 1")
    shared = await conn.fetch(_SHARED, check.limit)
    distinct = n - (int(shared[0]["surplus"]) if shared else 0)
    if shared:
        check.differ(
            f"{n - distinct:,} events at a position another event holds, first at "
            + ", ".join(f"{r['position']} ({r['n']} events)" for r in shared)
        )
    if last != distinct:
        holes = await conn.fetch(_HOLES, last, check.limit)
        check.differ(
            f"{last - distinct:,} holes in 1..{last}, first at "
            + ", ".join(str(r["p"]) for r in holes)
        )
    if head != last:
        check.differ(f"log_head is {head}, the greatest position {last}")
    for row in await conn.fetch(_AHEAD, head, check.limit):
        check.differ(
            f"the checkpoint of {row['view']} shard {row['shard']} is at {row['position']},"
            f" past the head {head}"
        )


async def _check_orphans(
    conn: asyncpg.Connection, doc: str | None, checks: _Checks, limit: int
) -> None:
    """Rows of a view for a document that has no events at all."""
    extra, args = ("", []) if doc is None else ("AND r.doc_id = $2", [doc])
    for name in VIEWS:
        for row in await conn.fetch(_ORPHANS.format(v=view(name), extra=extra), limit, *args):
            checks.views[name].differ(f"{row['doc_id']}: rows in the view, no events")


def _groups(streams: dict[str, int], group_events: int) -> Iterable[list[str]]:
    group: list[str] = []
    size = 0
    for doc_id, n in streams.items():
        if group and size + n > group_events:
            yield group
            group, size = [], 0
        group.append(doc_id)
        size += n
    if group:
        yield group


async def _group_events(conn: asyncpg.Connection, group: list[str]) -> dict[str, list[StoredEvent]]:
    out: dict[str, list[StoredEvent]] = {}
    for row in await conn.fetch(_EVENTS, group):
        event = to_event(row)
        out.setdefault(event.doc_id, []).append(event)
    return out


async def _view_rows(
    conn: asyncpg.Connection, name: View, group: list[str]
) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for row in await conn.fetch(_ROWS[name], group):
        out.setdefault(str(row["doc_id"]), []).append(tuple(row.values()))
    return out


async def _snapshots(
    conn: asyncpg.Connection, group: list[str]
) -> dict[str, list[tuple[int, int, bytes]]]:
    out: dict[str, list[tuple[int, int, bytes]]] = {}
    for row in await conn.fetch(_SNAPSHOTS, group):
        out.setdefault(str(row["doc_id"]), []).append(
            (int(row["v"]), int(row["schema"]), bytes(row["state"]))
        )
    return out


def _prefix(events: Sequence[StoredEvent], checkpoint: int) -> int:
    """How many of the document's events are at or below the checkpoint."""
    n = 0
    while n < len(events) and events[n].position <= checkpoint:
        n += 1
    return n


@dataclass(slots=True)
class _Expected:
    """The fold of a document's first ``n`` events, as each view holds it."""

    n: int
    per_doc: dict[View, tuple[Any, ...]]
    activity: list[tuple[Any, ...]]
    history: list[tuple[Any, ...]]


def _fold_at(
    doc_id: str, events: Sequence[StoredEvent], cuts: Iterable[int]
) -> tuple[dict[int, _Expected], DocRows | None]:
    """The expected rows after the first ``n`` events, for each ``n`` of ``cuts``, and
    the fold of every event (None for a stream without events). Raises ValueError
    from the fold."""
    wanted = sorted({*cuts, len(events)} - {0})
    out: dict[int, _Expected] = {0: _Expected(0, {}, [], [])}
    doc = Document(doc_id)
    owner: str | None = None
    activity: list[tuple[Any, ...]] = []
    history: list[tuple[Any, ...]] = []
    start = 0
    rows: DocRows | None = None
    for n in wanted:
        rows = fold(doc, events[start:n])
        doc, start = rows.doc, n
        owner = owner or rows.owner
        activity += stream_rows("activity", doc_id, rows)
        history += stream_rows("history", doc_id, rows)
        per_doc = {name: doc_rows(name, doc_id, rows, owner) for name in _PER_DOC}
        out[n] = _Expected(n, per_doc, list(activity), list(history))
    return out, rows


def _check_doc(
    doc_id: str,
    events: list[StoredEvent],
    cuts: dict[View, int],
    rows: dict[View, dict[str, list[tuple[Any, ...]]]],
    snapshots: list[tuple[int, int, bytes]],
    checks: _Checks,
    undo_depth: int,
) -> None:
    for name in VIEWS:
        checks.views[name].checked += 1
    checks.replay.checked += 1
    try:
        expected, whole = _fold_at(doc_id, events, cuts.values())
    except ValueError as exc:
        checks.replay.differ(f"{doc_id}: the read fold fails: {exc}")
        return
    for name in VIEWS:
        _compare(doc_id, name, expected[cuts[name]], rows[name].get(doc_id, []), checks.views[name])
    _check_replay(doc_id, events, whole, snapshots, checks, undo_depth)


_FIELDS: Final[dict[View, tuple[str, ...]]] = {
    "doc_state": ("doc_id", "v", "state", "updated_at"),
    "catalog": ("doc_id", "title", "owner", "v", "layers", "elements", "updated_at"),
    "activity": ("doc_id", "v", "actor", "kind", "ts"),
    "history": ("doc_id", "v", "state"),
}


def _compare(
    doc_id: str, name: View, expected: _Expected, actual: list[tuple[Any, ...]], check: Check
) -> None:
    if name in _PER_DOC:
        want = [expected.per_doc[name]] if expected.n else []
    else:
        want = expected.activity if name == "activity" else expected.history
    if actual == want:
        return
    at = f"{doc_id} (fold of v1..v{expected.n})"
    if name in _PER_DOC:
        if not actual:
            check.differ(f"{at}: no row in the view")
        elif not want:
            check.differ(f"{at}: a row in the view, none in the fold")
        else:
            check.differ(f"{at}: {_fields(name, actual[0], want[0])}")
        return
    have = {row[1]: row for row in actual}
    need = {row[1]: row for row in want}
    missing = sorted(set(need) - set(have))
    extra = sorted(set(have) - set(need))
    differing = sorted(v for v in set(need) & set(have) if need[v] != have[v])
    parts = []
    if missing:
        parts.append(f"{len(missing)} rows missing (v {_some(missing)})")
    if extra:
        parts.append(f"{len(extra)} rows not in the fold (v {_some(extra)})")
    if differing:
        v = differing[0]
        parts.append(
            f"{len(differing)} rows differ (v {_some(differing)}; v{v}: "
            f"{_fields(name, have[v], need[v])})"
        )
    check.differ(f"{at}: " + "; ".join(parts))


def _fields(name: View, have: tuple[Any, ...], need: tuple[Any, ...]) -> str:
    out = []
    for label, a, b in zip(_FIELDS[name], have, need, strict=True):
        if a == b:
            continue
        if isinstance(a, bytes) and isinstance(b, bytes):
            first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            at = min(len(a), len(b)) if first is None else first
            out.append(
                f"{label} differs from byte {at} ({len(a)} bytes in the view, {len(b)} in the fold)"
            )
        else:
            out.append(f"{label} is {a!r} in the view, {b!r} in the fold")
    return ", ".join(out)


def _some(values: list[int]) -> str:
    shown = ", ".join(str(v) for v in values[:5])
    return shown + (", ..." if len(values) > 5 else "")


def _check_replay(
    doc_id: str,
    events: list[StoredEvent],
    whole: DocRows | None,
    snapshots: list[tuple[int, int, bytes]],
    checks: _Checks,
    undo_depth: int,
) -> None:
    """I6: the write model's replay and the read fold agree, and so do the snapshots."""
    due = {v: state for v, schema, state in snapshots if schema == MODEL_SCHEMA}
    checks.skipped_snapshots += len(snapshots) - len(due)
    model = WriteModel.new(doc_id, undo_depth)
    for event in events:
        try:
            op: dict[str, Any] = orjson.loads(event.op)
            effect: dict[str, Any] = orjson.loads(event.effect) if event.effect else {}
            model = evolve(model, event.v, event.actor, op, effect)
        except (ValueError, KeyError, TypeError) as exc:
            checks.replay.differ(f"{doc_id}: the write model cannot replay v{event.v}: {exc}")
            return
        stored = due.pop(model.v, None)
        if stored is not None:
            checks.snapshots.checked += 1
            if orjson.loads(stored) != orjson.loads(orjson.dumps(model_to_json(model))):
                checks.snapshots.differ(f"{doc_id}: the snapshot at v{model.v} is not the replay")
    for v in sorted(due):
        checks.snapshots.checked += 1
        checks.snapshots.differ(f"{doc_id}: a snapshot at v{v}, past the last event v{model.v}")
    if whole is not None and encode_state(model.doc) != whole.state:
        checks.replay.differ(
            f"{doc_id}: at v{model.v} the write model's state is not the read fold's"
        )
