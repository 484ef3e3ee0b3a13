"""Shard leases of one read worker: advisory locks on one dedicated connection.

Why advisory locks: a session-level ``pg_try_advisory_lock`` lives exactly as long as
the session. A worker that dies (even by SIGKILL: the kernel closes its socket) loses
every lock at once, and another worker's next try (every lease interval, about a
second) takes the shard over. No expiry clock to tune, no clock skew.

Each worker holds, on its one lease connection (never from a pool, which would hand
the session and its locks to someone else):

- ``(WORKER_CLASS, key)``: "this worker is alive". Counting these locks in
  ``pg_locks`` tells every worker how many workers share the shards, so each one
  aims at ``ceil(shards / workers)`` of them (``balance.py``);
- ``(SHARD_CLASS, shard)`` for every shard it owns.

Taking a shard bumps ``fencing`` on every view's checkpoint row of the shard (and
records the owner). The lock keeps honest workers apart; the fencing keeps a zombie
out: the batch's checkpoint compare-and-set carries the fencing it was given, so a
worker that lost its lock without noticing cannot write (app/views/writer.py).

If the connection fails the locks may already be someone else's: ``lost`` is set (a
termination listener, or any failed statement) and the worker stops writing.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from app.store.pool import INDEX_READS
from app.views.schema import View
from app.views.writer import Claim

__all__ = ["SHARD_CLASS", "WORKER_CLASS", "CheckpointRow", "LeaseLost", "ShardLeases"]

# pg_try_advisory_lock(int4, int4): the first number says what is locked.
SHARD_CLASS: Final = 0x61747368  # "atsh": a shard of the read side
WORKER_CLASS: Final = 0x6174776B  # "atwk": a live read worker

_LIVE: Final = (
    "SELECT count(DISTINCT l.objid) FROM pg_locks AS l WHERE l.locktype = 'advisory'"
    " AND l.granted AND l.classid = $1::bigint::oid AND l.objsubid = 2"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_TAKE: Final = (
    "UPDATE read.checkpoints SET fencing = fencing + 1, owner = $2, updated_at = now()"
    " WHERE shard = $1 RETURNING view, shard, position, fencing, status, epoch"
)
_ROWS: Final = (
    "SELECT view, shard, position, fencing, status, epoch FROM read.checkpoints"
    " WHERE shard = ANY($1::int[])"
)
_DISOWN: Final = (
    "UPDATE read.checkpoints SET owner = NULL"
    " WHERE shard = ANY($1::int[]) AND owner = $2 AND fencing = ANY($3::bigint[])"
)
_HEAD: Final = "SELECT last_position FROM log_head"


class LeaseLost(RuntimeError):
    """The lease connection failed: every shard lock may be someone else's now."""


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """One ``read.checkpoints`` row of a shard this worker holds."""

    view: View
    shard: int
    claim: Claim
    running: bool
    epoch: int


def _row(record: Any) -> CheckpointRow:
    return CheckpointRow(
        view=record["view"],
        shard=int(record["shard"]),
        claim=Claim(int(record["position"]), int(record["fencing"])),
        running=record["status"] == "running",
        epoch=int(record["epoch"]),
    )


