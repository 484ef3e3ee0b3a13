"""Blue-green rebuild of views from the event store alone (DESIGN.md I5; EVENTSTORE.md 1.3).

For each view rebuilt, ``read.<view>_g<N+1>`` is created beside the serving
``read.<view>_g<N>`` and filled while the old one keeps serving and the workers keep
writing it:

1. **Bound.** Each shard's checkpoint at the start, ``b[s]``. The new table will hold
   exactly the events of shard ``s`` up to ``b[s]``, which is what the old one held
   then (I5). A per-shard bound, not the log head: a shard that lags, or is paused at
   a dead letter, is rebuilt to where it is, so checkpoints never move and the switch
   never needs to un-apply anything.
2. **Fold.** Every event, in ``(doc_id, v)`` order (keyset batches over the
   ``(doc_id, v)`` index), through ``project.fold``: one document at a time, so a
   document's state is encoded once, not once per batch, and activity and history
   rows come out in primary-key order. Rows are bulk-loaded with COPY as they come.
   Memory: the document being folded, one chunk of rows, and each document's final
   state as its bytes (5-10x smaller than the live ``Document``; the tail decodes the
   few it touches, as a worker decodes ``read.doc_state``).
3. **Tail, unlocked.** Events that the workers applied since (between ``b[s]`` and
   the checkpoint now) are applied to the new table, until little is left.
4. **Switch, in one transaction:** ``LOCK TABLE read.<view> IN ACCESS EXCLUSIVE
   MODE`` (workers take ROW EXCLUSIVE on every view they write at the start of each
   batch, in ``VIEWS`` order, as this does: it waits for batches in flight, blocks new
   ones, and cannot deadlock), read the now stable checkpoints, apply the last tail,
   ``CREATE OR REPLACE VIEW`` over the new table, update ``read.generations``. The
   checkpoints do not change: the new table holds what the old one held at them.
5. The old table is dropped (or kept).

Several views are rebuilt with one fold (``--all``): the fold's bound is the lowest
checkpoint of the views, shard by shard, and each view's tail starts there.

Only one rebuild runs at a time (a session advisory lock). A table ``g<N+1>`` left by a
rebuild that died is not serving (``read.generations`` says ``N``) and is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import asyncpg

from app.domain import Document
from app.store._rows import EVENT_COLUMNS, to_event
from app.store.ports import StoredEvent
from app.views.project import DocRows, decode_state, fold
from app.views.schema import VIEWS, View, table, view
from app.views.shards import shard_of

__all__ = [
    "COLUMNS",
    "Bar",
    "Bars",
    "RebuildBusy",
    "RebuildError",
    "Rebuilt",
    "Summary",
    "doc_rows",
    "rebuild",
    "stream_rows",
]

# The columns of each view's table, in the order of the tuples below (migration 0004).
COLUMNS: Final[dict[View, tuple[str, ...]]] = {
    "doc_state": ("doc_id", "v", "state", "updated_at"),
    "catalog": ("doc_id", "title", "owner", "v", "layers", "elements", "updated_at"),
    "activity": ("doc_id", "v", "actor", "kind", "ts"),
    "history": ("doc_id", "v", "state"),
}
# Views with one row per document (the rest have one row per event or per history v).
_PER_DOC: Final = frozenset({"doc_state", "catalog"})

BATCH: Final = 10_000  # events per keyset read
COPY_ROWS: Final = 10_000  # rows per COPY
_TAIL_PASSES: Final = 5  # unlocked tail passes at most, before the locked one
_TAIL_SMALL: Final = 2_000  # events: a tail this small is applied under the lock
_LOCK_KEY: Final = "atelier.rebuild"
_SWITCH_ATTEMPTS: Final = 10

_FIRST: Final = f"SELECT {EVENT_COLUMNS} FROM events ORDER BY doc_id, v LIMIT $1"
_AFTER: Final = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE (doc_id, v) > ($1, $2) ORDER BY doc_id, v LIMIT $3"
)
_RANGE: Final = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 AND position <= $2"
    " ORDER BY position LIMIT $3"
)


class RebuildError(RuntimeError):
    """The rebuild cannot go on; nothing serving was changed."""


class RebuildBusy(RebuildError):
    """Another rebuild holds the lock."""


class Bar(Protocol):
    """A progress bar (``tqdm`` fits): the library reports, the command draws."""

    def update(self, n: int = 1) -> Any: ...

    def close(self) -> None: ...


# (description, total or None, unit) -> a bar
Bars = Callable[[str, int | None, str], Bar]


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _no_bars(desc: str, total: int | None, unit: str) -> Bar:
    return _NoBar()


@dataclass(slots=True)
class Rebuilt:
    """What one view's rebuild did."""

    view: View
    old: int  # the generation that served before
    new: int  # the generation that serves now
    rows: int = 0  # rows in the new table at the switch
    tail: int = 0  # events applied after the fold (unlocked and locked)
    locked_tail: int = 0  # of which under the lock
    dropped: bool = False


