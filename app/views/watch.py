"""``min_v``: wait until the read side has reached a document's version.

One ``ReadWatch`` per gateway process holds ONE dedicated connection (LISTEN is per
session, so not from the pool) that LISTENs on ``atelier_read``: the read worker
notifies in each batch's transaction, so the notification arrives exactly when the
batch's rows become visible. A notification wakes every waiter of the documents it
names (or every waiter, when it names none or cannot be read); each woken waiter
re-reads ``read.doc_state.v``. The version, not the notification, is the truth: a
waiter also re-reads every ``recheck`` seconds (1 s), so a lost notification or a
lost connection costs at most that long, and there is no busy polling.

The connection is reconnected with exponential backoff when it drops; every waiter is
woken on reconnect, since notifications sent meanwhile are lost.

When the versions are read from a streaming replica (``DATABASE_READ_URL``), the
notification still comes from the primary (a hot standby delivers none), and it may
arrive before the replica has replayed the batch. Then ``replay`` is given: the
documents notified that have waiters are gathered, and one task per process waits
until the replica has replayed what the primary had written when they arrived
(``ReplicaReplay.caught_up``, at most ``replay_limit`` seconds), then wakes their
waiters, which re-read the replica. Notifications that arrive meanwhile are gathered
for the next round. A waiter whose first read finds the replica behind asks for a
round too (a batch notified before it came may not be replayed yet). Without waiters,
a notification costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
import orjson
import structlog

from app.errors import Timeout
from app.store._errors import is_unavailable

__all__ = ["CHANNEL", "ReadWatch", "docs_in"]

CHANNEL: Final = "atelier_read"
_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KEEPALIVE: Final = 15.0  # seconds between liveness checks of an idle connection
_REPLAY_LIMIT: Final = 5.0  # seconds a round waits for the replica before waking anyway

log = structlog.get_logger(__name__)

Versions = Callable[[str], Awaitable[int | None]]
Replay = Callable[[], Awaitable[None]]


def docs_in(payload: str) -> list[str] | None:
    """The document ids a notification names, or None for "maybe any document".

    Accepted: a JSON list of ids, a JSON object with a ``docs`` list, or ids separated
    by commas (ids never contain one). Anything else (a position, empty) wakes all.
    """
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parts = payload.split(",")
        return parts if payload and all(_ID.fullmatch(p) for p in parts) else None
    if isinstance(data, dict):
        data = data.get("docs")
    if isinstance(data, str):
        data = [data]
    if isinstance(data, list) and data and all(isinstance(d, str) for d in data):
        return data
    return None


class ReadWatch:
    """Wake ``wait_for`` callers when the read side moves; see the module docstring."""

    def __init__(
        self,
        dsn: str,
        versions: Versions,
        *,
        recheck: float = 1.0,
        max_backoff: float = 5.0,
        application_name: str = "atelier-read-watch",
        replay: Replay | None = None,
        replay_limit: float = _REPLAY_LIMIT,
    ) -> None:
        self._dsn = dsn
        self._versions = versions
        self._replay = replay
        self._replay_limit = replay_limit
        self._held: set[str] = set()  # documents notified, waiting for the replica
        self._held_all = False
        self._releasing: asyncio.Task[None] | None = None
        self._recheck = recheck
        self._max_backoff = max_backoff
        self._application_name = application_name
        self._signals: dict[str, asyncio.Event] = {}
        self._waiters: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set once the first LISTEN is in place
        self.reconnects = 0
        self.backend_pid: int | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="read-watch")

    async def close(self) -> None:
        for task in (self._task, self._releasing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._releasing = None

    @property
    def waiting(self) -> int:
        return sum(self._waiters.values())

    async def wait_for(self, doc_id: str, min_v: int, within: float) -> int:
        """The view's version of ``doc_id`` once it is at least ``min_v``; ``Timeout``
        (504) after ``within`` seconds."""
        self._waiters[doc_id] = self._waiters.get(doc_id, 0) + 1
        try:
            async with asyncio.timeout(within):
                first = True
                while True:
                    # Taken BEFORE the read: a wake between the read and the wait sets
                    # this very event, so it is never missed.
                    signal = self._signals.setdefault(doc_id, asyncio.Event())
                    v = await self._versions(doc_id)
                    if v is not None and v >= min_v:
                        return v
                    if first and self._replay is not None:
                        # A batch notified before this waiter came may not be replayed
                        # yet: one round wakes it once the replica has what is written.
                        self._hold([doc_id])
                    first = False
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._recheck):
                            await signal.wait()
        except TimeoutError:
            raise Timeout(
                f"the read side did not reach version {min_v} within {within:g} s"
            ) from None
        finally:
            left = self._waiters[doc_id] - 1
            if left:
                self._waiters[doc_id] = left
            else:
                del self._waiters[doc_id]
                self._signals.pop(doc_id, None)

    def wake(self, doc_id: str) -> None:
        signal = self._signals.pop(doc_id, None)
        if signal is not None:
            signal.set()

    def wake_all(self) -> None:
        signals, self._signals = self._signals, {}
        for signal in signals.values():
            signal.set()

    # -- the connection ------------------------------------------------------------

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        docs = docs_in(payload)
        if self._replay is not None:
            # Only documents waited on now; a waiter that comes later and reads the
            # replica behind starts a round of its own (``wait_for``).
            if docs is None and self._waiters:
                self._hold(None)
            elif docs is not None and (waited := [d for d in docs if d in self._waiters]):
                self._hold(waited)
            return
        if docs is None:
            self.wake_all()
            return
        for doc_id in docs:
            self.wake(doc_id)

    def _hold(self, docs: list[str] | None) -> None:
        """Wake these waiters once the replica has replayed what the primary has now."""
        if docs is None:
            self._held_all = True
        else:
            self._held.update(docs)
        if self._releasing is None or self._releasing.done():
            self._releasing = asyncio.create_task(self._release(), name="read-watch-replay")

    async def _release(self) -> None:
        assert self._replay is not None
        while self._held or self._held_all:
            docs, every = self._held, self._held_all
            self._held, self._held_all = set(), False
            try:
                async with asyncio.timeout(self._replay_limit):
                    await self._replay()
            except TimeoutError:
                log.warning("replica behind the primary", waited=self._replay_limit)
            except Exception as exc:  # the waiters re-read, and fall back as the reads do
                log.warning("replica replay position unknown", error=str(exc))
            if every:
                self.wake_all()
            for doc_id in docs:
                self.wake(doc_id)

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            try:
                await self._session()
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_unavailable(exc):
                    log.warning("read watch disconnected", error=str(exc), retry_in=delay)
                else:
                    log.error("read watch failed", exc_info=exc, retry_in=delay)
            self.wake_all()  # notifications were lost meanwhile: every waiter re-reads
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    async def _session(self) -> None:
        """One connection's life: LISTEN, then wait until it is lost."""
        conn = await asyncpg.connect(
            self._dsn,
            server_settings={"application_name": self._application_name},
            command_timeout=10,
        )
        lost = asyncio.Event()

        def terminated(_: Any) -> None:
            lost.set()

        try:
            conn.add_termination_listener(terminated)
            await conn.add_listener(CHANNEL, self._on_notify)
            self.backend_pid = int(conn.get_server_pid())
            if self.listening.is_set():
                self.reconnects += 1
                log.info("read watch reconnected", reconnects=self.reconnects)
            self.listening.set()
            self.wake_all()  # what moved before the LISTEN is re-read now
            while not conn.is_closed():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_KEEPALIVE):
                        await lost.wait()
                if lost.is_set():
                    break
                await conn.fetchval("SELECT 1", timeout=5)  # a half-open socket raises here
        finally:
            self.backend_pid = None
            if not conn.is_closed():
                try:
                    await conn.close(timeout=2)
                except Exception:
                    conn.terminate()
