"""One Redis pub/sub subscription kept alive for as long as its owner wants it.

Shared by presence and membership changes: both hold one subscription per document
per process, resubscribe with a backoff after Redis fails, and hand each message to
their owner. On a Redis Cluster the subscription is made on the master of the channel's
slot (the channels carry the document id as hash tag), and a ``PUBLISH`` on any node
reaches it (docs/relay.md, "Redis Cluster").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import structlog

from app.bus import ready

__all__ = ["Subscription", "listen"]

log = structlog.get_logger(__name__)

_BACKOFF_MIN: Final = 0.1
_BACKOFF_MAX: Final = 5.0
_STOP_WAIT: Final = 0.5


class Subscription:
    """``listen`` in a task of its own, from construction until ``stop()``."""

    def __init__(
        self,
        redis: Any,
        channel: str,
        on_message: Callable[[bytes | str], None],
        *,
        what: str,
        on_subscribed: Callable[[], None] | None = None,
    ) -> None:
        self._stopped = False
        self._task = asyncio.create_task(
            listen(
                redis,
                channel,
                on_message,
                stopped=lambda: self._stopped,
                what=what,
                on_subscribed=on_subscribed,
            ),
            name=f"{what}:{channel}",
        )

    async def stop(self) -> None:
        self._stopped = True
        self._task.cancel()
        await asyncio.wait([self._task], timeout=_STOP_WAIT)


async def listen(
    redis: Any,
    channel: str,
    on_message: Callable[[bytes | str], None],
    *,
    stopped: Callable[[], bool],
    what: str,
    on_subscribed: Callable[[], None] | None = None,
) -> None:
    """Subscribe to ``channel`` and pass every message to ``on_message`` until
    ``stopped()``; after a failure, subscribe again with a growing backoff."""
    backoff = _BACKOFF_MIN
    while not stopped():
        pubsub: Any = None
        try:
            await ready(redis)  # a cluster client subscribes by its slot map
            pubsub = redis.pubsub()
            await pubsub.subscribe(channel)
            if on_subscribed is not None:
                on_subscribed()
            if backoff > _BACKOFF_MIN:
                log.info("subscription resumed", what=what, channel=channel)
            backoff = _BACKOFF_MIN
            while not stopped():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    on_message(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if stopped():
                return
            log.warning("subscription failed", what=what, channel=channel, error=repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
        finally:
            if pubsub is not None:
                await asyncio.shield(pubsub.aclose())