@dataclass(frozen=True, slots=True)
class Summary:
    views: list[Rebuilt]
    events: int  # events folded in the bulk pass
    documents: int
    seconds: float
    fold_seconds: float
    switch_seconds: float  # time the views were locked


def doc_rows(name: View, doc_id: str, rows: DocRows, owner: str | None) -> tuple[Any, ...]:
    """The one row of a per-document view after ``rows`` (the document's last fold).
    ``owner`` is the actor of ``doc.create``, when known."""
    if name == "doc_state":
        return (doc_id, rows.doc.v, rows.state, rows.updated_at)
    if name == "catalog":
        return (
            doc_id,
            rows.doc.title,
            owner,
            rows.doc.v,
            rows.layers,
            rows.elements,
            rows.updated_at,
        )
    raise ValueError(f"{name} has no per-document row")


def stream_rows(name: View, doc_id: str, rows: DocRows) -> list[tuple[Any, ...]]:
    """The rows of ``activity`` or ``history`` one fold adds."""
    if name == "activity":
        return [(doc_id, a.v, a.actor, a.kind, a.ts) for a in rows.activity]
    if name == "history":
        return [(doc_id, v, state) for v, state in rows.history]
    raise ValueError(f"{name} has no per-event rows")


@dataclass(slots=True)
class _Target:
    """One view being rebuilt."""

    name: View
    old: int
    new: int
    bound: list[int]  # per shard: the new table holds the shard's events up to here
    epoch: int  # the store's
    head: int  # the log's head at the start: where shards of a void checkpoint go
    stale: set[int] = field(default_factory=set)  # shards whose checkpoint is void
    # per document: its state's bytes at the bound (decoded only for the tail's few)
    states: dict[str, bytes] = field(default_factory=dict)
    result: Rebuilt | None = None

    @property
    def table(self) -> str:
        return table(self.name, self.new)


async def rebuild(
    pool: asyncpg.Pool,
    names: Sequence[View],
    *,
    keep_old: bool = False,
    bars: Bars = _no_bars,
    batch: int = BATCH,
    lock_timeout: float = 2.0,
) -> Summary:
    """Rebuild ``names`` (one fold for all) and switch each to its new generation.
    Raises ``RebuildBusy`` when another rebuild runs, ``RebuildError`` when an event
    cannot be folded or the checkpoints went backwards (a restore): nothing serving
    changed then. ``lock_timeout`` bounds each wait for the views' locks: readers queue
    behind a waiting ACCESS EXCLUSIVE request, so it is short, and tried again."""
    ordered = [name for name in VIEWS if name in names]
    if not ordered:
        raise ValueError("nothing to rebuild")
    started = time.perf_counter()
    async with pool.acquire() as lock_conn:
        if not await lock_conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", _LOCK_KEY):
            raise RebuildBusy("another rebuild is running")
        try:
            async with pool.acquire() as conn:
                shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
                targets: list[_Target] = []
                try:
                    await _prepare(conn, ordered, shards, targets)
                    bound = [min(t.bound[s] for t in targets) for s in range(shards)]
                    for t in targets:
                        t.bound = list(bound)
                    events, states = await _fold_all(
                        pool, conn, targets, bound, shards, batch, bars
                    )
                    fold_seconds = time.perf_counter() - started
                    for t in targets:
                        t.states = states if len(targets) == 1 else dict(states)
                    await _unlocked_tails(conn, targets, shards, batch)
                    switch_started = time.perf_counter()
                    await _switch(conn, targets, shards, batch, lock_timeout)
                    switch_seconds = time.perf_counter() - switch_started
                except BaseException:
                    await _drop_quietly(conn, [t.table for t in targets])
                    raise
                for t in targets:
                    assert t.result is not None
                    t.result.rows = int(await conn.fetchval(f"SELECT count(*) FROM {t.table}"))
                    if not keep_old:
                        t.result.dropped = await _drop_quietly(conn, [table(t.name, t.old)])
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock(hashtext($1))", _LOCK_KEY)
    results = [t.result for t in targets if t.result is not None]
    return Summary(
        results,
        events,
        len(states),
        time.perf_counter() - started,
        fold_seconds,
        switch_seconds,
    )


