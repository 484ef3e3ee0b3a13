"""``python -m app worker [--id NAME]``: run one read worker until SIGINT or SIGTERM.

A signal asks the worker to stop: it finishes the batch in hand, disowns its shards
and ends its lease session (which releases every lock at once), so the other workers
take its shards within a lease interval. A second signal, or a worker that has not
stopped within ``_STOP_GRACE`` seconds, cancels it (its batch rolls back). Metrics
are served on ``METRICS_HOST:WORKER_METRICS_PORT`` while it runs. The cyclic GC runs
its full collections when the worker is idle (``collector.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from typing import Final

import structlog

from app.config import Settings
from app.loop import run as run_loop
from app.observability.exporter import exporting, watch_event_loop
from app.workers.collector import Collector
from app.workers.worker import Worker, WorkerConfig

__all__ = ["config_from", "default_id", "run"]

log = structlog.get_logger(__name__)

_STOP_GRACE: Final = 10.0


def default_id() -> str:
    """``host-pid``: unique among live workers, readable in ``read.checkpoints.owner``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def config_from(settings: Settings, worker_id: str | None = None) -> WorkerConfig:
    return WorkerConfig(
        dsn=settings.database_url,
        worker_id=worker_id or default_id(),
        batch=settings.worker_batch,
        cache_docs=settings.worker_cache_docs,
        lease_interval=settings.worker_lease_interval_ms / 1000,
        linger=settings.worker_linger_ms / 1000,
    )


async def _collect(worker: Worker, collector: Collector) -> None:
    """Give the collector its chance every second (a full collection when idle)."""
    while True:
        await asyncio.sleep(1.0)
        collector.tick(idle_for=time.monotonic() - worker.last_batch_at)


def run(settings: Settings, worker_id: str | None = None) -> int:
    """0 after a clean stop by signal; 1 when the worker stopped on an invariant breach
    (a hole in the log, a restored store), which it never papers over."""
    config = config_from(settings, worker_id)

    async def main() -> int:
        watch_event_loop()  # /healthz answers for this loop
        worker = Worker(config)
        collector = Collector()
        collector.install()
        task = asyncio.create_task(worker.run())
        collecting = asyncio.create_task(_collect(worker, collector))
        task.add_done_callback(lambda _: collecting.cancel())
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if worker.stopping:
                task.cancel()  # the second signal: now
                return
            log.info("worker stopping", worker=config.worker_id)
            worker.stop()
            loop.call_later(_STOP_GRACE, task.cancel)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        log.info(
            "worker starting",
            worker=config.worker_id,
            batch=config.batch,
            cache_docs=config.cache_docs,
            lease_interval=config.lease_interval,
        )
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception:
            log.exception("worker failed", worker=config.worker_id)
            return 1
        log.info("worker stopped", worker=config.worker_id, applied=worker.applied)
        return 0

    with exporting(settings.metrics_host, settings.worker_metrics_port, process="worker"):
        return run_loop(main())
