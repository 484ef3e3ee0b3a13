"""The relay's lease: one relay at a time per store and Redis prefix.

A PostgreSQL session-level advisory lock (``pg_try_advisory_lock``) taken on a
dedicated connection and held for as long as that connection lives. A second relay
polls every ``poll_interval`` seconds ("waiting for the relay lease") and takes over
when the first one dies: its connection closes (even on SIGKILL the kernel closes the
socket), the server drops the session and the lock with it.

The lease saves work; it is not what keeps entries unique. Two relays publishing at
once would still write each entry once (explicit ids ``<position>-0``, I4), so a relay
that loses its lease without noticing for a moment does no harm. It notices quickly:
the connection's termination listener fires at once, and ``meta()`` (the relay's
heartbeat, every second) fails when the server is gone or the network is cut.

The same connection answers the relay's questions about the store (``meta``: store
id, epoch, head), so a relay holds two PostgreSQL connections in all: this one and
its log follower's.

Session-level locks need a session: behind PgBouncer, use session pooling for the
relay (transaction pooling would hand the lock to whichever client comes next).
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import structlog

__all__ = ["LEASE_CLASS", "Lease", "LeaseLost", "StoreMeta", "lease_key"]

log = structlog.get_logger(__name__)

# pg_try_advisory_lock(int4, int4): the first number names what is leased ("atlr"),
# the second which one (the Redis prefix), so relays of different prefixes on one
# database do not wait for each other.
LEASE_CLASS: Final = 0x61746C72

_META: Final = (
    "SELECT m.store_id::text AS store_id, m.epoch, h.last_position"
    " FROM store_meta AS m, log_head AS h"
)
_HOLDER: Final = (
    "SELECT l.pid FROM pg_locks AS l WHERE l.locktype = 'advisory' AND l.granted"
    " AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 2"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_WAIT_LOG_EVERY: Final = 60.0  # seconds between repeated "waiting" lines
# What a lost or broken lease connection raises: the network or the server
# (OSError, TimeoutError, PostgresError) or asyncpg's protocol left mid-operation
# (InterfaceError "another operation is in progress", InternalClientError).
_DB_ERRORS: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class LeaseLost(RuntimeError):
    """The lease connection failed: the lock may be someone else's now."""


@dataclass(frozen=True, slots=True)
class StoreMeta:
    """Which store this is, its epoch and its log head, read in one statement."""

    store_id: str
    epoch: int
    head: int


def lease_key(name: str) -> int:
    """The second lock number for ``name`` (a Redis prefix): a stable 31-bit hash."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


class Lease:
    """A session-level advisory lock ``(LEASE_CLASS, lease_key(name))`` in ``dsn``."""

    def __init__(
        self,
        dsn: str,
        name: str,
        *,
        poll_interval: float = 1.0,
        timeout: float = 5.0,
        application_name: str = "atelier-relay-lease",
    ) -> None:
        self._dsn = dsn
        self._name = name
        self._key = lease_key(name)
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._application_name = application_name
        self._conn: asyncpg.Connection | None = None
        self._held = False
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self.lost = asyncio.Event()

    @property
    def held(self) -> bool:
        return self._held

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lease connection (tests and diagnostics)."""
        return None if self._conn is None else int(self._conn.get_server_pid())

    async def acquire(self) -> None:
        """Wait until the lock is ours. Retries through database outages; never raises
        except ``CancelledError``."""
        assert not self._held, "acquire() while holding the lease"
        try:
            await self._acquire()
        except BaseException:  # cancelled: the connection must not outlive the wait
            await self._drop()
            raise

    async def _acquire(self) -> None:
        loop = asyncio.get_running_loop()
        logged_at: float | None = None
        while True:
            try:
                if await self._try():
                    log.info("relay lease acquired", lease=self._name, pid=self.backend_pid)
                    return
                if logged_at is None or loop.time() - logged_at >= _WAIT_LOG_EVERY:
                    logged_at = loop.time()
                    log.info(
                        "waiting for the relay lease",
                        lease=self._name,
                        holder_pid=await self._holder(),
                        poll_seconds=self._poll_interval,
                    )
            except _DB_ERRORS as exc:
                log.warning(
                    "relay lease: database unavailable",
                    error=str(exc) or type(exc).__name__,
                    retry_in=self._poll_interval,
                )
                await self._drop()
            await asyncio.sleep(self._poll_interval)

    async def meta(self) -> StoreMeta:
        """Store id, epoch and head, on the lease connection: the relay's heartbeat.
        Raises ``LeaseLost`` when the connection no longer answers."""
        row = await self._fetchrow(_META)
        return StoreMeta(
            store_id=str(row["store_id"]), epoch=int(row["epoch"]), head=int(row["last_position"])
        )

    async def release(self) -> None:
        """Give the lease up: closing the session releases the lock."""
        self._held = False
        await self._drop()

    async def _try(self) -> bool:
        if self._conn is None or self._conn.is_closed():
            await self._drop()
            conn = await asyncpg.connect(
                self._dsn,
                timeout=self._timeout,
                command_timeout=self._timeout,
                server_settings={"application_name": self._application_name},
            )
            conn.add_termination_listener(self._on_terminated)
            self._conn = conn
        got = await self._conn.fetchval(
            "SELECT pg_try_advisory_lock($1, $2)", LEASE_CLASS, self._key
        )
        if got:
            self.lost.clear()
            self._held = True
        return bool(got)

    async def _holder(self) -> int | None:
        if self._conn is None:
            return None
        pid = await self._conn.fetchval(_HOLDER, LEASE_CLASS, self._key)
        return None if pid is None else int(pid)

    async def _fetchrow(self, query: str) -> Any:
        conn = self._conn
        if conn is None or conn.is_closed() or self.lost.is_set():
            raise LeaseLost("the lease connection is closed")
        try:
            async with self._lock:
                return await conn.fetchrow(query, timeout=self._timeout)
        except _DB_ERRORS as exc:
            self.lost.set()
            raise LeaseLost(f"the lease connection failed: {exc}") from exc

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._held = False
        if conn is None:
            return
        conn.remove_termination_listener(self._on_terminated)
        if conn.is_closed():
            return
        try:
            async with asyncio.timeout(self._timeout):
                await conn.close()
        except Exception:
            conn.terminate()
        except BaseException:  # cancelled while closing: never leave the session open
            conn.terminate()
            raise

    def _on_terminated(self, conn: Any) -> None:
        self.lost.set()