async def _drop_quietly(conn: asyncpg.Connection, tables: list[str]) -> bool:
    """Drop tables that do not serve: a new one after a failure, the old one after the
    switch. Best effort: the switch stands either way; False when one could not go
    (a long query still reading the old one holds its lock past lock_timeout)."""
    try:
        for name in tables:
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
    except (asyncpg.PostgresError, OSError):
        return False
    return True


async def _prepare(
    conn: asyncpg.Connection, names: list[View], shards: int, targets: list[_Target]
) -> None:
    """Read each view's generation and checkpoints, and create its next table (appended
    to ``targets`` as soon as it exists, so a failure can drop it)."""
    epoch = int(await conn.fetchval("SELECT epoch FROM store_meta"))
    head = int(await conn.fetchval("SELECT last_position FROM log_head"))
    for name in names:
        old = await conn.fetchval("SELECT generation FROM read.generations WHERE view = $1", name)
        if old is None:
            raise RebuildError(f"{name}: no row in read.generations")
        target = _Target(name, int(old), int(old) + 1, [], epoch, head)
        target.bound = await _checkpoints(conn, target, shards)
        await _check_columns(conn, name)
        # Not serving (read.generations says old) and we hold the rebuild lock: a
        # table by this name is what a rebuild that died left behind.
        await conn.execute(f"DROP TABLE IF EXISTS {target.table}")
        await conn.execute(
            f"CREATE TABLE {target.table} (LIKE {table(name, target.old)} INCLUDING ALL)"
        )
        target.result = Rebuilt(name, target.old, target.new)
        targets.append(target)


async def _checkpoints(conn: asyncpg.Connection, t: _Target, shards: int) -> list[int]:
    """Where the new table must be, per shard: the checkpoint; or, for a checkpoint of
    another epoch than the store's (void after a restore: the workers apply nothing to
    it), the log's head at the start, and the switch sets the checkpoint there, at
    the store's epoch. ``t.stale`` is set to those shards."""
    rows = await conn.fetch(
        "SELECT shard, position, epoch FROM read.checkpoints WHERE view = $1", t.name
    )
    positions = {int(row["shard"]): int(row["position"]) for row in rows}
    if sorted(positions) != list(range(shards)):
        raise RebuildError(f"{t.name}: read.checkpoints does not hold shards 0..{shards - 1}")
    t.stale = {int(row["shard"]) for row in rows if int(row["epoch"]) != t.epoch}
    return [t.head if s in t.stale else positions[s] for s in range(shards)]


async def _view_columns(conn: asyncpg.Connection, name: View) -> list[str]:
    rows = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        view(name),
    )
    return [str(row["attname"]) for row in rows]


async def _check_columns(conn: asyncpg.Connection, name: View) -> None:
    columns = await _view_columns(conn, name)
    if sorted(columns) != sorted(COLUMNS[name]):
        raise RebuildError(
            f"{view(name)} has columns {columns}, this code writes {list(COLUMNS[name])}"
        )


# -- the fold -------------------------------------------------------------------------


async def _batches(conn: asyncpg.Connection, batch: int) -> AsyncIterator[list[StoredEvent]]:
    """Every event in ``(doc_id, v)`` order, ``batch`` at a time; the next batch is
    read while the caller folds this one."""

    async def read(after: tuple[str, int] | None) -> list[StoredEvent]:
        if after is None:
            rows = await conn.fetch(_FIRST, batch)
        else:
            rows = await conn.fetch(_AFTER, after[0], after[1], batch)
        return [to_event(row) for row in rows]

    pending = asyncio.ensure_future(read(None))
    try:
        while True:
            events = await pending
            if not events:
                return
            last = events[-1]
            pending = asyncio.ensure_future(read((last.doc_id, last.v)))
            yield events
            if len(events) < batch:
                return
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending


