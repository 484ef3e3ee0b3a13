"""``python -m app snapshotter``: follow the log and write snapshots until stopped.

Its metrics (``atelier_snapshots_written_total``, ``atelier_snapshotter_position``...)
are served on ``METRICS_HOST:SNAPSHOTTER_METRICS_PORT`` (``/metrics``) while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from app.config import Settings
from app.errors import Unavailable
from app.loop import run as run_loop
from app.observability import metrics
from app.observability.exporter import exporting, watch_event_loop
from app.snapshots.snapshotter import Snapshotter
from app.store.follow import LogFollower
from app.store.pool import create_pool
from app.store.postgres import PostgresStore

__all__ = ["follow_and_snapshot", "run"]

log = structlog.get_logger(__name__)

_CLOSE_TIMEOUT = 5.0
_INITIAL_BACKOFF = 0.05
_MAX_BACKOFF = 5.0
T = TypeVar("T")


async def follow_and_snapshot(settings: Settings) -> None:
    """Runs until cancelled. Waits for PostgreSQL when it cannot be reached at start
    (retrying with backoff); the follower reconnects by itself after losing it later."""
    pool = await _retrying("connect", lambda: create_pool(settings.database_url, 2))
    try:
        store = PostgresStore(pool)
        snapshotter = Snapshotter(
            store, every=settings.snapshot_every, undo_depth=settings.undo_depth
        )
        # New events only: a document behind on snapshots gets one with its next
        # event, since the snapshotter compares against the newest snapshot stored.
        follower = LogFollower(
            settings.database_url,
            after=await _retrying("read the head", store.head),
            application_name="atelier-snapshots",
            # Snapshots have no latency to keep: at low load, one read and one pass
            # every SNAPSHOTTER_LINGER_MS instead of one per commit.
            linger=settings.snapshotter_linger_ms / 1000,
        )
        await _retrying("follow the log", follower.connect)
        try:
            log.info(
                "snapshotter following", position=follower.position, every=settings.snapshot_every
            )
            metrics.snapshotter_position.set(follower.position)
            async for batch in follower:
                try:
                    await snapshotter.on_events(batch)
                except Unavailable as exc:
                    log.warning("snapshot skipped", error=exc.message)
                metrics.snapshotter_position.set(follower.position)
        finally:
            await follower.close()
    finally:
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await pool.close()
        except TimeoutError:
            pool.terminate()


async def _retrying(what: str, make: Callable[[], Awaitable[T]]) -> T:
    """``make()`` until PostgreSQL answers, with backoff (0.05 s doubling to 5 s)."""
    delay = _INITIAL_BACKOFF
    while True:
        try:
            return await make()
        except Unavailable as exc:
            log.warning(
                "snapshotter cannot reach the database",
                step=what,
                error=exc.message,
                retry_in=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)


def run(settings: Settings) -> int:
    if settings.snapshot_every == 0:
        log.info("snapshots disabled (SNAPSHOT_EVERY=0)")
        return 0

    async def main() -> None:
        watch_event_loop()  # /healthz answers for this loop
        task = asyncio.create_task(follow_and_snapshot(settings))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("snapshotter stopped")

    with exporting(settings.metrics_host, settings.snapshotter_metrics_port, process="snapshotter"):
        run_loop(main())
    return 0
