"""The global log: dense positions in commit order, and a tailing reader never skips.

DESIGN.md "Global order" is the claim; these tests are its evidence:

- the concurrent-append test: many writers and a tailing ``LogFollower``; the follower
  sees every row exactly once, in position order, each document in version order;
- the negative control: the same "read after p" on a plain sequence deterministically
  misses a row that commits late, and its positions keep rollback holes forever;
- its positive twin: the same interleaving against the store cannot miss;
- the outstanding transaction: an append held open stops the log (others wait, readers
  do not advance); killing it lets the others through without a hole.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import defaultdict

import asyncpg

from app.store.follow import LogFollower
from app.store.pool import create_pool
from app.store.ports import StoredEvent
from app.store.postgres import PostgresStore
from tests.contract.helpers import (
    assert_log_consistent,
    create_doc,
    request,
    wait_for_lock_waiters,
    wait_until,
)

_APPEND_SQL = (
    "SELECT * FROM atelier_append($1::text[], $2::bigint[], $3::text[], $4::text[],"
    " $5::text[], $6::bytea[], $7::bytea[])"
)


def _raw_append_args(doc_id: str, expected_v: int, op_id: str) -> list[list[object]]:
    return [[doc_id], [expected_v], ["alice"], [op_id], ["k"], [b"{}"], [b"{}"]]


async def test_concurrent_writers_and_a_tailing_follower(pg_clean: str) -> None:
    """THE test: 16 writers over 20 documents, group commits of chained requests on one
    to three documents, ~3,200 events, and a LogFollower tailing from position 0 the
    whole time. The follower must see positions 1..head exactly once and in order
    (it also asserts contiguity on every batch), and every document's versions 1..n
    in order; what it saw must be what the table holds and what the writers were told.
    """
    writers, quota, docs = 16, 200, [f"doc-{i:02d}" for i in range(20)]
    pool = await create_pool(pg_clean, writers)
    store = PostgresStore(pool)
    seen: list[StoredEvent] = []
    acked: dict[int, tuple[str, int, str | None]] = {}
    try:
        for doc in docs:
            await create_doc(store, doc)
        known = dict.fromkeys(docs, 1)

        follower = LogFollower(pg_clean, poll_interval=0.2, batch_size=300)

        async def follow() -> None:
            async with follower:
                async for batch in follower:
                    seen.extend(batch)

        async def writer(w: int) -> None:
            rng = random.Random(w)
            stored = n = 0
            while stored < quota:
                batch = []
                for doc in rng.sample(docs, rng.choice((1, 1, 2, 3))):
                    v = known[doc]
                    for j in range(rng.randint(1, 4)):
                        batch.append(request(doc, v + j, f"w{w}-{n}", actor=f"user-{w}"))
                        n += 1
                for req, res in zip(batch, await store.append(batch), strict=True):
                    assert res.status in ("ok", "conflict"), res
                    if res.status == "ok":
                        stored += 1
                        acked[res.position] = (req.doc_id, res.v, req.event.op_id)
                    known[req.doc_id] = max(known[req.doc_id], res.v)

        follow_task = asyncio.create_task(follow())
        started = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.perf_counter() - started
        head = await store.head()
        await wait_until(lambda: bool(seen) and seen[-1].position == head)
        await follower.close()
        follow_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow_task

        total = await assert_log_consistent(pool)
        assert total == head == len(docs) + len(acked)
        assert len(acked) >= writers * quota
        # Every row exactly once, in position order.
        assert [e.position for e in seen] == list(range(1, head + 1))
        # Every document in version order, no gap, no repeat.
        versions: dict[str, list[int]] = defaultdict(list)
        for e in seen:
            versions[e.doc_id].append(e.v)
        for doc in docs:
            assert versions[doc] == list(range(1, len(versions[doc]) + 1))
        # What the follower saw is what the writers were acknowledged.
        for e in seen[len(docs) :]:
            assert acked[e.position] == (e.doc_id, e.v, e.op_id)
        assert seen == await store.read_log(0, head + 1)
        print(f"\n{len(acked)} events in {elapsed:.2f}s = {len(acked) / elapsed:,.0f} events/s")
    finally:
        await pool.close()


async def test_negative_control_a_sequence_lets_a_reader_skip_a_late_commit(
    pg_clean: str,
) -> None:
    """The bug that log_head prevents, made deterministic: a transaction takes a
    sequence value and stays open, another takes the next value and commits, a reader
    reads "after its cursor" and moves past both, then the first commits. Its row is in
    the table and the reader will never see it."""
    table = f"scratch_seq_{uuid.uuid4().hex[:8]}"
    a, b, reader = [await asyncpg.connect(pg_clean) for _ in range(3)]
    try:
        await reader.execute(f"CREATE TABLE {table} (position bigserial PRIMARY KEY, body text)")
        insert = f"INSERT INTO {table} (body) VALUES ($1) RETURNING position"
        read_after = f"SELECT position FROM {table} WHERE position > $1 ORDER BY position"

        tx_a = a.transaction()
        await tx_a.start()
        late = await a.fetchval(insert, "slow writer")  # took 1, not committed yet
        early = await b.fetchval(insert, "fast writer")  # took 2, committed
        assert (late, early) == (1, 2)

        cursor, delivered = 0, []
        for row in await reader.fetch(read_after, cursor):
            delivered.append(row["position"])
            cursor = row["position"]
        await tx_a.commit()  # row 1 becomes visible now, behind the cursor
        delivered += [row["position"] for row in await reader.fetch(read_after, cursor)]

        in_table = [row["position"] for row in await reader.fetch(read_after, 0)]
        assert in_table == [1, 2]
        assert delivered == [2]  # row 1 was skipped, for good

        # And a sequence keeps holes: a rolled-back value is never handed out again, so a
        # reader cannot tell "late commit" from "never will commit" by waiting on holes.
        tx_c = b.transaction()
        await tx_c.start()
        assert await b.fetchval(insert, "rolled back") == 3
        await tx_c.rollback()
        assert await b.fetchval(insert, "after") == 4
    finally:
        await reader.execute(f"DROP TABLE IF EXISTS {table}")
        for conn in (a, b, reader):
            await conn.close()


async def test_positive_twin_the_store_cannot_skip_a_late_commit(
    store: PostgresStore, pg_dsn: str
) -> None:
    """The negative control's interleaving against atelier_append: the later writer
    cannot take a position until the earlier one commits, so the reader sees neither,
    then both, in order."""
    await create_doc(store, "a")
    await create_doc(store, "b")
    cursor = await store.head()
    slow = await asyncpg.connect(pg_dsn)
    try:
        tx = slow.transaction()
        await tx.start()
        [held] = await slow.fetch(_APPEND_SQL, *_raw_append_args("a", 1, "slow"))
        assert held["position"] == cursor + 1  # taken, not committed
        fast = asyncio.create_task(store.append([request("b", 1, "fast")]))
        await wait_for_lock_waiters(slow, 1)
        assert await store.read_log(cursor, 100) == []  # the reader sees nothing yet
        assert not fast.done()
        await tx.commit()
        [result] = await fast
        assert result.position == cursor + 2
        assert [e.position for e in await store.read_log(cursor, 100)] == [cursor + 1, cursor + 2]
    finally:
        await slow.close()


async def test_an_outstanding_append_stops_the_log_and_killing_it_leaves_no_hole(
    store: PostgresStore, pg_dsn: str
) -> None:
    """An append held open (its locks taken, not committed): other appends wait, the
    follower does not advance; once its session is killed the others go through, and the
    positions it had taken are handed out again (no hole)."""
    for doc in ("held", "x", "y"):
        await create_doc(store, doc)
    holder, admin = await asyncpg.connect(pg_dsn), await asyncpg.connect(pg_dsn)
    seen: list[StoredEvent] = []
    follower = LogFollower(pg_dsn, after=3, poll_interval=0.1)

    async def follow() -> None:
        async with follower:
            async for batch in follower:
                seen.extend(batch)

    follow_task = asyncio.create_task(follow())
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.fetch(_APPEND_SQL, *_raw_append_args("held", 1, "held-op"))
        others = [
            asyncio.create_task(store.append([request(doc, 1, f"{doc}-op")])) for doc in ("x", "y")
        ]
        await wait_for_lock_waiters(admin, 2)
        await asyncio.sleep(0.4)  # four follower polls
        assert seen == [] and follower.position == 3
        assert not any(task.done() for task in others)

        await admin.execute("SELECT pg_terminate_backend($1)", holder.get_server_pid())
        results = [(await task)[0] for task in others]
        assert sorted(r.position for r in results) == [4, 5]
        await wait_until(lambda: follower.position == 5)
        assert [e.position for e in seen] == [4, 5]
        assert {e.doc_id for e in seen} == {"x", "y"}
        assert await store.read_stream("held", after_v=1) == []
        assert await store.find_op("held", "alice", "held-op") is None
        assert await assert_log_consistent(store.pool) == 5
    finally:
        await follower.close()
        follow_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow_task
        await holder.close()
        await admin.close()


async def test_parallel_batches_take_contiguous_ranges(store: PostgresStore) -> None:
    """Non-interleaving (the eventsourcing test): two 1,000-event group commits at once
    each get one contiguous range of positions."""
    await create_doc(store, "p")
    await create_doc(store, "q")
    batches = [[request(doc, v) for v in range(1, 1001)] for doc in ("p", "q")]
    results = await asyncio.gather(*(store.append(batch) for batch in batches))
    for batch_results in results:
        positions = [r.position for r in batch_results]
        assert all(r.status == "ok" for r in batch_results)
        assert positions == list(range(positions[0], positions[0] + 1000))
    assert await assert_log_consistent(store.pool) == 2002