class _Loader:
    """COPY rows into one table on its own connection, one COPY in flight at a time,
    so the server loads the last chunk while this process folds the next."""

    def __init__(self, conn: asyncpg.Connection, target: str, columns: tuple[str, ...], bar: Bar):
        self._conn = conn
        self._schema, self._table = target.split(".")
        self._columns = columns
        self._bar = bar
        self._rows: list[tuple[Any, ...]] = []
        self._flight: asyncio.Task[None] | None = None
        self.loaded = 0

    async def add(self, rows: Iterable[tuple[Any, ...]]) -> None:
        self._rows.extend(rows)
        if len(self._rows) >= COPY_ROWS:
            await self._flush()

    async def _flush(self) -> None:
        if self._flight is not None:
            await self._flight
            self._flight = None
        if self._rows:
            rows, self._rows = self._rows, []
            self._flight = asyncio.ensure_future(self._copy(rows))

    async def _copy(self, rows: list[tuple[Any, ...]]) -> None:
        await self._conn.copy_records_to_table(
            self._table, schema_name=self._schema, columns=self._columns, records=rows
        )
        self.loaded += len(rows)
        self._bar.update(len(rows))

    async def close(self) -> None:
        await self._flush()
        if self._flight is not None:
            await self._flight
            self._flight = None

    def abort(self) -> None:
        if self._flight is not None:
            self._flight.cancel()


async def _fold_all(
    pool: asyncpg.Pool,
    conn: asyncpg.Connection,
    targets: list[_Target],
    bound: list[int],
    shards: int,
    batch: int,
    bars: Bars,
) -> tuple[int, dict[str, bytes]]:
    """Fold every event up to ``bound`` (per shard) and COPY the rows into every
    target's new table. Returns the events folded and each document's state bytes."""
    total = int(
        await conn.fetchval(
            "SELECT count(*) FROM events WHERE position <= $1", max(bound) if bound else 0
        )
    )
    fold_bar = bars("fold", total, "ev")
    load_bar = bars("load", None, "row")
    states: dict[str, bytes] = {}
    folded = 0
    async with contextlib.AsyncExitStack() as stack:
        loaders: dict[View, _Loader] = {}
        for t in targets:
            copy_conn = await stack.enter_async_context(pool.acquire())
            loaders[t.name] = _Loader(copy_conn, t.table, COLUMNS[t.name], load_bar)
        try:
            cur: _DocFold | None = None
            async for events in _batches(conn, batch):
                fold_bar.update(len(events))
                for doc_id, evs in _runs(events):
                    if cur is None or cur.doc.id != doc_id:
                        if cur is not None:
                            await cur.finish(loaders, states)
                        cur = _DocFold(Document(doc_id), bound[shard_of(doc_id, shards)])
                    rows = cur.add(evs)
                    if rows is not None:
                        folded += len(rows.activity)
                        for name, loader in loaders.items():
                            if name not in _PER_DOC:
                                await loader.add(stream_rows(name, doc_id, rows))
            if cur is not None:
                await cur.finish(loaders, states)
            for loader in loaders.values():
                await loader.close()
        except BaseException:
            for loader in loaders.values():
                loader.abort()
            raise
        finally:
            fold_bar.close()
            load_bar.close()
    return folded, states


@dataclass(slots=True)
class _DocFold:
    """One document being folded, from its first event to its shard's bound."""

    doc: Document
    bound: int
    owner: str | None = None
    last: DocRows | None = None

    def add(self, events: list[StoredEvent]) -> DocRows | None:
        # Positions grow with versions (I2), so the events within the bound are a prefix.
        n = 0
        while n < len(events) and events[n].position <= self.bound:
            n += 1
        if n == 0:
            return None
        rows = _fold(self.doc, events[:n] if n < len(events) else events)
        self.doc = rows.doc
        self.owner = self.owner or rows.owner
        self.last = rows
        return rows

    async def finish(self, loaders: dict[View, _Loader], states: dict[str, bytes]) -> None:
        if self.last is None:
            return
        states[self.doc.id] = self.last.state
        for name, loader in loaders.items():
            if name in _PER_DOC:
                await loader.add([doc_rows(name, self.doc.id, self.last, self.owner)])