class ShardLeases:
    """The lease connection of worker ``worker_id``: its presence lock, its shard locks,
    and the few statements that must run where the locks are."""

    def __init__(
        self, dsn: str, worker_id: str, *, timeout: float = 5.0, application_name: str = ""
    ) -> None:
        self._dsn = dsn
        self._worker_id = worker_id
        self._timeout = timeout
        self._application_name = application_name or f"atelier-worker-lease {worker_id}"[:63]
        self._conn: asyncpg.Connection | None = None
        self._io = asyncio.Lock()  # one statement at a time on the connection
        self.shards = 0  # read.meta.shards, known once connected
        self.epoch = 0  # the store's epoch when connected (a restore bumps it)
        self.held: set[int] = set()
        self.lost = asyncio.Event()

    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def backend_pid(self) -> int | None:
        return None if self._conn is None else int(self._conn.get_server_pid())

    async def connect(self) -> None:
        """Open the connection and take a presence lock (a free random key). Raises
        what the driver raises when the database cannot be reached."""
        await self.close()
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            command_timeout=self._timeout,
            # Its reads are by key and by position (the lag's probe): through the
            # indexes, whatever the statistics said when a plan was made (pool.py).
            server_settings={"application_name": self._application_name, **INDEX_READS},
        )
        try:
            self.shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
            self.epoch = int(await conn.fetchval("SELECT epoch FROM store_meta"))
            while not await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", WORKER_CLASS, random.randrange(1, 2**31)
            ):
                pass  # taken by another worker: draw again
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        self.held = set()
        self.lost.clear()

    async def live_workers(self) -> int:
        """Workers alive now (presence locks in this database), this one included."""
        return max(1, int(await self._call("fetchval", _LIVE, WORKER_CLASS)))

    async def try_take(self, shard: int) -> list[CheckpointRow] | None:
        """Take ``shard`` if no one holds it: lock, bump the fencing of each view's
        row, record the owner. None when someone else holds it."""
        if not await self._call(
            "fetchval", "SELECT pg_try_advisory_lock($1, $2)", SHARD_CLASS, shard
        ):
            return None
        try:
            rows = await self._call("fetch", _TAKE, shard, self._worker_id)
        finally:
            self.held.add(shard)  # locked either way: release() or close() unlocks it
        return [_row(r) for r in rows]

    async def release(self, shard: int, fencing: Sequence[int]) -> None:
        """Give ``shard`` up: disown its rows (only those still at our fencing), then
        unlock, so the next owner's bump never races our disowning."""
        await self._call("execute", _DISOWN, [shard], self._worker_id, list(fencing))
        await self._call("fetchval", "SELECT pg_advisory_unlock($1, $2)", SHARD_CLASS, shard)
        self.held.discard(shard)

    async def rows(self, shards: Sequence[int]) -> list[CheckpointRow]:
        """The checkpoint rows of ``shards`` as they are now."""
        return [_row(r) for r in await self._call("fetch", _ROWS, list(shards))]

    async def head(self) -> int:
        return int(await self._call("fetchval", _HEAD))

    async def first_ts(self, positions: Sequence[int]) -> dict[int, int]:
        """``position -> ts`` (epoch ms) of the events at ``positions`` (lag in seconds)."""
        rows = await self._call(
            "fetch",
            "SELECT position, atelier_ms(ts) AS ts FROM events WHERE position = ANY($1::bigint[])",
            list(positions),
        )
        return {int(r["position"]): int(r["ts"]) for r in rows}

    async def close(self, *, disown: Sequence[tuple[int, int]] = ()) -> None:
        """Release everything: ``disown`` (shard, fencing) rows first when the
        connection still answers, then end the session, which drops every lock."""
        conn, self._conn = self._conn, None
        self.held = set()
        if conn is None:
            return
        conn.remove_termination_listener(self._on_terminated)
        if conn.is_closed():
            return
        try:
            async with asyncio.timeout(self._timeout):
                if disown and not self.lost.is_set():
                    await conn.execute(
                        _DISOWN,
                        [s for s, _ in disown],
                        self._worker_id,
                        [f for _, f in disown],
                    )
                await conn.close()
        except Exception:
            conn.terminate()
        except BaseException:
            conn.terminate()
            raise

    async def _call(self, method: str, query: str, *args: Any) -> Any:
        conn = self._conn
        if conn is None or conn.is_closed() or self.lost.is_set():
            raise LeaseLost("the lease connection is closed")
        try:
            async with self._io:
                return await getattr(conn, method)(query, *args, timeout=self._timeout)
        except Exception as exc:
            # Anything, not only the driver's connection errors: a backend terminated
            # while idle can leave asyncpg's protocol in a state where the next call
            # raises InternalClientError. Whatever it is, the locks are in doubt.
            self.lost.set()
            raise LeaseLost(f"the lease connection failed: {exc!r}") from exc

    def _on_terminated(self, conn: Any) -> None:
        self.lost.set()
