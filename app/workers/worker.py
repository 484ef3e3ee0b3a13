"""The read worker: own shards, follow the log, fold, write, one transaction a batch.

    connect lease ─▶ ┌ tick (every lease interval): check rows, balance, sample lag ┐
                     ├ follow: LogFollower ─▶ fold per document ─▶ apply_batch ─────┤
                     │               ▲ restarted from the lowest checkpoint when a  │
                     │               └ shard is taken whose checkpoint is behind it │
                     └ flush (at most a second after a batch): checkpoints read past┘

Three tasks share the worker's state under one lock (``_lock``): the follow loop holds
it for a batch, the tick for its lease work, the flush for writing the checkpoints that
batches read past without events of their shard, so a shard is never given up or taken
in the middle of a batch, and the lease connection and the writer never touch the
same checkpoint rows at once.

Why one follower for every owned shard: the log is read once whatever the number of
shards, and one ``apply_batch`` writes the batch of every shard (and the checkpoints of
the shards it has events for), so a batch costs a fixed number of round trips. Under
load the follower reads up to ``batch`` events at once (it reads on without sleeping
while more are waiting), so batches grow with the load and the cost per event falls.

Connections: the lease connection (locks, balance, lag), the follower's (LISTEN and
reads) and the writer's (the batch transactions). None comes from a pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Container, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import structlog

from app.errors import Unavailable
from app.observability import metrics
from app.store.follow import LogFollower
from app.store.pool import COMMAND_TIMEOUT, SERVER_SETTINGS
from app.store.ports import StoredEvent
from app.views.project import DocRows
from app.views.schema import View
from app.views.shards import shard_of
from app.views.writer import Claim, ClaimGroup, apply_batch, events_to_apply, group_claims
from app.workers.balance import preference, share, to_release
from app.workers.cache import DocumentCache
from app.workers.deadletters import dead_letter
from app.workers.leases import CheckpointRow, LeaseLost, ShardLeases
from app.workers.projector import Failure, fold_batch

__all__ = ["Worker", "WorkerConfig"]

log = structlog.get_logger(__name__)

Key = tuple[View, int]
# What a lost or broken connection raises (InternalClientError: asyncpg's protocol
# left mid-operation, e.g. by a backend terminated under it).
_DB_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """``batch``: most events read and written at once. ``cache_docs``: documents kept
    decoded (LRU). ``lease_interval``: seconds between lease checks (a dead worker's
    shards are taken over within about that). ``poll_interval``: the follower's
    fallback poll when no notification comes. ``linger``: seconds to wait after catching
    up before the next read (``LogFollower``'s linger). ``flush_interval``: at most how
    long (and at most ``lease_interval``) a checkpoint read past by batches without
    events of its shard waits to be written."""

    dsn: str
    worker_id: str
    batch: int = 2000
    cache_docs: int = 2000
    lease_interval: float = 1.0
    poll_interval: float = 1.0
    max_backoff: float = 2.0
    linger: float = 0.0
    flush_interval: float = 1.0


class _Restart(Exception):
    """Read the log again from the lowest checkpoint (claims moved behind the cursor)."""


class Worker:
    """``run()`` until ``stop()``: a stopped worker finishes its batch, gives its shards
    up and returns. Raises only on invariant breaches (a hole in the log, a restored
    store under its checkpoints)."""

    def __init__(self, config: WorkerConfig) -> None:
        self._config = config
        self._leases = ShardLeases(config.dsn, config.worker_id)
        self._cache = DocumentCache(config.cache_docs)
        self._order: list[int] = []
        self._running: dict[Key, Claim] = {}  # checkpoints this worker moves, as stored
        # Where this worker has read past a running checkpoint without writing it: no
        # event of the shard lies between the stored position and this one, so moving
        # the row can wait for the flush loop (``_flush_checkpoints``) or for the next
        # batch that touches the shard. A batch then writes the rows of the shards it has
        # events for, not all views x shards of them.
        self._through: dict[Key, int] = {}
        self._unflushed = asyncio.Event()  # _through has entries: _flush_loop is due
        self._paused: dict[Key, Claim] = {}  # held, dead-lettered: waiting for an operator
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()  # claims changed: the follow loop looks again
        self._stopping = asyncio.Event()
        self._follower: LogFollower | None = None
        self._writer: asyncpg.Connection | None = None
        self._lag_labels: set[Key] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self.applied = 0  # events written (tests, diagnostics)
        self.batches = 0
        self.last_batch_at = time.monotonic()  # when the last batch with events ended

    @property
    def worker_id(self) -> str:
        return self._config.worker_id

    @property
    def shards(self) -> set[int]:
        """The shards held now."""
        return set(self._leases.held)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Finish the batch in hand, give the shards up, return from ``run``."""
        self._stopping.set()
        self._wake.set()
        follower = self._follower
        if follower is not None:
            # Its iterator ends at its next step; the batch in hand is finished first.
            self._background(follower.close())

    async def run(self) -> None:
        delay = 0.05
        try:
            while not self._stopping.is_set():
                try:
                    await self._leases.connect()
                except _DB_ERRORS as exc:
                    log.warning("worker cannot reach the database", error=str(exc), retry_in=delay)
                    await self._pause(delay)
                    delay = min(delay * 2, self._config.max_backoff)
                    continue
                delay = 0.05
                self._order = preference(self.worker_id, self._leases.shards)
                log.info(
                    "worker connected",
                    worker=self.worker_id,
                    shards=self._leases.shards,
                    pid=self._leases.backend_pid,
                )
                try:
                    await self._session()
                except LeaseLost as exc:
                    log.warning("worker lost its lease connection", error=str(exc))
                finally:
                    await self._end_session()
        finally:
            await self._drop_writer()

    # -- one lease session -------------------------------------------------------

    async def _session(self) -> None:
        follow = asyncio.create_task(self._follow_loop(), name="worker-follow")
        tick = asyncio.create_task(self._tick_loop(), name="worker-tick")
        flush = asyncio.create_task(self._flush_loop(), name="worker-flush")
        try:
            done, _ = await asyncio.wait({follow, tick, flush}, return_when=asyncio.FIRST_COMPLETED)
            if self._stopping.is_set() and follow not in done:
                # Let the batch in hand commit; the follower was closed by stop().
                await asyncio.wait({follow}, timeout=10 * self._config.lease_interval + 5)
        finally:
            await self._close_follower()
            for task in (follow, tick, flush):
                task.cancel()
            results = await asyncio.gather(follow, tick, flush, return_exceptions=True)
        if follow.cancelled() or isinstance(results[0], asyncio.CancelledError):
            await self._drop_writer()  # a batch may have been cut mid-transaction
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _end_session(self) -> None:
        held = [
            (shard, claim.fencing)
            for (_, shard), claim in {**self._running, **self._paused}.items()
        ]
        await self._leases.close(disown=held)
        if held:
            log.info("worker released its shards", worker=self.worker_id, shards=len(dict(held)))
        self._running.clear()
        self._paused.clear()
        self._through.clear()
        metrics.worker_shards_owned.set(0)
        self._clear_lag(self._lag_labels)

    # -- the follow loop -----------------------------------------------------------

    async def _follow_loop(self) -> None:
        delay = 0.05
        while not self._stopping.is_set():
            if not self._running:
                self._wake.clear()
                await self._wake.wait()
                continue
            start = min(self._at(key, claim) for key, claim in self._running.items())
            follower = LogFollower(
                self._config.dsn,
                after=start,
                # A restore bumps the epoch and voids every checkpoint: the follower
                # raises EpochChanged rather than read the new log from old cursors,
                # and the worker stops (exit 1) until the views are rebuilt.
                epoch=self._leases.epoch,
                batch_size=self._config.batch,
                poll_interval=self._config.poll_interval,
                application_name=f"atelier-worker {self.worker_id}"[:63],
                linger=self._config.linger,
            )
            self._follower = follower
            try:
                await follower.connect()
                delay = 0.05
                async for batch in follower:
                    async with self._lock:
                        await self._process(batch)
                    if self._stopping.is_set():
                        return
            except _Restart:
                continue
            except (Unavailable, *_DB_ERRORS) as exc:
                # The follower retries lost connections itself, but not every way a
                # connection breaks (asyncpg's InternalClientError after a terminated
                # backend); a new follower from the checkpoints is always right.
                error = exc.message if isinstance(exc, Unavailable) else repr(exc)
                log.warning("worker cannot read the log", error=error, retry_in=delay)
                await self._pause(delay)
                delay = min(delay * 2, self._config.max_backoff)
            finally:
                self._follower = None
                await follower.close()

    async def _process(self, batch: list[StoredEvent]) -> None:
        """Fold and write one batch for every owned running shard."""
        if self._leases.lost.is_set():
            raise LeaseLost("the lease connection is gone: not writing")
        started = time.perf_counter()
        before, to_position = batch[0].position - 1, batch[-1].position
        # Only checkpoints the batch continues: one taken (or adopted) behind the
        # follower's cursor would jump over the events between it and this batch. It
        # waits for the follower to read again from it (below, and _restart_follower).
        at = {k: self._at(k, c) for k, c in self._running.items()}
        live = {k: c for k, c in self._running.items() if before <= at[k] < to_position}
        behind = any(position < before for position in at.values())
        if not live:
            if behind:
                raise _Restart
            return
        applied = 0
        try:
            conn = await self._connection()
            for group in group_claims(live):
                applied += await self._apply_group(conn, group, batch, to_position)
        except _DB_ERRORS as exc:
            log.warning("worker batch failed; reading again", error=str(exc) or type(exc).__name__)
            await self._drop_writer()
            await self._pause(0.2)
            raise _Restart from exc
        self.applied += applied
        self.batches += 1
        self.last_batch_at = time.monotonic()
        metrics.worker_events_applied_total.inc(applied)
        metrics.worker_batch_events.observe(applied)
        metrics.worker_batch_seconds.observe(time.perf_counter() - started)
        if behind:
            raise _Restart

    async def _apply_group(
        self,
        conn: asyncpg.Connection,
        group: ClaimGroup,
        batch: list[StoredEvent],
        to_position: int,
    ) -> int:
        shards = self._leases.shards
        per_doc = events_to_apply(batch, group.claims, shards)
        folded = await fold_batch(conn, per_doc, self._cache, shards)
        healthy = {s: c for s, c in group.claims.items() if s not in folded.failures}
        # Only the shards this batch has events for move their rows now; the others
        # are read past in memory (``_through``) and written by the flush loop.
        touched = {shard_of(doc_id, shards) for doc_id in per_doc}
        written = {s: c for s, c in healthy.items() if s in touched}
        ok = await apply_batch(
            conn, claims=written, to_position=to_position, docs=folded.rows, views=group.views
        )
        if not ok:
            await self._claims_refused()
        self._advance(group.views, healthy, to_position, written)
        applied = sum(len(per_doc[doc_id]) for doc_id in folded.rows)
        for shard, failure in folded.failures.items():
            prefix = folded.prefix.get(shard, {})
            await self._dead_letter(conn, group, shard, failure, prefix)
            stop = failure.event.position
            applied += sum(1 for doc_id in prefix for e in per_doc[doc_id] if e.position < stop)
        return applied

    async def _dead_letter(
        self,
        conn: asyncpg.Connection,
        group: ClaimGroup,
        shard: int,
        failure: Failure,
        prefix: dict[str, DocRows],
    ) -> None:
        """Write the shard's events before the bad one, then record it and pause."""
        claim = group.claims[shard]
        stop_at = failure.event.position - 1
        if stop_at > claim.position:
            ok = await apply_batch(
                conn,
                claims={shard: claim},
                to_position=stop_at,
                docs=prefix,
                views=group.views,
            )
            if not ok:
                await self._claims_refused()
            claim = Claim(stop_at, claim.fencing)
        if not await dead_letter(
            conn, views=group.views, shard=shard, claim=claim, failure=failure
        ):
            await self._claims_refused()
        for name in group.views:
            self._running.pop((name, shard), None)
            self._through.pop((name, shard), None)
            self._paused[(name, shard)] = claim
            metrics.worker_dead_letters_total.labels(view=name, shard=str(shard)).inc()
        log.error(
            "event dead-lettered; shard paused",
            shard=shard,
            views=list(group.views),
            position=failure.event.position,
            doc_id=failure.event.doc_id,
            v=failure.event.v,
            error=failure.error,
        )

    def _advance(
        self,
        views: Iterable[View],
        claims: dict[int, Claim],
        to_position: int,
        written: Container[int],
    ) -> None:
        """``claims`` are read up to ``to_position``; those of ``written`` are stored."""
        for name in views:
            for shard, claim in claims.items():
                key = (name, shard)
                if shard in written:
                    self._running[key] = Claim(to_position, claim.fencing)
                    self._through.pop(key, None)
                else:
                    self._through[key] = to_position
                    self._unflushed.set()

    def _at(self, key: Key, claim: Claim) -> int:
        """How far this worker has read for ``key``: its stored checkpoint or beyond."""
        return self._through.get(key, claim.position)

    async def _flush_loop(self) -> None:
        """Store what was read past without a write at most ``flush_interval`` later."""
        interval = min(self._config.lease_interval, self._config.flush_interval)
        while True:
            await self._unflushed.wait()
            await self._pause(interval)
            async with self._lock:
                if self._stopping.is_set():
                    return
                self._unflushed.clear()
                await self._flush_checkpoints()

    async def _flush_checkpoints(self) -> None:
        """Store the checkpoints read past without a write (``_through``): a checkpoint
        that no batch touched stays at most a flush interval behind in its row, so a
        worker taking the shard over reads little again, and the rows say where the
        views are."""
        targets: dict[int, dict[Key, Claim]] = defaultdict(dict)
        for key, position in self._through.items():
            claim = self._running.get(key)
            if claim is not None and position > claim.position:
                targets[position][key] = claim
        self._through.clear()
        if not targets:
            return
        try:
            conn = await self._connection()
            for position, rows in sorted(targets.items()):
                for group in group_claims(rows):
                    if not await apply_batch(
                        conn, claims=group.claims, to_position=position, docs={}, views=group.views
                    ):
                        # Someone else holds a row now: _check_rows sorts it out.
                        metrics.worker_cas_failures_total.inc()
                        log.warning("checkpoint flush refused", worker=self.worker_id)
                        await self._check_rows()
                        return
                    self._advance(group.views, group.claims, position, group.claims)
        except _DB_ERRORS as exc:
            # Nothing is lost: the rows stay where they were, and the follower reads
            # again from them if it must.
            log.warning("checkpoint flush failed", error=str(exc) or type(exc).__name__)
            await self._drop_writer()
            self._restart_follower()

    async def _claims_refused(self) -> None:
        """The compare-and-set refused a batch: read what the checkpoints hold now,
        drop the shards whose fencing moved (a takeover: we are the zombie), adopt
        the rest, and read the log again from there."""
        metrics.worker_cas_failures_total.inc()
        log.warning("checkpoint compare-and-set refused a batch", worker=self.worker_id)
        await self._check_rows()
        raise _Restart

    async def _connection(self) -> asyncpg.Connection:
        conn = self._writer
        if conn is None or conn.is_closed():
            conn = await asyncpg.connect(
                self._config.dsn,
                command_timeout=COMMAND_TIMEOUT,
                server_settings={
                    **SERVER_SETTINGS,
                    "application_name": f"atelier-worker-write {self.worker_id}"[:63],
                    # The views are derived: a batch lost to a server crash rolls back
                    # with its checkpoint (asynchronous commit never splits a
                    # transaction) and is applied again. Not waiting for the WAL flush
                    # takes the fsync out of every batch's latency.
                    "synchronous_commit": "off",
                },
            )
            self._writer = conn
        return conn

    async def _drop_writer(self) -> None:
        conn, self._writer = self._writer, None
        if conn is None or conn.is_closed():
            return
        try:
            async with asyncio.timeout(2):
                await conn.close()
        except Exception:
            conn.terminate()
        except BaseException:
            conn.terminate()
            raise

    async def _close_follower(self) -> None:
        follower = self._follower
        if follower is not None:
            await follower.close()

    def _restart_follower(self) -> None:
        """Claims moved: the follow loop looks at them again (a new follower when one
        is behind the running follower's cursor)."""
        self._wake.set()
        follower = self._follower
        if follower is None or not self._running:
            return
        if min(self._at(k, c) for k, c in self._running.items()) < follower.position:
            self._background(follower.close())

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in a task kept referenced until it is done."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the lease tick ----------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            async with self._lock:
                if self._stopping.is_set():
                    return
                await self._check_rows()
                await self._balance()
            await self._sample_lag()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.lease_interval):
                    await _first(self._stopping, self._leases.lost)
            if self._leases.lost.is_set():
                raise LeaseLost("the lease connection closed")
            if self._stopping.is_set():
                return

    async def _check_rows(self) -> None:
        """Reconcile the held shards with their rows: a moved fencing means the shard
        was taken over (drop it); a status changed by an operator is followed."""
        held = sorted(self._leases.held)
        if not held:
            return
        ours = {**self._paused, **self._running}
        rows = await self._leases.rows(held)
        lost = {row.shard for row in rows if row.claim.fencing != _fencing(ours, row)}
        changed = False
        for row in rows:
            key = (row.view, row.shard)
            if row.shard in lost:
                continue
            target, other = (
                (self._running, self._paused)
                if self._usable(row)
                else (self._paused, self._running)
            )
            if other.pop(key, None) is not None or target.get(key) != row.claim:
                changed = True
                self._through.pop(key, None)  # the row is the truth now
            target[key] = row.claim
        for shard in lost:
            log.warning("shard taken over by another worker; dropping it", shard=shard)
            await self._leases.release(shard, ())
            self._forget(shard)
            changed = True
        if changed:
            self._restart_follower()
        metrics.worker_shards_owned.set(len(self._leases.held))

    async def _balance(self) -> None:
        leases = self._leases
        keep = share(leases.shards, await leases.live_workers())
        if len(leases.held) > keep:
            for shard in to_release(leases.held, self._order, keep):
                fencing = [
                    c.fencing
                    for (_, s), c in {**self._running, **self._paused}.items()
                    if s == shard
                ]
                await leases.release(shard, fencing)
                self._forget(shard)
                log.info("shard released to balance", shard=shard, keep=keep)
        elif len(leases.held) < keep:
            taken = False
            for shard in self._order:
                if len(leases.held) >= keep:
                    break
                if shard in leases.held:
                    continue
                rows = await leases.try_take(shard)
                if rows is None:
                    continue
                taken = True
                metrics.worker_lease_takeovers_total.inc()
                stale = sorted({row.epoch for row in rows if row.epoch != leases.epoch})
                if stale:
                    log.error(
                        "checkpoints of another epoch: shard not applied; rebuild the views",
                        shard=shard,
                        checkpoint_epochs=stale,
                        store_epoch=leases.epoch,
                    )
                for row in rows:
                    (self._running if self._usable(row) else self._paused)[
                        (row.view, row.shard)
                    ] = row.claim
                log.info(
                    "shard taken",
                    shard=shard,
                    fencing=max(row.claim.fencing for row in rows),
                    position=min(row.claim.position for row in rows),
                    worker=self.worker_id,
                )
            if taken:
                self._restart_follower()
        metrics.worker_shards_owned.set(len(leases.held))

    def _usable(self, row: CheckpointRow) -> bool:
        """Whether this worker may move the row's checkpoint: running, and of the
        store's epoch (a checkpoint of an older epoch points into a log that a restore
        replaced; the views need a rebuild, not more events)."""
        return row.running and row.epoch == self._leases.epoch

    def _forget(self, shard: int) -> None:
        for table in (self._running, self._paused, self._through):
            for key in [k for k in table if k[1] == shard]:
                del table[key]
        self._clear_lag({key for key in self._lag_labels if key[1] == shard})

    async def _sample_lag(self) -> None:
        """Lag per owned view and shard: events behind the head, and the age of the
        first one not yet applied."""
        claims = {**self._running, **self._paused}
        if not claims:
            return
        at = {key: self._at(key, claim) for key, claim in claims.items()}
        head = await self._leases.head()
        firsts = {position + 1 for position in at.values() if position < head}
        stamps = await self._leases.first_ts(sorted(firsts)) if firsts else {}
        now_ms = time.time() * 1000
        for (name, shard), position in at.items():
            behind = max(0, head - position)
            stamp = stamps.get(position + 1)
            age = 0.0 if behind == 0 or stamp is None else max(0.0, (now_ms - stamp) / 1000)
            metrics.worker_lag_events.labels(view=name, shard=str(shard)).set(behind)
            metrics.worker_lag_seconds.labels(view=name, shard=str(shard)).set(age)
            self._lag_labels.add((name, shard))
        self._clear_lag(self._lag_labels - set(claims))

    def _clear_lag(self, keys: set[Key]) -> None:
        for name, shard in list(keys):
            for gauge in (metrics.worker_lag_events, metrics.worker_lag_seconds):
                with contextlib.suppress(KeyError):
                    gauge.remove(name, str(shard))
            self._lag_labels.discard((name, shard))

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on ``stop()``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()


def _fencing(claims: dict[Key, Claim], row: CheckpointRow) -> int | None:
    claim = claims.get((row.view, row.shard))
    return None if claim is None else claim.fencing


async def _first(*events: asyncio.Event) -> None:
    """Until any of ``events`` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