def _fold(doc: Document, events: list[StoredEvent]) -> DocRows:
    """``project.fold``, or ``RebuildError`` naming the event that cannot be applied."""
    try:
        return fold(doc, events)
    except ValueError:
        pass
    for event in events:  # the slow way, only to say which event
        try:
            doc = fold(doc, [event]).doc
        except ValueError as exc:
            raise RebuildError(
                f"cannot fold {event.doc_id!r} at v{event.v} (position {event.position}):"
                f" {exc}; `python -m app verify --doc {event.doc_id}` says more"
            ) from exc
    raise AssertionError("fold failed on the whole and on no single event")


def _runs(events: list[StoredEvent]) -> Iterable[tuple[str, list[StoredEvent]]]:
    """Consecutive events of one document (the input is in ``(doc_id, v)`` order)."""
    start = 0
    for i in range(1, len(events) + 1):
        if i == len(events) or events[i].doc_id != events[start].doc_id:
            yield events[start].doc_id, events[start:i]
            start = i


# -- the tail ---------------------------------------------------------------------------

_UPSERT: Final[dict[View, str]] = {
    "doc_state": (
        "INSERT INTO {t} (doc_id, v, state, updated_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (doc_id) DO UPDATE SET v = EXCLUDED.v, state = EXCLUDED.state,"
        " updated_at = EXCLUDED.updated_at"
    ),
    # A tail without the document's create keeps the owner the fold wrote (NOT NULL
    # is checked after ON CONFLICT turns the insert into an update of the other columns).
    "catalog": (
        "INSERT INTO {t} AS c (doc_id, title, owner, v, layers, elements, updated_at)"
        " VALUES ($1, $2, coalesce($3, (SELECT o.owner FROM {t} AS o WHERE o.doc_id = $1)),"
        " $4, $5, $6, $7)"
        " ON CONFLICT (doc_id) DO UPDATE SET title = EXCLUDED.title, v = EXCLUDED.v,"
        " layers = EXCLUDED.layers, elements = EXCLUDED.elements,"
        " updated_at = EXCLUDED.updated_at"
    ),
    "activity": "INSERT INTO {t} (doc_id, v, actor, kind, ts) VALUES ($1, $2, $3, $4, $5)",
    "history": "INSERT INTO {t} (doc_id, v, state) VALUES ($1, $2, $3)",
}


async def _read_range(
    conn: asyncpg.Connection, after: int, upto: int, batch: int
) -> AsyncIterator[list[StoredEvent]]:
    while after < upto:
        rows = await conn.fetch(_RANGE, after, upto, batch)
        if not rows:
            return
        events = [to_event(row) for row in rows]
        yield events
        after = events[-1].position


async def _apply_tail(
    conn: asyncpg.Connection,
    targets: list[_Target],
    to: dict[View, list[int]],
    shards: int,
    batch: int,
) -> dict[View, int]:
    """Apply to each target the events of shard ``s`` in ``(bound[s], to[s]]`` and move
    its bound there. Returns the events applied to each."""
    applied = {t.name: 0 for t in targets}
    low = min(min(t.bound) for t in targets)
    high = max(max(to[t.name]) for t in targets)
    shard_cache: dict[str, int] = {}
    async for events in _read_range(conn, low, high, batch):
        for t in targets:
            per_doc: dict[str, list[StoredEvent]] = {}
            for e in events:
                s = shard_cache.get(e.doc_id)
                if s is None:
                    s = shard_cache[e.doc_id] = shard_of(e.doc_id, shards)
                if t.bound[s] < e.position <= to[t.name][s]:
                    per_doc.setdefault(e.doc_id, []).append(e)
            applied[t.name] += sum(len(evs) for evs in per_doc.values())
            await _write_tail(conn, t, per_doc)
    for t in targets:
        t.bound = list(to[t.name])
    return applied


async def _write_tail(
    conn: asyncpg.Connection, t: _Target, per_doc: dict[str, list[StoredEvent]]
) -> None:
    records: list[tuple[Any, ...]] = []
    for doc_id in sorted(per_doc):
        evs = per_doc[doc_id]
        state = t.states.get(doc_id)
        rows = _fold(Document(doc_id) if state is None else decode_state(state), evs)
        t.states[doc_id] = rows.state
        if t.name in _PER_DOC:
            records.append(doc_rows(t.name, doc_id, rows, rows.owner))
        else:
            records.extend(stream_rows(t.name, doc_id, rows))
    if records:
        await conn.executemany(_UPSERT[t.name].format(t=t.table), records)


