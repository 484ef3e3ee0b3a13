"""Redis pub/sub subscriptions kept alive for as long as their owners want them.

Shared by presence and membership changes: both hold one subscription per document
per process, resubscribe with a backoff after Redis fails, and hand each message to
their owner.

On a single Redis server every subscription of a client rides on ONE pub/sub
connection (``_Mux``): channels are subscribed and unsubscribed on it as documents
come and go, and one reader hands each message to its channel's owners. One
connection per channel cost a connection each (two per document: 400 for 200
documents) and a read loop each, re-armed every second by its poll timeout, whose
await chains the gateway's cyclic GC walked as young objects (docs/benchmarks.md, "The
many-docs tail"). On a Redis Cluster each subscription keeps its own connection, made
on the master of the channel's slot (the channels carry the document id as hash tag),
and a ``PUBLISH`` on any node reaches it (docs/relay.md, "Redis Cluster").
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, Final

import structlog

from app.bus import is_cluster, ready

__all__ = ["Subscription", "listen"]

log = structlog.get_logger(__name__)

_BACKOFF_MIN: Final = 0.1
_BACKOFF_MAX: Final = 5.0
_STOP_WAIT: Final = 0.5
_POLL: Final = 1.0  # seconds a read waits for a message before it looks again


class Subscription:
    """Messages of ``channel`` to ``on_message``, from construction until ``stop()``;
    ``on_subscribed`` is called each time the subscription is (again) in place."""

    def __init__(
        self,
        redis: Any,
        channel: str,
        on_message: Callable[[bytes | str], None],
        *,
        what: str,
        on_subscribed: Callable[[], None] | None = None,
    ) -> None:
        self.channel = channel
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.what = what
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._mux: _Mux | None = None
        if is_cluster(redis):
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
        else:
            self._mux = _Mux.of(redis)
            self._mux.add(self)

    async def stop(self) -> None:
        self._stopped = True
        if self._mux is not None:
            await self._mux.remove(self)
            return
        assert self._task is not None
        self._task.cancel()
        await asyncio.wait([self._task], timeout=_STOP_WAIT)


_MUXES: Final[weakref.WeakKeyDictionary[Any, _Mux]] = weakref.WeakKeyDictionary()


class _Mux:
    """Every subscription of one (single-server) client on one pub/sub connection."""

    @classmethod
    def of(cls, redis: Any) -> _Mux:
        """The client's, made with its first subscription (and gone with the client)."""
        mux = _MUXES.get(redis)
        if mux is None:
            mux = _MUXES[redis] = cls(redis)
        return mux

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.subs: dict[str, list[Subscription]] = {}
        self.live: set[str] = set()  # channels whose subscription Redis confirmed
        self.pubsub: Any = None  # the connection, once subscribed to what ``subs`` held
        self.task: asyncio.Task[None] | None = None
        self.changes: set[asyncio.Task[None]] = set()

    def add(self, sub: Subscription) -> None:
        subs = self.subs.setdefault(sub.channel, [])
        subs.append(sub)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="pubsub")
        elif len(subs) == 1 and self.pubsub is not None:
            self._change(self.pubsub.subscribe(sub.channel))
        elif sub.channel in self.live and sub.on_subscribed is not None:
            sub.on_subscribed()  # the channel is subscribed already

    async def remove(self, sub: Subscription) -> None:
        subs = self.subs.get(sub.channel, [])
        if sub in subs:
            subs.remove(sub)
        if subs:
            return
        self.subs.pop(sub.channel, None)
        self.live.discard(sub.channel)
        task = self.task
        if not self.subs and task is not None:
            # The last one: the connection closes with its reader. A subscription made
            # meanwhile starts a reader of its own (``add``).
            self.task = None
            task.cancel()
            await asyncio.wait([task], timeout=_STOP_WAIT)
        elif self.pubsub is not None:
            self._change(self.pubsub.unsubscribe(sub.channel))

    def _change(self, command: Any) -> None:
        """A (un)subscribe sent beside the reader on the same connection; a failure
        shows in the reader, which connects and subscribes everything again."""

        async def send() -> None:
            try:
                await command
            except Exception as exc:
                log.warning("subscription change failed", error=repr(exc))

        task = asyncio.create_task(send())
        self.changes.add(task)
        task.add_done_callback(self.changes.discard)

    async def _run(self) -> None:
        backoff = _BACKOFF_MIN
        while self.subs:
            pubsub: Any = None
            try:
                pubsub = self.redis.pubsub()
                subscribed = list(self.subs)
                await pubsub.subscribe(*subscribed)
                self.pubsub = pubsub
                added = [c for c in self.subs if c not in subscribed]
                if added:  # while the first subscribe was on its way
                    await pubsub.subscribe(*added)
                if backoff > _BACKOFF_MIN:
                    log.info("subscription resumed", channels=len(self.subs))
                backoff = _BACKOFF_MIN
                while self.subs:
                    message = await pubsub.get_message(timeout=_POLL)
                    if message is not None:
                        self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("subscription failed", channels=len(self.subs), error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                if self.pubsub is pubsub:  # not a newer reader's
                    self.pubsub = None
                    self.live.clear()
                if pubsub is not None:
                    await asyncio.shield(pubsub.aclose())

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, name = message.get("type"), message.get("channel")
        channel = name.decode() if isinstance(name, bytes) else name
        if not isinstance(channel, str):
            return
        subs = list(self.subs.get(channel, ()))
        if kind == "subscribe" and subs:
            self.live.add(channel)
        for sub in subs:
            try:
                if kind == "message":
                    sub.on_message(message["data"])
                elif kind == "subscribe" and sub.on_subscribed is not None:
                    sub.on_subscribed()
            except Exception:  # one owner's bug must not cost the others their messages
                log.exception("subscription callback failed", what=sub.what, channel=channel)


async def listen(
    redis: Any,
    channel: str,
    on_message: Callable[[bytes | str], None],
    *,
    stopped: Callable[[], bool],
    what: str,
    on_subscribed: Callable[[], None] | None = None,
) -> None:
    """Subscribe to ``channel`` on a connection of its own and pass every message to
    ``on_message`` until ``stopped()``; after a failure, subscribe again with a growing
    backoff. (A Redis Cluster's subscriptions; a single server's share one: ``_Mux``.)"""
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
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_POLL)
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
