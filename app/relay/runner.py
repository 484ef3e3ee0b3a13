"""``python -m app relay``: run the relay until SIGINT or SIGTERM.

The process owns one Redis client and the relay's two PostgreSQL connections (lease
and log follower); a signal cancels the relay, which closes them, and the lease goes
with the lease connection, so a waiting relay takes over within its poll interval.
Its metrics are served on ``METRICS_HOST:RELAY_METRICS_PORT`` (``/metrics``) for as
long as it runs, a standby's too (``atelier_relay_lease_held`` 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from app.bus import Keys, create_redis
from app.config import Settings
from app.loop import run as run_loop
from app.observability.exporter import exporting, watch_event_loop
from app.relay.relay import Relay, RelayConfig

__all__ = ["config_from", "relay_forever", "run"]

log = structlog.get_logger(__name__)


def config_from(settings: Settings) -> RelayConfig:
    """The relay's configuration from the process settings."""
    return RelayConfig(
        dsn=settings.database_url,
        keys=Keys(settings.redis_prefix),
        maxlen=settings.relay_stream_maxlen,
        ttl=settings.relay_stream_ttl,
        window=settings.relay_republish_window,
        linger=settings.relay_linger_ms / 1000,
    )


async def relay_forever(settings: Settings) -> None:
    """Runs until cancelled."""
    redis = create_redis(settings.redis_url, cluster=settings.redis_cluster)
    try:
        config = config_from(settings)
        log.info(
            "relay starting",
            prefix=config.keys.prefix,
            maxlen=config.maxlen,
            ttl=config.ttl,
            window=config.window,
        )
        await Relay(config, redis).run()
    finally:
        await redis.aclose()


def run(settings: Settings) -> int:
    """Run the relay in this process: 0 after a clean stop by signal, 1 when it stopped
    on an invariant breach (a hole in the log), which it never papers over."""

    async def main() -> int:
        watch_event_loop()  # /healthz answers for this loop
        task = asyncio.create_task(relay_forever(settings))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception:
            log.exception("relay failed")
            return 1
        log.info("relay stopped")
        return 0

    with exporting(settings.metrics_host, settings.relay_metrics_port, process="relay"):
        return run_loop(main())
