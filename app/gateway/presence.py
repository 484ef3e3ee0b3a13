"""Presence: where peers are and what they hold, never stored (PROTOCOL.md section 4).

Each session's latest state waits in this process's outbox; every ``tick`` (30 ms) the
outbox of each document goes out as ONE Redis ``PUBLISH`` on ``{prefix}presence:{<doc>}``
(``Keys.doc_presence``, app/bus/keys.py; coalesced: a session that sent ten updates
within a tick is published once, with the last). At the same tick the updates go to
this process's other sessions on the document directly. Every other gateway process
with sessions on that document is subscribed (one subscription per document per
process, like the stream reader) and hands each update to its local sessions; a process
skips what it published itself (the payload names its origin), so its own sessions
never depend on its subscription being in place yet.

Only sessions that sent a ``presence`` are ever announced (a crowd of silent viewers
costs nothing), and such a session's leaving is announced with ``state: null``. A
session that joins is sent the latest state of every peer this process has heard since
it subscribed to the document.

The payload of one publish is the origin on the first line, then one line per update,
``<session id> <presence frame>``: the frame is built once by the publisher and sent as
is by every receiving process.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any, Final

import structlog

from app.gateway.pubsub import Subscription
from app.protocol import messages

__all__ = ["Deliver", "PresenceHub"]

log = structlog.get_logger(__name__)

_STOP_WAIT: Final = 0.5

# (frame) to one local session
Deliver = Callable[[str], None]

_LEFT: Final = ',"state":null}'


class _Doc:
    """One document's presence in this process: its subscription and local sessions."""

    def __init__(self, hub: PresenceHub, doc_id: str) -> None:
        self.hub = hub
        self.doc_id = doc_id
        self.local: dict[str, Deliver] = {}
        self.peers: dict[str, str] = {}  # session id -> its latest presence frame
        self._subscription = Subscription(
            hub.redis,
            hub.channel(doc_id),
            self.received_remote,
            what="presence",
        )

    async def stop(self) -> None:
        await self._subscription.stop()

    def received_remote(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        origin, _, lines = text.partition("\n")
        if origin != self.hub.origin:
            self.received(lines.split("\n"))

    def received(self, lines: list[str]) -> None:
        for line in lines:
            session, _, frame = line.partition(" ")
            if not frame.startswith("{"):
                continue
            if frame.endswith(_LEFT):
                self.peers.pop(session, None)
            else:
                self.peers[session] = frame
            for other, deliver in list(self.local.items()):
                if other != session:
                    deliver(frame)


class PresenceHub:
    """This process's presence: the outbox, the ticker, one subscription per document."""

    def __init__(self, redis: Any, channel: Callable[[str], str], *, tick: float = 0.03) -> None:
        self.redis = redis
        self.channel = channel
        self.tick = tick
        self._docs: dict[str, _Doc] = {}
        self._outbox: dict[str, dict[str, str]] = {}  # doc -> session -> frame
        self._wake = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.origin = secrets.token_hex(8)  # this process, in the payloads it publishes

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._run(), name="presence-ticker")

    def join(self, doc_id: str, session_id: str, deliver: Deliver) -> list[str]:
        """Follow the document's presence; the latest frame of every known peer."""
        doc = self._docs.get(doc_id)
        if doc is None:
            doc = self._docs[doc_id] = _Doc(self, doc_id)
        doc.local[session_id] = deliver
        return [frame for peer, frame in doc.peers.items() if peer != session_id]

    def leave(self, doc_id: str, session_id: str) -> None:
        doc = self._docs.get(doc_id)
        if doc is None:
            return
        doc.local.pop(session_id, None)
        if not doc.local:
            del self._docs[doc_id]
            task = asyncio.create_task(doc.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def update(self, doc_id: str, session_id: str, user: str, name: str, state: str | None) -> None:
        """A local session's presence (``None``: it left); published at the next tick."""
        frame = messages.presence(session_id, user, name, state)
        self._outbox.setdefault(doc_id, {})[session_id] = frame
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.tick)  # coalesce what comes within one tick
            self._wake.clear()
            outbox, self._outbox = self._outbox, {}
            for doc_id, updates in outbox.items():
                lines = [f"{session} {frame}" for session, frame in updates.items()]
                doc = self._docs.get(doc_id)
                if doc is not None:
                    doc.received(lines)  # this process's own sessions, at once
                payload = "\n".join([self.origin, *lines])
                try:
                    await self.redis.publish(self.channel(doc_id), payload)
                except Exception as exc:  # presence is best effort: the next update heals
                    log.warning("presence publish failed", doc=doc_id, error=repr(exc))

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.wait([self._ticker], timeout=_STOP_WAIT)
        docs, self._docs = list(self._docs.values()), {}
        await asyncio.gather(*(d.stop() for d in docs), *self._stopping, return_exceptions=True)
