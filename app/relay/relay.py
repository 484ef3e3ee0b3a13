"""The relay: follow the global log in commit order and publish each event to its
document's Redis stream, exactly once, for as long as it holds the lease.

    lease ─▶ prepare (progress in Redis vs the store) ─▶ follow ─▶ publish batch ─┐
      ▲                     ▲                               ▲                      │
      │                     └── Redis lost data, epoch ─────┴── next batch ◀───────┘
      └── lease lost

What each part protects (DESIGN.md I4: every subscriber gets every event of its
document exactly once, in order, across Redis restarts and data loss):

- **Order and no skip**: the ``LogFollower`` hands out positions densely in commit
  order, so the relay publishes each document's events in version order.
- **Exactly once in Redis**: each entry has the explicit id ``<position>-0``; Redis
  refuses an id at or below a stream's top, and the relay counts that refusal as
  "already published". A stream's events of a batch go in one atomic script call that
  stops at the first failure, so no stream ever has a hole below its top for that
  refusal to hide (app/bus/addscript.py). Crashing anywhere between the adds and the
  position write and starting again from the recorded position duplicates nothing.
- **Redis losing data**: the progress (``relay:position``, ``relay:epoch``,
  ``relay:store``) is checked on start, with every batch (``SET … GET`` returns what the
  key held) and every second by the watcher. Missing, moved, ahead of the log's head,
  or of another store or epoch: the relay starts again from ``head - window`` and
  republishes that window (explicit ids make it idempotent). Consumers fill anything
  older from PostgreSQL (``app.bus.read_after``).
- **Another store or epoch** (a restore): the old streams hold ids the new positions
  would collide with, so they are deleted before the window is republished, and the
  entries carry the new epoch: consumers drop their cursors and resync.
- **Redis down**: each batch is retried with backoff until it goes through; the log
  follower waits meanwhile. **PostgreSQL down**: the follower reconnects by itself;
  losing the lease connection means losing the lease, and the relay queues for it
  again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import structlog

from app.bus import Keys, Redis, publish, read_progress, reset_progress, wipe_streams
from app.errors import Unavailable
from app.observability import metrics
from app.relay.lease import Lease, LeaseLost, StoreMeta
from app.store.follow import EpochChanged, LogFollower
from app.store.ports import StoredEvent

__all__ = ["Relay", "RelayConfig"]

log = structlog.get_logger(__name__)
# Checked before building the debug line of a batch (logging caches the answer).
_debugging = logging.getLogger(__name__).isEnabledFor

_INITIAL_BACKOFF: Final = 0.05
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """What a relay needs besides its Redis client; ``runner.config_from`` maps Settings.

    ``maxlen``: entries kept per document stream (``MAXLEN ~``). ``ttl``: seconds a
    stream lives after its last publish (0: no expiry). ``window``: events republished
    after Redis lost the progress. ``check_interval``: seconds between heartbeats
    (lease, epoch, lag, progress still in Redis). ``linger``: seconds the follower waits
    after a batch that caught up before reading again (``LogFollower``'s linger), so that
    under load one round trip to Redis carries the commits of that time; a commit after a
    quiet spell is read at once.
    """

    dsn: str
    keys: Keys
    maxlen: int = 1000
    ttl: int = 86400
    window: int = 10000
    batch_size: int = 500
    poll_interval: float = 1.0
    lease_poll: float = 1.0
    check_interval: float = 1.0
    max_backoff: float = 5.0
    linger: float = 0.0


class _Restart(Exception):
    """Start again from ``prepare``: Redis lost data, or the store changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Relay:
    """Runs until cancelled (``run``); a cancelled relay releases its lease."""

    def __init__(self, config: RelayConfig, redis: Redis) -> None:
        self._config = config
        self._redis = redis
        self._keys = config.keys
        self._lease = Lease(config.dsn, config.keys.prefix, poll_interval=config.lease_poll)
        self._position = 0  # last position published (this lease term)
        self._expected: int | None = None  # what relay:position holds, as we wrote it
        self._last_ts = 0
        self._head = 0
        self._follower: LogFollower | None = None
        self.published = 0  # entries this relay added (tests, diagnostics)
        self.republishes = 0  # times it started again from the window
        self.started_from = 0  # the position the last prepare chose

    @property
    def holding(self) -> bool:
        """Whether this relay holds the lease now."""
        return self._lease.held

    @property
    def position(self) -> int:
        """The last position published in this lease term."""
        return self._position

    @property
    def lease(self) -> Lease:
        return self._lease

    @property
    def follower(self) -> LogFollower | None:
        return self._follower

    async def run(self) -> None:
        """Queue for the lease, publish while holding it, queue again when it is lost."""
        while True:
            await self._lease.acquire()  # on cancellation it closes its connection
            try:
                metrics.relay_lease_held.set(1)
                await self._lead()
            except LeaseLost as exc:
                log.warning("relay lease lost; queueing for it again", error=str(exc))
            finally:
                metrics.relay_lease_held.set(0)
                await self._lease.release()
            # Not at once: a lease that fails right after it is taken (a database
            # without the schema, say) must not become a busy loop.
            await asyncio.sleep(self._config.lease_poll)

    async def _lead(self) -> None:
        reason: str | None = None
        while True:
            _honour_cancellation()
            meta = await self._lease.meta()
            start = await self._prepare(meta, reason)
            try:
                await _first_failure(
                    self._follow(start, meta.epoch),
                    self._watch(meta),
                    before_cancel=self._close_follower,
                )
            except _Restart as exc:
                reason = exc.reason
                log.warning("relay restarting", reason=reason, position=self._position)

    # -- where to start --------------------------------------------------------------

    async def _prepare(self, meta: StoreMeta, forced: str | None) -> int:
        """Decide the starting position from Redis's progress and the store; republish
        the window (and first delete stale streams) when the progress is void."""
        self._head = meta.head
        progress = await self._retry(
            "read progress", lambda: read_progress(self._redis, self._keys)
        )
        reason = forced
        if progress.store is not None and progress.store != meta.store_id:
            reason = "store"
        elif progress.epoch is not None and progress.epoch != meta.epoch:
            reason = "epoch"
        elif progress.position is None or progress.epoch is None or progress.store is None:
            reason = reason or "missing"
        elif progress.position > meta.head:
            reason = "ahead"
        if reason is None:
            assert progress.position is not None
            self._resume_at(progress.position)
            log.info("relay resuming", position=progress.position, head=meta.head)
            return progress.position
        # Streams of another store or epoch (or of unknown origin) hold ids that new
        # positions would collide with: Redis would refuse the new entries as
        # "already published". Delete them first; consumers heal from PostgreSQL.
        stale = reason in {"store", "epoch", "ahead"} or None in (progress.store, progress.epoch)
        wiped = 0
        if stale:
            wiped = await self._retry("wipe streams", lambda: wipe_streams(self._redis, self._keys))
        start = max(0, meta.head - self._config.window)
        await self._retry(
            "reset progress",
            lambda: reset_progress(
                self._redis, self._keys, position=start, epoch=meta.epoch, store=meta.store_id
            ),
        )
        self._resume_at(start)
        self.republishes += 1
        metrics.relay_republishes_total.labels(reason=reason).inc()
        (log.info if meta.head == 0 and forced is None else log.warning)(
            "relay republishing the window",
            reason=reason,
            start=start,
            head=meta.head,
            epoch=meta.epoch,
            recorded=progress.position,
            streams_deleted=wiped,
        )
        return start

    def _resume_at(self, position: int) -> None:
        self._position = self._expected = self.started_from = position
        metrics.relay_position.set(position)

    # -- publishing ------------------------------------------------------------------

    async def _follow(self, start: int, epoch: int) -> None:
        follower = LogFollower(
            self._config.dsn,
            after=start,
            epoch=epoch,
            batch_size=self._config.batch_size,
            poll_interval=self._config.poll_interval,
            application_name="atelier-relay",
            linger=self._config.linger,
        )
        self._follower = follower
        try:
            await self._connect(follower)
            async for batch in follower:
                await self._publish(batch, epoch)
        except EpochChanged as exc:
            raise _Restart("epoch") from exc
        finally:
            self._follower = None
            await follower.close()

    async def _close_follower(self) -> None:
        # Closed BEFORE its task is cancelled: on Python 3.11 a cancellation that lands
        # just as a NOTIFY wakes the follower's asyncio.wait_for is swallowed
        # (CPython gh-86296), and the task would follow on for ever. A closed
        # follower's iterator ends at its next step whatever happens to the cancel.
        follower = self._follower
        if follower is not None:
            await follower.close()

    async def _connect(self, follower: LogFollower) -> None:
        delay = _INITIAL_BACKOFF
        while True:
            try:
                await follower.connect()
                return
            except Unavailable as exc:
                log.warning("relay cannot reach the log", error=exc.message, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.max_backoff)

    async def _publish(self, batch: Sequence[StoredEvent], epoch: int) -> None:
        last = batch[-1]
        result = await self._retry(
            "publish",
            lambda: publish(
                self._redis,
                self._keys,
                batch,
                epoch=epoch,
                position=last.position,
                maxlen=self._config.maxlen,
                ttl=self._config.ttl,
            ),
        )
        previous, expected = result.previous_position, self._expected
        self._position = self._expected = last.position
        self._last_ts = last.ts
        self.published += result.published
        metrics.relay_published_total.inc(result.published)
        metrics.relay_batch_events.observe(len(batch))
        if result.already:
            metrics.relay_already_published_total.inc(result.already)
        metrics.relay_position.set(last.position)
        if _debugging(logging.DEBUG):
            _log_published(batch, result.published, result.already)
        self._set_lag()
        # relay:position held something other than what we last wrote (or our own
        # value, when a retried pipeline had run before its connection dropped):
        # Redis lost data under us. Start again from the window.
        if previous not in (expected, last.position):
            raise _Restart("missing" if previous is None else "moved")

    async def _retry(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` until Redis answers, with backoff; never gives up (Redis is a
        transport: the relay waits for it rather than crash)."""
        delay = _INITIAL_BACKOFF
        failures = 0
        while True:
            try:
                result = await make()
            except Unavailable as exc:
                _honour_cancellation()
                failures += 1
                metrics.relay_redis_errors_total.inc()
                log.warning(
                    "relay: redis unavailable", step=what, error=exc.message, retry_in=delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.max_backoff)
                continue
            _honour_cancellation()
            if failures:
                log.info("relay: redis is back", step=what, failures=failures)
            return result

    # -- the heartbeat ---------------------------------------------------------------

    async def _watch(self, started: StoreMeta) -> None:
        """Every ``check_interval``: is the lease still ours, the store the same, the
        progress still in Redis? Updates the lag gauges on the way."""
        lost = self._lease.lost
        while True:
            # asyncio.timeout, not wait_for: it never swallows a cancellation (3.11).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.check_interval):
                    await lost.wait()
            if lost.is_set():
                raise LeaseLost("the lease connection closed")
            _honour_cancellation()
            meta = await self._lease.meta()
            if meta.store_id != started.store_id:
                raise _Restart("store")
            if meta.epoch != started.epoch:
                raise _Restart("epoch")
            self._head = meta.head
            self._set_lag()
            try:
                progress = await read_progress(self._redis, self._keys)
            except Unavailable:
                metrics.relay_redis_errors_total.inc()
                continue  # the publisher retries and logs; nothing to decide here
            finally:
                _honour_cancellation()
            if progress.position is None or progress.epoch is None or progress.store is None:
                raise _Restart("missing")

    def _set_lag(self) -> None:
        behind = max(0, self._head - self._position)
        metrics.relay_lag_events.set(behind)
        if behind == 0 or not self._last_ts:
            metrics.relay_lag_seconds.set(0)
        else:
            metrics.relay_lag_seconds.set(max(0.0, time.time() - self._last_ts / 1000))


def _log_published(batch: Sequence[StoredEvent], published: int, already: int) -> None:
    """The debug line of one published batch: every event's position, document, version
    and op id (the stream entry carries the op id too, in ``e``)."""
    log.debug(
        "relay published",
        first=batch[0].position,
        last=batch[-1].position,
        published=published,
        already=already,
        events=[
            {"position": e.position, "doc": e.doc_id, "user": e.actor, "v": e.v, "op_id": e.op_id}
            for e in batch
        ],
    )


def _honour_cancellation() -> None:
    """Raise ``CancelledError`` if this task was cancelled and a library swallowed it.

    On Python 3.11, ``asyncio.wait_for`` returns its inner result when the cancellation
    lands just as the inner await completes (CPython gh-86296), and redis-py awaits
    every socket write through it. The task still counts the request
    (``Task.cancelling()``), so each loop of the relay checks it here: a stop signal
    is never lost, and a cancelled relay never publishes on. Never call it inside an
    ``asyncio.timeout`` block (its own cancellation is counted until the block exits).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _first_failure(
    *coros: Coroutine[Any, Any, None], before_cancel: Callable[[], Awaitable[None]]
) -> None:
    """Run ``coros`` together until one of them raises (or this is cancelled); then
    ``before_cancel()``, cancel the others and raise that exception. (A TaskGroup
    would wrap it in an ExceptionGroup.)"""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await before_cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
