"""The HTTP queries with ``DATABASE_READ_URL`` at a streaming replica.

The store is the primary of a ``ReplicaPair`` (``pg_replica``); the gateway writes
there and reads its queries from the hot standby. The query tests of
test_http_read.py and test_http_read_worker.py run again here as they are: their
``catch_up`` (the views brought up to date on the primary) is followed by a wait
until the replica has replayed it, and their read worker writes the views on the
primary. Then what only a replica shows: with its replay paused, the queries answer
the replica's (older) state, ``min_v`` waits and answers 504, and a ``min_v`` waiting
when replay resumes is answered at once; a replica that cannot be reached leaves
every query answered from the primary and the gateway ready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

import tests.e2e.test_http_read as read_tests
from app.ops.pgtools import free_port
from app.views.writer import catch_up
from tests.e2e.conftest import Gateway
from tests.e2e.test_http_read import (
    create,
    post_ops,
    rect,
    test_activity_newest_first_and_named_versions,
    test_catalog_is_most_recently_edited_first_and_pages_by_cursor,
    test_diff_has_the_protocols_shape,
    test_min_v_returns_as_soon_as_the_view_catches_up,
    test_state_is_the_views_bytes_spliced_and_a_new_document_never_404s,
)
from tests.e2e.test_http_read_worker import test_min_v_with_a_worker_process
from tests.support.pgreplica import ReplicaPair

# Re-run here as they are (test_http_read*.py); the parametrized ones below, with the
# values whose answers come from the replica (the rest are the primary's either way).
__all__ = [
    "test_activity_newest_first_and_named_versions",
    "test_catalog_is_most_recently_edited_first_and_pages_by_cursor",
    "test_diff_has_the_protocols_shape",
    "test_min_v_returns_as_soon_as_the_view_catches_up",
    "test_min_v_with_a_worker_process",
    "test_state_is_the_views_bytes_spliced_and_a_new_document_never_404s",
]


@pytest.fixture(scope="module")
def pg_dsn(pg_replica: ReplicaPair) -> str:
    """The store of every test here: the pair's primary (tests/conftest.py's fixtures
    empty it before and after each test as they do their own database)."""
    return pg_replica.primary_url


@pytest.fixture
async def make_gateway(
    make_gateway: Callable[..., Any], pg_replica: ReplicaPair
) -> Callable[..., Any]:
    """Gateways that read their queries from the replica."""

    async def make(**extra: str) -> Gateway:
        gateway: Gateway = await make_gateway(
            **{"DATABASE_READ_URL": pg_replica.replica_url, **extra}
        )
        return gateway

    return make


@pytest.fixture(autouse=True)
async def replayed_catch_up(
    pg_replica: ReplicaPair, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """test_http_read's ``catch_up``, then the replica's replay of it; and the replica
    replaying again when a test ends, whatever it did."""

    async def catch_up_and_replay(pool: asyncpg.Pool) -> int:
        written = await catch_up(pool)
        await pg_replica.replayed()
        return written

    monkeypatch.setattr(read_tests, "catch_up", catch_up_and_replay)
    yield
    await pg_replica.resume_replay()


@pytest.mark.parametrize(
    "path",
    ["/api/documents/{doc}?min_v=1", "/api/documents/{doc}/versions"],
)
async def test_access_401_403_404_and_viewers_may_read(
    gateway: Gateway, pg_pool: asyncpg.Pool, path: str
) -> None:
    await read_tests.test_access_401_403_404_and_viewers_may_read(gateway, pg_pool, path)


@pytest.mark.parametrize(
    "path",
    ["/api/documents/d1?at=3", "/api/documents/d1/diff?from=1&to=9"],
)
async def test_bad_query_values_are_400_invalid(
    gateway: Gateway, pg_pool: asyncpg.Pool, path: str
) -> None:
    await read_tests.test_bad_query_values_are_400_invalid(gateway, pg_pool, path)


async def _replica_v(pair: ReplicaPair, doc_id: str) -> int | None:
    conn = await asyncpg.connect(pair.replica_url)
    try:
        v = await conn.fetchval("SELECT v FROM read.doc_state WHERE doc_id = $1", doc_id)
        return None if v is None else int(v)
    finally:
        await conn.close()


async def test_the_queries_read_the_replica_and_min_v_waits_for_its_replay(
    gateway: Gateway, pg_pool: asyncpg.Pool, pg_replica: ReplicaPair
) -> None:
    await create(gateway)  # v = 2
    await catch_up(pg_pool)
    await pg_replica.replayed()
    async with gateway.client("alice") as c:
        ready = (await c.get("/readyz")).json()
        assert (ready["ready"], ready["replica"]) == (True, "ok")
        await pg_replica.pause_replay()
        v = await post_ops(c, "d1", [rect("e1")])  # v = 3, committed on the primary
        await catch_up(pg_pool)  # the primary's views are at 3; the replica's at 2
        assert await pg_pool.fetchval("SELECT v FROM read.doc_state WHERE doc_id = 'd1'") == v
        # Every query answers from the replica: its state, catalog, activity are at 2.
        state = (await c.get("/api/documents/d1")).json()
        catalog = (await c.get("/api/documents")).json()
        activity = (await c.get("/api/documents/d1/activity")).json()
        assert state["v"] == catalog["documents"][0]["v"] == v - 1
        assert [i["v"] for i in activity["items"]] == [2, 1]
        # Time travel to a version the replica has not replayed: the primary's events.
        at = await c.get(f"/api/documents/d1?at={v}")
        assert (at.status_code, at.json()["v"]) == (200, v), at.text
        assert [e["id"] for e in at.json()["state"]["layers"][0]["elements"]] == ["e1"]
        # min_v past the replica: it waits, then 504 (never the older state).
        started = time.monotonic()
        r = await c.get(f"/api/documents/d1?min_v={v}")
        took = time.monotonic() - started
        assert (r.status_code, r.json()["code"]) == (504, "timeout"), r.text
        assert 5.0 <= took < 6.5
        # A min_v waiting when replay resumes is answered as soon as it has replayed.
        waiting = asyncio.create_task(c.get(f"/api/documents/d1?min_v={v}"))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        resumed = time.monotonic()
        await pg_replica.resume_replay()
        r = await waiting
        answered = time.monotonic()
        assert (r.status_code, r.json()["v"]) == (200, v), r.text
        assert [e["id"] for e in r.json()["state"]["layers"][0]["elements"]] == ["e1"]
        print(f"\nmin_v after the replay resumed: {(answered - resumed) * 1000:.0f} ms")
        assert answered - resumed < 1.0  # the replay position's poll, not the 1 s re-check
        assert await _replica_v(pg_replica, "d1") == v


async def test_min_v_on_the_replica_is_never_older_than_its_v(
    gateway: Gateway, pg_pool: asyncpg.Pool, pg_replica: ReplicaPair
) -> None:
    """Each op's ack, then ``min_v`` of its v with the views written a moment later on
    the primary: the answer is at or past v, every time."""
    await create(gateway)
    async with gateway.client("alice") as c:
        for i in range(8):
            v = await post_ops(c, "d1", [rect(f"e{i}")])
            waiting = asyncio.create_task(c.get(f"/api/documents/d1?min_v={v}"))
            await asyncio.sleep(0.02 * (i % 3))
            await catch_up(pg_pool)
            r = await waiting
            assert r.status_code == 200, r.text
            assert r.json()["v"] >= v
            assert len(r.json()["state"]["layers"][0]["elements"]) == i + 1


async def test_a_replica_that_cannot_be_reached_leaves_the_primary_answering(
    make_gateway: Callable[..., Any], pg_pool: asyncpg.Pool
) -> None:
    gateway: Gateway = await make_gateway(
        DATABASE_READ_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/atelier"
    )
    await create(gateway)
    async with gateway.client("alice") as c:
        v = await post_ops(c, "d1", [rect("e1")])
        waiting = asyncio.create_task(c.get(f"/api/documents/d1?min_v={v}"))
        await asyncio.sleep(0.2)
        await catch_up(pg_pool)
        r = await waiting
        assert (r.status_code, r.json()["v"]) == (200, v), r.text
        for path in ("/api/documents", "/api/documents/d1/activity", "/api/documents/d1?at=2"):
            assert (await c.get(path)).status_code == 200, path
        ready = await c.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["replica"].startswith("unreachable: ")
