"""Follow the global log in commit order, without ever skipping a row.

``LogFollower`` reads ``events`` by position after a cursor, in batches, on a
dedicated connection (not from the pool: LISTEN is per session). It is woken by
``LISTEN atelier_log`` (``atelier_append`` notifies the new head at commit) and polls
every ``poll_interval`` seconds anyway, so a lost notification costs at most that
long. When the connection drops it reconnects with backoff, LISTENs again and
resumes from its cursor; nothing is lost, since the cursor, not the notifications,
says what to read. The relay and any read model that follows PostgreSQL use it::

    async with LogFollower(dsn, after=checkpoint, epoch=checkpoint_epoch) as log:
        async for batch in log:
            ...  # batch: list[StoredEvent], positions cursor+1 .. cursor+len(batch)

Two conditions are invariant breaches, not routine events, and raise instead of being
papered over: a hole in the positions (``LogGapError``) and a store whose epoch or
identity changed under the cursor (``EpochChanged``: a restore; every cursor of the
old epoch is void, DESIGN.md "Global order").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Final

import asyncpg

from app.errors import Unavailable
from app.store._errors import is_unavailable
from app.store._rows import EVENT_COLUMNS, to_event
from app.store.pool import INDEX_READS
from app.store.ports import StoredEvent

__all__ = ["CHANNEL", "READ", "SESSION", "EpochChanged", "LogFollower", "LogGapError"]

CHANNEL: Final = "atelier_log"
# The one read of the log (public for scripts/bench_follow.py and the tests).
READ: Final = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
_META: Final = (
    "SELECT m.store_id::text AS store_id, m.epoch, h.last_position"
    " FROM store_meta AS m, log_head AS h"
)

# The read above has no ``doc_id``, so no partition of ``events`` can be pruned when it
# is planned. Left to ``plan_cache_mode = auto``, PostgreSQL plans it afresh (a custom
# plan over all 16 partitions) on every execution of the prepared statement once the
# table is large, because the generic plan's estimate for ``position > $1 ... LIMIT $2``
# looks dearer than a custom one: 0.61 ms of the backend's CPU per read at the head of
# 200,000 events against 0.25 ms with the generic plan (scripts/bench_follow.py), and
# the relay, the worker and the snapshotter each read once per commit at low load. The
# generic plan (a Merge Append of the partitions' position indexes) is the right one for
# every cursor, so the follower's session always takes it (docs/benchmarks.md, "The log
# followers' plans and the event loop").
#
# A generic plan is made once, at the session's first read, from the statistics and the
# table sizes of that moment, and kept until something invalidates it (an ANALYZE, DDL).
# A follower that starts on a new store reads a log that is empty (migration 0006
# analyzes it empty), so the cheapest plan then is a Sort over sequential scans of the
# partitions; kept, that plan reads the whole log on every read as it grows (2.4 ms at
# 20,000 events of one document, against 0.29 ms; with autovacuum off or behind, for
# good). ``INDEX_READS`` (app/store/pool.py: sequential scans off, and JIT with them)
# leaves the position indexes as the only way to read the log, whatever the statistics
# said when the plan was made (docs/benchmarks.md, "The followers' plan on a new
# store"), as ``atelier_append`` does for its own plans.
SESSION: Final = {"plan_cache_mode": "force_generic_plan", **INDEX_READS}

log = logging.getLogger(__name__)


class LogGapError(RuntimeError):
    """The log has a hole or went backwards: positions are dense by construction, so
    this is an invariant breach (manual SQL, a restore without an epoch bump). Stop and
    alert; never skip."""


class EpochChanged(RuntimeError):
    """The store was restored or replaced under the cursor: resync from scratch."""


class LogFollower:
    """An async iterator of batches of ``StoredEvent``, in position order, each
    position exactly once, starting after ``after``.

    ``epoch``, when given, is the epoch the cursor belongs to; a store at another
    epoch raises ``EpochChanged`` instead of being read with a void cursor.

    ``linger`` (seconds, default 0): after a batch that caught up with the head, wait
    this long before the next read, so that at low load the commits of that time come
    as one batch (one read, and one transaction of whoever consumes it) instead of one
    each. A consumer with no latency to keep (the snapshotter) lingers; 0 reads at
    every notification.
    """

    def __init__(
        self,
        dsn: str,
        *,
        after: int = 0,
        epoch: int | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        read_timeout: float = 10.0,
        max_backoff: float = 5.0,
        application_name: str = "atelier-follower",
        linger: float = 0.0,
    ) -> None:
        if after < 0 or batch_size < 1 or poll_interval <= 0 or linger < 0:
            raise ValueError("need after >= 0, batch_size >= 1, poll_interval > 0 and linger >= 0")
        self._dsn = dsn
        self._position = after
        self._epoch = epoch
        self._store_id: str | None = None
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._read_timeout = read_timeout
        self._max_backoff = max_backoff
        self._application_name = application_name
        self._linger = linger
        self._conn: asyncpg.Connection | None = None
        self._wake = asyncio.Event()
        self._reconnects = 0
        self._closed = False

    @property
    def position(self) -> int:
        """The position of the last event handed out (the cursor)."""
        return self._position

    @property
    def epoch(self) -> int | None:
        """The store's epoch, known once connected."""
        return self._epoch

    @property
    def reconnects(self) -> int:
        """How many times the connection was lost and re-established."""
        return self._reconnects

    @property
    def backend_pid(self) -> int | None:
        """The server process of the current connection (for tests and diagnostics)."""
        return None if self._conn is None else int(self._conn.get_server_pid())

    async def __aenter__(self) -> LogFollower:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[list[StoredEvent]]:
        return self.batches()

    async def connect(self) -> None:
        """Open the connection and LISTEN. Raises ``Unavailable`` when the database
        cannot be reached now (later losses are retried forever by ``batches``)."""
        try:
            await self._connect()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if _broken(exc):
                raise Unavailable(f"event store unavailable during follow: {exc}") from exc
            raise

    async def close(self) -> None:
        """Stop: ``batches`` returns at its next step; the connection is closed."""
        self._closed = True
        self._wake.set()
        await self._drop()

    async def batches(self) -> AsyncIterator[list[StoredEvent]]:
        """Yield each following batch as soon as it is committed; runs until closed."""
        if self._conn is None:
            await self.connect()
        while not self._closed:
            # Cleared BEFORE the read: a notification that arrives while we read sets
            # it again, so the wait below returns at once and nothing waits a poll.
            self._wake.clear()
            try:
                rows, read_on = await self._read()
            except Exception as exc:
                if not _broken(exc):
                    raise
                log.warning("log follower lost its connection: %r", exc)
                await self._reconnect()
                continue
            if rows:
                self._position = rows[-1].position
                yield rows
                if read_on:
                    continue  # more is waiting: read on without sleeping
                if self._linger and not self._closed:
                    # Caught up: let the next commits gather for one read and one batch.
                    # A notification meanwhile sets the flag, so nothing waits a poll.
                    await asyncio.sleep(self._linger)
            # Timing out is the fallback poll: read even without a notification.
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # lands as its inner await completes (CPython gh-86296), and a follower that
            # ignores its cancel keeps a stopping process alive.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()

    async def _read(self) -> tuple[list[StoredEvent], bool]:
        """The next contiguous events after the cursor, and whether to read on at once."""
        conn = self._conn
        if conn is None or conn.is_closed():
            raise asyncpg.ConnectionDoesNotExistError("the follower's connection is closed")
        rows = await conn.fetch(READ, self._position, self._batch_size, timeout=self._read_timeout)
        if rows is None:
            # asyncpg answers None instead of raising when the connection is lost under
            # the read (seen while the server restarts): a lost connection, not a crash.
            raise asyncpg.ConnectionDoesNotExistError("the follower's read got no answer")
        events = [to_event(row) for row in rows]
        # THE CONTIGUITY CHECK. The first row must be cursor + 1 and each next one the
        # one after; anything else is raised, never skipped. Why a hole can only be a
        # breach, never a row that "commits a moment later": positions come from the
        # single log_head row, bumped by the LAST statement of each append
        # transaction (atelier_append, migration 0002), and the row lock that bump
        # takes is held until that transaction commits. The next writer's bump waits
        # on the lock, so it can take position p + 1 only once the holder of p is
        # committed and visible (or rolled back, in which case its bump is undone and
        # p is handed out again). Hence every position a reader can see has all lower
        # positions committed and visible too: "everything after p, in order" never
        # misses a late commit, unlike a sequence (DESIGN.md, "Global order"; the
        # negative control in tests/contract/test_global_order.py shows the miss).
        # A hole after a contiguous prefix: hand out the prefix now; the next read starts
        # at the hole and raises.
        expected = self._position + 1
        for index, event in enumerate(events):
            if event.position != expected:
                if index:
                    return events[:index], True
                raise LogGapError(
                    f"hole in the global log: expected position {expected}, "
                    f"read {event.position} (cursor {self._position})"
                )
            expected += 1
        return events, len(events) == self._batch_size

    async def _connect(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            server_settings={**SESSION, "application_name": self._application_name},
            command_timeout=self._read_timeout,
        )
        try:
            meta = await conn.fetchrow(_META)
            self._check_store(str(meta["store_id"]), int(meta["epoch"]), int(meta["last_position"]))
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        self._wake.set()  # read at once: commits may have happened while disconnected

    def _check_store(self, store_id: str, epoch: int, head: int) -> None:
        if self._store_id is not None and store_id != self._store_id:
            raise EpochChanged(
                f"the store changed under the follower ({self._store_id} -> {store_id})"
            )
        if self._epoch is not None and epoch != self._epoch:
            raise EpochChanged(f"the store's epoch is {epoch}, the cursor's is {self._epoch}")
        if head < self._position:
            raise LogGapError(
                f"the log's head {head} is behind the cursor {self._position}: "
                "restored without an epoch bump?"
            )
        self._store_id = store_id
        self._epoch = epoch

    async def _reconnect(self) -> None:
        await self._drop()
        delay = 0.05
        while not self._closed:
            try:
                await self._connect()
            except Exception as exc:
                if not _broken(exc):
                    raise
                log.warning("log follower cannot reconnect (retry in %.2fs): %r", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff)
            else:
                self._reconnects += 1
                log.info("log follower reconnected at position %d", self._position)
                return

    async def _drop(self) -> None:
        # No UNLISTEN needed: the server forgets a session's listeners when it ends.
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.remove_termination_listener(self._on_terminated)
        if conn.is_closed():
            return
        try:
            await conn.close(timeout=2)
        except Exception:
            conn.terminate()

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._wake.set()

    def _on_terminated(self, conn: Any) -> None:
        self._wake.set()  # read (and fail, and reconnect) now rather than at the next poll


def _broken(exc: BaseException) -> bool:
    """Whether ``exc`` says the follower's connection can no longer be used, so that a
    new one is the remedy: the database is unavailable (``is_unavailable``), or
    asyncpg's protocol on this connection is in a state it does not come back from
    (``InterfaceError`` such as "another operation is in progress" after a statement
    was cut off, ``InternalClientError`` after a backend terminated mid-message).
    The connection is the follower's own, so reconnecting from the cursor is always
    safe; a SQL error of ours, a hole or a changed store still raise."""
    return is_unavailable(exc) or isinstance(
        exc, asyncpg.InterfaceError | asyncpg.InternalClientError
    )
