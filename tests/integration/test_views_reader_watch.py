"""``ReadWatch`` (app/views/watch.py) on the real PostgreSQL: a waiter returns as soon as
the worker's batch commits (woken by NOTIFY atelier_read, with the fallback re-check
set far beyond the test's timings so only the notification can be this quick), times
out with ``Timeout``, and keeps working after its connection is killed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.command import CommandHandler
from app.errors import Timeout
from app.store.postgres import PostgresStore
from app.views.reader import ReadViews
from app.views.watch import ReadWatch, docs_in
from app.views.writer import catch_up
from tests.support.worker import create_docs


@pytest.fixture
async def watch(pg_clean: str, store: PostgresStore) -> AsyncIterator[ReadWatch]:
    w = ReadWatch(pg_clean, ReadViews(store.pool).version, recheck=30.0, max_backoff=0.2)
    w.start()
    async with asyncio.timeout(10):
        await w.listening.wait()
    yield w
    await w.close()


async def test_a_waiter_returns_when_the_batch_commits(
    watch: ReadWatch, handler: CommandHandler, store: PostgresStore
) -> None:
    await create_docs(handler, ["d1", "d2"])  # v = 2 each
    waiters = [
        asyncio.create_task(watch.wait_for("d1", 2, within=5)),
        asyncio.create_task(watch.wait_for("d1", 1, within=5)),
        asyncio.create_task(watch.wait_for("d2", 2, within=5)),
    ]
    await asyncio.sleep(0.3)
    assert not any(w.done() for w in waiters)
    assert watch.waiting == 3
    started = time.monotonic()
    await catch_up(store.pool)
    assert await asyncio.gather(*waiters) == [2, 2, 2]
    assert time.monotonic() - started < 1.0  # the notification, not the 30 s re-check
    assert watch.waiting == 0
    # Already there: answered at once, no wait at all.
    assert await watch.wait_for("d1", 2, within=0.5) == 2


async def test_a_version_that_never_comes_times_out(
    watch: ReadWatch, handler: CommandHandler
) -> None:
    await create_docs(handler, ["d1"])
    started = time.monotonic()
    with pytest.raises(Timeout):
        await watch.wait_for("d1", 99, within=0.5)
    assert 0.5 <= time.monotonic() - started < 1.5
    assert watch.waiting == 0


async def test_the_watch_reconnects_after_its_connection_is_killed(
    pg_clean: str, watch: ReadWatch, handler: CommandHandler, store: PostgresStore
) -> None:
    await create_docs(handler, ["d1"])
    for _ in range(2):
        pid = watch.backend_pid
        assert pid is not None
        admin = await asyncpg.connect(pg_clean)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        async with asyncio.timeout(10):
            while watch.backend_pid in (None, pid):  # noqa: ASYNC110 - a reconnect, polled
                await asyncio.sleep(0.02)
    assert watch.reconnects == 2
    waiter = asyncio.create_task(watch.wait_for("d1", 2, within=5))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await catch_up(store.pool)
    assert await waiter == 2
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("payload", "docs"),
    [
        ("", None),
        ("123", None),
        ('["a", "b"]', ["a", "b"]),
        ('{"docs": ["a"]}', ["a"]),
        ('"a"', ["a"]),
        ("a,b-c,d_1", ["a", "b-c", "d_1"]),
        ("a,,b", None),
        ("[]", None),
        ("[1]", None),
    ],
)
def test_notification_payloads(payload: str, docs: list[str] | None) -> None:
    assert docs_in(payload) == docs
