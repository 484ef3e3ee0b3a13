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

Expiry (a process that dies announces nothing): every ``heartbeat`` the process
publishes, per document, one liveness line naming its local sessions that have a
presence (``* <session> ...``, app/gateway/liveness.py says why a line and not the
states again); a receiving process drops every remote peer that neither an update nor a
liveness line refreshed within ``ttl`` and announces ``state: null`` for it to its
local sessions, as for a leave. One task per process does both: it sweeps every
document at least once a second (and at least once per heartbeat), so a dead process's
sessions are announced gone within ``ttl`` of its last liveness line, plus one sweep.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

import orjson
import structlog

from app.bus import publish_all
from app.gateway.liveness import ALIVE, RemotePeers, liveness_line, sessions_of
from app.gateway.pubsub import Subscription
from app.observability import metrics
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
        self.remote = RemotePeers(hub.ttl)  # the peers heard from other processes
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
            self.received(lines.split("\n"), heard_at=time.monotonic())

    def received(self, lines: list[str], *, heard_at: float | None = None) -> None:
        """Updates to hand to the local sessions; ``heard_at`` is when they came from
        another process (None: from this one, whose sessions never expire)."""
        for line in lines:
            session, _, frame = line.partition(" ")
            if session == ALIVE:
                if heard_at is not None:
                    self._alive(sessions_of(frame), heard_at)
                continue
            if not frame.startswith("{"):
                continue
            if frame.endswith(_LEFT):
                self.peers.pop(session, None)
                self.remote.forget(session)
            else:
                self.peers[session] = frame
                if heard_at is not None:
                    self.remote.heard(session, heard_at)
            self._announce(session, frame)

    def _alive(self, sessions: list[str], now: float) -> None:
        # Only peers already known: a liveness line carries no state to announce.
        for session in sessions:
            if session in self.remote:
                self.remote.heard(session, now)

    def _announce(self, session: str, frame: str) -> None:
        for other, deliver in list(self.local.items()):
            if other != session:
                deliver(frame)

    def expire(self, now: float) -> None:
        """Drop the remote peers not refreshed within the TTL: ``state: null`` for each."""
        for session in self.remote.expired(now):
            frame = self.peers.pop(session, None)
            if frame is None:
                continue
            metrics.ws_presence_expired_total.inc()
            try:
                peer = orjson.loads(frame)
                left = messages.presence(session, str(peer["user"]), str(peer["name"]), None)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("presence expired: unreadable frame", doc=self.doc_id, frame=frame)
                continue
            self._announce(session, left)

    def alive_line(self) -> str | None:
        """The liveness line of this process's sessions that have a presence, if any."""
        sessions = [session for session in self.local if session in self.peers]
        return liveness_line(sessions) if sessions else None


class PresenceHub:
    """This process's presence: the outbox, the ticker, one subscription per document,
    and the keeper (liveness lines out, expired remote peers dropped)."""

    def __init__(
        self,
        redis: Any,
        channel: Callable[[str], str],
        *,
        tick: float = 0.03,
        heartbeat: float = 5.0,
        ttl: float = 15.0,
    ) -> None:
        if ttl <= heartbeat:
            raise ValueError(
                f"the presence TTL ({ttl} s) must exceed the heartbeat ({heartbeat} s)"
            )
        self.redis = redis
        self.channel = channel
        self.tick = tick
        self.heartbeat = heartbeat
        self.ttl = ttl
        self._docs: dict[str, _Doc] = {}
        self._outbox: dict[str, dict[str, str]] = {}  # doc -> session -> frame
        self._wake = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._beating: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.origin = secrets.token_hex(8)  # this process, in the payloads it publishes

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._run(), name="presence-ticker")
        self._keeper = asyncio.create_task(self._keep(), name="presence-keeper")

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
        metrics.ws_presence_updates_total.inc()
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

    async def _keep(self) -> None:
        """Sweep every document at least once a second and once per heartbeat; publish
        the liveness lines every heartbeat."""
        sweeps = max(1, math.ceil(self.heartbeat))  # per heartbeat
        for count in itertools.count(1):
            await asyncio.sleep(self.heartbeat / sweeps)
            now = time.monotonic()
            for doc in list(self._docs.values()):
                doc.expire(now)
            if count % sweeps == 0 and (self._beating is None or self._beating.done()):
                # in a task of its own: a slow Redis must not hold up the sweeps
                self._beating = asyncio.create_task(self._beat(), name="presence-heartbeat")

    async def _beat(self) -> None:
        """One liveness line per document with announced local sessions, in one round
        trip (a pipeline of PUBLISHes; on a cluster, concurrent ones)."""
        lines = {doc_id: doc.alive_line() for doc_id, doc in self._docs.items()}
        beats = {doc_id: line for doc_id, line in lines.items() if line is not None}
        if not beats:
            return
        try:
            await publish_all(
                self.redis,
                [
                    (self.channel(doc_id), f"{self.origin}\n{line}")
                    for doc_id, line in beats.items()
                ],
            )
        except Exception as exc:  # best effort: the next heartbeat comes within the TTL
            log.warning("presence heartbeat failed", docs=len(beats), error=repr(exc))

    async def close(self) -> None:
        tasks = [t for t in (self._ticker, self._keeper, self._beating) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_STOP_WAIT)
        docs, self._docs = list(self._docs.values()), {}
        await asyncio.gather(*(d.stop() for d in docs), *self._stopping, return_exceptions=True)