async def _unlocked_tails(
    conn: asyncpg.Connection, targets: list[_Target], shards: int, batch: int
) -> None:
    """Apply what the workers did during the fold, without the lock, until what is left
    is small: the locked part of the switch should take milliseconds, not the time the
    fold took."""
    for _ in range(_TAIL_PASSES):
        to = {t.name: await _checkpoints(conn, t, shards) for t in targets}
        _check_forward(targets, to)
        applied = await _apply_tail(conn, targets, to, shards, batch)
        for t in targets:
            assert t.result is not None
            t.result.tail += applied[t.name]
        if max(applied.values()) < _TAIL_SMALL:
            return


def _check_forward(targets: list[_Target], to: dict[View, list[int]]) -> None:
    for t in targets:
        for s, (before, now) in enumerate(zip(t.bound, to[t.name], strict=True)):
            if now < before:
                raise RebuildError(
                    f"{t.name}: the checkpoint of shard {s} went back from {before} to {now}"
                    " (a restore?); run the rebuild again"
                )


async def _switch(
    conn: asyncpg.Connection,
    targets: list[_Target],
    shards: int,
    batch: int,
    lock_timeout: float,
) -> None:
    """The switch, tried again when the locks could not be had: a deadlock (a query
    reading two views, say ``history`` then ``doc_state``, holds one and waits for one
    we hold) or ``lock_timeout``. A failed try rolled back its tail, so the documents'
    states and bounds are put back as they were before it."""
    for attempt in range(1, _SWITCH_ATTEMPTS + 1):
        saved = [(list(t.bound), dict(t.states)) for t in targets]
        try:
            applied = await _switch_once(conn, targets, shards, batch, lock_timeout)
        except (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError) as exc:
            for t, (bound, states) in zip(targets, saved, strict=True):
                t.bound, t.states = bound, states
            if attempt == _SWITCH_ATTEMPTS:
                raise RebuildError(
                    f"could not lock {', '.join(view(t.name) for t in targets)}"
                    f" in {attempt} tries: {exc}"
                ) from exc
            await asyncio.sleep(0.05 * attempt)
            continue
        for t in targets:
            assert t.result is not None
            t.result.tail += applied[t.name]
            t.result.locked_tail = applied[t.name]
        return


async def _switch_once(
    conn: asyncpg.Connection,
    targets: list[_Target],
    shards: int,
    batch: int,
    lock_timeout: float,
) -> dict[View, int]:
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
        await conn.execute(
            f"LOCK TABLE {', '.join(view(t.name) for t in targets)} IN ACCESS EXCLUSIVE MODE"
        )
        # Stable from here: every worker batch that writes these views holds ROW
        # EXCLUSIVE on them, and the checkpoints move only inside such batches.
        to: dict[View, list[int]] = {}
        for t in targets:
            serving = await conn.fetchval(
                "SELECT generation FROM read.generations WHERE view = $1", t.name
            )
            if serving != t.old:
                raise RebuildError(f"{t.name}: generation {serving} serves now, not {t.old}")
            to[t.name] = await _checkpoints(conn, t, shards)
        _check_forward(targets, to)
        applied = await _apply_tail(conn, targets, to, shards, batch)
        for t in targets:
            columns = ", ".join(await _view_columns(conn, t.name))
            await conn.execute(
                f"CREATE OR REPLACE VIEW {view(t.name)} AS SELECT {columns} FROM {t.table}"
            )
            await conn.execute(
                "UPDATE read.generations SET generation = $2 WHERE view = $1", t.name, t.new
            )
            if t.stale:
                # The new table holds these shards up to the head at the start, of this
                # epoch's log. The fencing bump voids any claim on the old position.
                await conn.execute(
                    "UPDATE read.checkpoints SET position = $3, epoch = $4,"
                    " fencing = fencing + 1, updated_at = now()"
                    " WHERE view = $1 AND shard = ANY($2::int[]) AND epoch <> $4",
                    t.name,
                    sorted(t.stale),
                    t.head,
                    t.epoch,
                )
    return applied
