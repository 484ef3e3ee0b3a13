"""Membership changes, live (PROTOCOL.md section 4): a member removed while connected
is cut off at once (4403); a role change applies to the next op.

The HTTP member endpoints (app/gateway/documents.py) change a role in the store and
then call ``MembersHub.changed``: this process's sessions of that user on that
document learn it at once, and ONE Redis ``PUBLISH`` on ``{prefix}members:{<doc>}``
(app/bus/keys.py) tells every other gateway process. Each process with sessions on the
document is subscribed (one subscription per document per process, like presence) and
hands the change to its local sessions of that user; a process skips what it published
itself (the payload names its origin).

The payload is JSON: ``{"origin": ..., "user": ..., "role": "editor" | null}`` (null:
removed). A session joins the hub before it reads its role from the store and waits
(briefly) for the subscription to be in place, so a change committed after that read
always reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from app.gateway.pubsub import Subscription
from app.observability import metrics

__all__ = ["MembersHub", "OnChange"]

log = structlog.get_logger(__name__)

# (the user's new role, or None: removed) to one local session
OnChange = Callable[[str | None], None]


class _Doc:
    """One document's membership subscription in this process, and its local sessions."""

    def __init__(self, hub: MembersHub, doc_id: str) -> None:
        self.hub = hub
        self.doc_id = doc_id
        self.local: dict[str, tuple[str, OnChange]] = {}  # session id -> (user, callback)
        self.ready = asyncio.Event()
        self._subscription = Subscription(
            hub.redis,
            hub.channel(doc_id),
            self.received_remote,
            what="members",
            on_subscribed=self.ready.set,
        )

    async def stop(self) -> None:
        await self._subscription.stop()

    def received_remote(self, data: bytes | str) -> None:
        try:
            message = orjson.loads(data)
            origin, user, role = message["origin"], message["user"], message["role"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("members: malformed message skipped", doc=self.doc_id)
            return
        if origin != self.hub.origin and isinstance(user, str):
            self.received(user, role if isinstance(role, str) else None)

    def received(self, user: str, role: str | None) -> None:
        for member, on_change in list(self.local.values()):
            if member == user:
                on_change(role)


class MembersHub:
    """This process's membership subscriptions: one per document with local sessions."""

    def __init__(
        self, redis: Any, channel: Callable[[str], str], *, ready_wait: float = 1.0
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.ready_wait = ready_wait
        self._docs: dict[str, _Doc] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self.origin = secrets.token_hex(8)

    async def join(self, doc_id: str, session_id: str, user: str, on_change: OnChange) -> None:
        """Follow ``user``'s membership of the document; returns once the subscription
        is in place (or after ``ready_wait`` if Redis is not answering)."""
        doc = self._docs.get(doc_id)
        if doc is None:
            doc = self._docs[doc_id] = _Doc(self, doc_id)
        doc.local[session_id] = (user, on_change)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.ready_wait):
                await doc.ready.wait()

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

    async def changed(self, doc_id: str, user: str, role: str | None) -> None:
        """``user``'s role on the document is now ``role`` (None: removed): this
        process's sessions at once, the other processes through Redis."""
        doc = self._docs.get(doc_id)
        if doc is not None:
            doc.received(user, role)
        payload = orjson.dumps({"origin": self.origin, "user": user, "role": role})
        try:
            await self.redis.publish(self.channel(doc_id), payload)
        except Exception as exc:  # the store is the truth; the next hello reads it
            metrics.redis_errors_total.labels(where="members").inc()
            log.warning("members publish failed", doc=doc_id, error=repr(exc))

    async def close(self) -> None:
        docs, self._docs = list(self._docs.values()), {}
        await asyncio.gather(*(d.stop() for d in docs), *self._stopping, return_exceptions=True)
