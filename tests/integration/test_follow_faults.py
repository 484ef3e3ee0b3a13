"""The log follower (the relay's and the snapshotter's) through the ways asyncpg reports a
broken connection: each one is a reconnect from the cursor, never a crash, and no event
is skipped or handed out twice.

asyncpg raises, depending on where the loss lands: ``ConnectionDoesNotExistError`` and
``InterfaceError("connection is closed")`` (both were handled), ``OSError``
(``ConnectionResetError``, ``ConnectionError("unexpected connection_lost() call")``),
``InterfaceError("cannot perform operation: another operation is in progress")`` when the
protocol is still busy with something that was cut off, and ``InternalClientError`` when
its protocol is left mid-message. The last two were raised out of the follower and ended
the relay and the snapshotter (exit 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from app.errors import Unavailable
from app.store.follow import LogFollower
from app.store.postgres import PostgresStore
from tests.support.relay import Writer, wait_until
from tests.support.tcpproxy import TcpProxy

DOCS = ["d1", "d2"]


class Collected:
    """A follower iterated in a task: every position it handed out, in order."""

    def __init__(self, follower: LogFollower) -> None:
        self.follower = follower
        self.positions: list[int] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for batch in self.follower:
            self.positions.extend(e.position for e in batch)

    def alive(self) -> None:
        if self.task.done():
            self.task.result()  # raises what ended it
            raise AssertionError("the follower's iteration ended")

    async def caught_up(self, store: PostgresStore) -> None:
        head = await store.head()

        def done() -> bool:
            self.alive()
            return bool(self.positions) and self.positions[-1] >= head

        await wait_until(done, 15, f"follower at {self.positions[-1:]}, head {head}")
        assert self.positions == list(range(1, head + 1)), "skipped or doubled positions"

    async def close(self) -> None:
        await self.follower.close()
        await asyncio.wait([self.task], timeout=5)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def following(pg_clean: str, store: PostgresStore) -> AsyncIterator[tuple[Collected, Writer]]:
    follower = LogFollower(pg_clean, poll_interval=0.2, max_backoff=0.2)
    await follower.connect()
    collected = Collected(follower)
    try:
        async with Writer(store) as writer:
            await writer.documents(*DOCS)
            await collected.caught_up(store)
            yield collected, writer
    finally:
        await collected.close()


async def test_another_operation_in_progress_is_a_reconnect(
    following: tuple[Collected, Writer], store: PostgresStore
) -> None:
    collected, writer = following
    follower = collected.follower
    conn: Any = follower._conn
    # The follower's connection busy with a statement it did not start (what a query
    # cut off by a cancellation leaves behind): its next read cannot run on it.
    busy = asyncio.create_task(conn.fetchval("SELECT pg_sleep(1.5)"))
    await asyncio.sleep(0.1)
    await writer.edits(DOCS, 10)
    await collected.caught_up(store)
    assert follower.reconnects >= 1
    await asyncio.gather(busy, return_exceptions=True)
    await writer.edits(DOCS, 10)
    await collected.caught_up(store)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InternalClientError("unexpected message in the protocol"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=["internal-client-error", "interface-error", "does-not-exist", "os-error"],
)
async def test_a_read_failing_with_a_broken_connection_is_a_reconnect(
    following: tuple[Collected, Writer],
    store: PostgresStore,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    collected, writer = following
    real = asyncpg.connection.Connection.fetch
    failures = [error]

    async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        if failures and self is collected.follower._conn:
            raise failures.pop()
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "fetch", fetch)
    await writer.edits(DOCS, 10)
    await collected.caught_up(store)
    assert not failures and collected.follower.reconnects == 1


async def test_a_read_answered_with_none_is_a_reconnect(
    following: tuple[Collected, Writer], store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncpg's ``fetch`` returned None (no rows, no error) on a connection lost while
    PostgreSQL restarted; the follower crashed on it and ended the read worker (exit 1),
    found by the chaos run (pg-restart-fast and -immediate)."""
    collected, writer = following
    real = asyncpg.connection.Connection.fetch
    answers: list[None] = [None]

    async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        if answers and self is collected.follower._conn:
            return answers.pop()
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "fetch", fetch)
    await writer.edits(DOCS, 10)
    await collected.caught_up(store)
    assert not answers and collected.follower.reconnects == 1


async def test_connect_and_reconnect_failing_oddly_are_retried(
    following: tuple[Collected, Writer],
    store: PostgresStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reconnect itself meets the same errors (the server going away again during
    the handshake or the LISTEN): it keeps trying with its backoff."""
    collected, writer = following
    real = asyncpg.connect
    failures: list[Exception] = [
        asyncpg.InternalClientError("unexpected message in the protocol"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        ConnectionError("unexpected connection_lost() call"),
    ]

    async def connect(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncpg, "connect", connect)
    await store.pool.execute("SELECT pg_terminate_backend($1)", collected.follower.backend_pid)
    await writer.edits(DOCS, 10)
    await collected.caught_up(store)
    assert not failures and collected.follower.reconnects == 1


async def test_connect_while_the_database_is_cut_raises_unavailable(pg_clean: str) -> None:
    """``connect()`` says ``Unavailable`` (which the relay retries) for every way the
    connection can fail, not the driver's exception."""
    target = pg_clean.split("@", 1)[1].split("/", 1)[0]
    host, port = target.split(":")
    proxy = await TcpProxy(host, int(port)).start()
    try:
        proxy.cut()
        follower = LogFollower(pg_clean.replace(target, f"127.0.0.1:{proxy.port}"))
        with pytest.raises(Unavailable):
            await follower.connect()
        await follower.close()
    finally:
        await proxy.close()
