"""LogFollower: LISTEN wake-ups, reconnection, and the breaches it refuses to skip."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.store.follow import READ, EpochChanged, LogFollower, LogGapError
from app.store.ports import StoredEvent
from app.store.postgres import PostgresStore
from tests.contract.helpers import create_doc, request


class Tail:
    """Runs a follower in a task and collects what it yields."""

    def __init__(self, follower: LogFollower) -> None:
        self.follower = follower
        self.seen: list[StoredEvent] = []
        self.sizes: list[int] = []  # of each batch
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with self.follower:
            async for batch in self.follower:
                self.seen.extend(batch)
                self.sizes.append(len(batch))

    async def reached(self, position: int, within: float = 5.0) -> float:
        """Seconds until the follower's cursor reached ``position``."""
        started = time.monotonic()
        while self.follower.position < position:
            if self.task.done():
                self.task.result()  # raise what stopped it
            assert time.monotonic() - started < within, f"stuck at {self.follower.position}"
            await asyncio.sleep(0.005)
        return time.monotonic() - started

    async def stop(self) -> None:
        """Close the follower and end the task; re-raise what stopped it, if anything
        did and no one has looked at it yet."""
        await self.follower.close()
        self.task.cancel()
        await asyncio.wait([self.task])
        if not self.task.cancelled() and self.task.exception() is not None:
            raise self.task.exception()  # type: ignore[misc]


@contextlib.asynccontextmanager
async def tailing(follower: LogFollower) -> AsyncIterator[Tail]:
    tail = Tail(follower)
    try:
        yield tail
    finally:
        await tail.stop()


async def test_starts_after_its_cursor_and_is_woken_by_notify(
    store: PostgresStore, pg_dsn: str
) -> None:
    await create_doc(store, "d1")
    await store.append([request("d1", v) for v in range(1, 5)])  # positions 2..5
    # A poll interval far beyond the timeouts below: only NOTIFY can be this quick.
    async with tailing(LogFollower(pg_dsn, after=3, poll_interval=30)) as tail:
        await tail.reached(5)
        assert [e.position for e in tail.seen] == [4, 5]
        await store.append([request("d1", 5)])
        assert await tail.reached(6) < 2.0
        assert tail.follower.epoch == 1


async def test_batches_are_bounded(store: PostgresStore, pg_dsn: str) -> None:
    await create_doc(store, "d1")
    await store.append([request("d1", v) for v in range(1, 25)])
    batches: list[list[StoredEvent]] = []
    async with LogFollower(pg_dsn, batch_size=10) as follower:
        async for batch in follower:
            batches.append(batch)
            if follower.position == 25:
                break
    assert [len(b) for b in batches] == [10, 10, 5]


async def test_survives_the_termination_of_its_connection_and_listens_again(
    store: PostgresStore, pg_dsn: str
) -> None:
    await create_doc(store, "d1")
    admin = await asyncpg.connect(pg_dsn)
    follower = LogFollower(pg_dsn, poll_interval=30)
    try:
        async with tailing(follower) as tail:
            await tail.reached(1)
            for round_ in range(2):
                pid = follower.backend_pid
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
                await store.append([request("d1", 1 + round_ * 2, f"while-down-{round_}")])
                # Catches up on what was committed while it was away...
                await tail.reached(2 + round_ * 2)
                assert follower.reconnects == round_ + 1 and follower.backend_pid != pid
                # ...and LISTENs again: with a 30 s poll only a notification is this fast.
                await store.append([request("d1", 2 + round_ * 2, f"after-{round_}")])
                assert await tail.reached(3 + round_ * 2) < 2.0
            assert [e.position for e in tail.seen] == [1, 2, 3, 4, 5]
    finally:
        await admin.close()


async def test_a_hole_in_the_log_is_raised_not_skipped(store: PostgresStore, pg_dsn: str) -> None:
    await create_doc(store, "d1")
    # Forge a breach: an event at position 3 while 2 does not exist (manual SQL).
    await store.pool.execute(
        "INSERT INTO events (position, doc_id, v, kind, op, effect, actor, ts)"
        " VALUES (3, 'd1', 2, 'forged', '{}', '{}', 'mallory', now())"
    )
    async with LogFollower(pg_dsn, after=0) as follower:
        with pytest.raises(LogGapError, match="expected position 2, read 3"):
            async for _ in follower:
                pass
    assert follower.position == 1  # it delivered 1 and stopped at the hole


async def test_a_restore_voids_the_cursor(store: PostgresStore, pg_dsn: str) -> None:
    await create_doc(store, "d1")
    with pytest.raises(EpochChanged):
        await LogFollower(pg_dsn, epoch=7).connect()
    admin = await asyncpg.connect(pg_dsn)
    follower = LogFollower(pg_dsn, epoch=1)
    try:
        tail = Tail(follower)
        await tail.reached(1)
        # The restore runbook bumps the epoch; the follower learns it on reconnecting.
        await admin.execute("UPDATE store_meta SET epoch = epoch + 1")
        await admin.execute("SELECT pg_terminate_backend($1)", follower.backend_pid)
        done, _ = await asyncio.wait([tail.task], timeout=5)
        assert done and isinstance(tail.task.exception(), EpochChanged)
        await follower.close()
    finally:
        await admin.close()


async def test_a_cursor_beyond_the_head_is_a_breach(store: PostgresStore, pg_dsn: str) -> None:
    await create_doc(store, "d1")
    with pytest.raises(LogGapError, match="behind the cursor"):
        await LogFollower(pg_dsn, after=10).connect()


async def test_its_read_keeps_one_generic_plan(store: PostgresStore, pg_dsn: str) -> None:
    """The read by position cannot prune a partition, so a custom plan is a plan of all
    16 on every execution (what `plan_cache_mode = auto` chose, at three times the
    read's own cost): the follower's session plans it once, generically."""
    await create_doc(store, "d1")
    async with tailing(LogFollower(pg_dsn, poll_interval=30)) as tail:
        await tail.reached(1)
        for v in range(1, 13):  # one read per commit: past auto's five custom plans
            await store.append([request("d1", v)])
            await tail.reached(v + 1)
        # Prepared statements are per session: ask the follower's own connection, idle
        # now (nothing more to read, its next poll 30 s away).
        conn = tail.follower._conn
        assert conn is not None
        rows = await conn.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            READ,
        )
    assert len(rows) == 1, rows
    assert rows[0]["custom_plans"] == 0 and rows[0]["generic_plans"] >= 12, dict(rows[0])


async def test_with_a_linger_the_commits_of_the_pause_come_as_one_batch(
    store: PostgresStore, pg_dsn: str
) -> None:
    await create_doc(store, "d1")
    async with tailing(LogFollower(pg_dsn, poll_interval=30, linger=0.5)) as tail:
        await tail.reached(1)  # caught up: the follower lingers now
        for v in range(1, 6):  # five commits, each woken by its own notification
            await store.append([request("d1", v)])
        # All five in one read once the pause is over; a notification, not the 30 s
        # poll, woke it.
        assert await tail.reached(6) < 2.0
        assert tail.sizes == [1, 5]
        assert [e.position for e in tail.seen] == [1, 2, 3, 4, 5, 6]


def test_a_negative_linger_is_refused() -> None:
    with pytest.raises(ValueError, match="linger"):
        LogFollower("postgresql://nowhere/db", linger=-0.1)
