"""The views' writer (app/views/writer.py) against the real PostgreSQL: after a random
workload through the real command handler, ``catch_up`` makes every view equal the
fold of the events (I5); the checkpoint compare-and-set refuses a stale fencing and
writes nothing; applying twice is a no-op."""

from __future__ import annotations

from typing import Any

import asyncpg

from app.command import CommandHandler
from app.domain import Document
from app.store.postgres import PostgresStore
from app.views.loading import read_events
from app.views.project import encode_state, fold
from app.views.schema import HISTORY_EVERY, VIEWS
from app.views.shards import shard_of
from app.views.writer import Claim, apply_batch, catch_up, events_to_apply, notify_payload
from tests.support.worker import assert_views_exact, create_docs, wait_caught_up, workload


async def test_catch_up_makes_every_view_equal_the_write_side(
    handler: CommandHandler, store: PostgresStore
) -> None:
    docs = [f"doc{i}" for i in range(6)]
    await create_docs(handler, docs)
    await workload(handler, docs, 300, seed=7)
    # One document past two history rows.
    for i in range(2 * HISTORY_EVERY + 10):
        await handler.submit(
            "doc0", "bob", "owner", f"r{i}", {"kind": "doc.rename", "title": f"t{i}"}
        )
    pool = store.pool
    applied = await catch_up(pool, batch=97)  # a batch size that cuts documents anywhere
    head = await store.head()
    assert applied == head
    async with pool.acquire() as conn:
        await wait_caught_up(conn, within=0)
        assert await assert_views_exact(conn) == len(docs)
        for doc_id in docs:
            committed = await handler.committed_model(doc_id)
            state = await conn.fetchval(
                "SELECT state FROM read.doc_state WHERE doc_id = $1", doc_id
            )
            assert bytes(state) == encode_state(committed.doc)
        history = await conn.fetch("SELECT v FROM read.history WHERE doc_id = 'doc0' ORDER BY v")
        assert [r["v"] for r in history] == [HISTORY_EVERY, 2 * HISTORY_EVERY]
        total = await conn.fetchval("SELECT count(*) FROM read.activity")
        assert total == head
    assert await catch_up(pool) == 0  # nothing left: a second pass is a no-op


async def test_catch_up_resumes_from_the_checkpoints(
    handler: CommandHandler, store: PostgresStore
) -> None:
    docs = ["a", "b", "c"]
    await create_docs(handler, docs)
    await workload(handler, docs, 60, seed=1)
    first = await catch_up(store.pool, batch=50)
    await workload(handler, docs, 60, seed=2)
    second = await catch_up(store.pool, batch=13)
    assert first + second == await store.head()
    async with store.pool.acquire() as conn:
        await assert_views_exact(conn)


async def _batch(conn: asyncpg.Connection, shards: int) -> tuple[dict[int, Claim], int, Any]:
    events = await read_events(conn, 0, 1000)
    claims = {shard: Claim(0, 0) for shard in range(shards)}
    per_doc = events_to_apply(events, claims, shards)
    docs = {doc_id: fold(Document(doc_id), evs) for doc_id, evs in per_doc.items()}
    return claims, events[-1].position, docs


async def _view_counts(conn: asyncpg.Connection) -> list[int]:
    return [await conn.fetchval(f"SELECT count(*) FROM read.{name}") for name in VIEWS]


async def test_a_stale_fencing_writes_nothing(
    handler: CommandHandler, store: PostgresStore
) -> None:
    docs = ["a", "b", "c", "d"]
    await create_docs(handler, docs)
    await workload(handler, docs, 40, seed=3)
    async with store.pool.acquire() as conn:
        shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
        claims, to, rows = await _batch(conn, shards)
        # A takeover of one shard bumped its fencing: the whole batch must fail.
        victim = shard_of("a", shards)
        await conn.execute(
            "UPDATE read.checkpoints SET fencing = fencing + 1 WHERE shard = $1", victim
        )
        assert not await apply_batch(conn, claims=claims, to_position=to, docs=rows)
        assert await _view_counts(conn) == [0, 0, 0, 0]
        assert await conn.fetchval("SELECT max(position) FROM read.checkpoints") == 0
        # A paused shard refuses as well.
        await conn.execute(
            "UPDATE read.checkpoints SET fencing = 0, status = 'paused' WHERE shard = $1", victim
        )
        assert not await apply_batch(conn, claims=claims, to_position=to, docs=rows)
        assert await _view_counts(conn) == [0, 0, 0, 0]


async def test_applying_twice_is_a_no_op(handler: CommandHandler, store: PostgresStore) -> None:
    docs = ["a", "b", "c"]
    await create_docs(handler, docs)
    await workload(handler, docs, 40, seed=4)
    async with store.pool.acquire() as conn:
        shards = int(await conn.fetchval("SELECT shards FROM read.meta"))
        claims, to, rows = await _batch(conn, shards)
        assert await apply_batch(conn, claims=claims, to_position=to, docs=rows)
        before = await conn.fetch("SELECT * FROM read.doc_state ORDER BY doc_id")
        counts = await _view_counts(conn)
        # The same claims again: the checkpoints moved, so the CAS refuses it.
        assert not await apply_batch(conn, claims=claims, to_position=to, docs=rows)
        # Claims that match the moved checkpoints: rows already there change nothing.
        moved = {shard: Claim(to, 0) for shard in claims}
        assert await apply_batch(conn, claims=moved, to_position=to, docs=rows)
        assert await conn.fetch("SELECT * FROM read.doc_state ORDER BY doc_id") == before
        assert await _view_counts(conn) == counts
        assert await conn.fetchval("SELECT count(DISTINCT position) FROM read.checkpoints") == 1
        await assert_views_exact(conn)


async def test_the_batch_notifies_at_commit(
    handler: CommandHandler, store: PostgresStore, pg_dsn: str
) -> None:
    await create_docs(handler, ["a"])
    got: list[str] = []
    listener = await asyncpg.connect(pg_dsn)
    try:
        await listener.add_listener("atelier_read", lambda *args: got.append(args[3]))
        await catch_up(store.pool)
        for _ in range(50):
            if got:
                break
            await listener.execute("SELECT 1")
        assert got == ['{"docs":["a"]}']
    finally:
        await listener.close()


def test_the_notification_names_the_documents_when_they_fit() -> None:
    assert notify_payload([]) == ""
    assert notify_payload(["b", "a"]) == '{"docs":["a","b"]}'
    assert notify_payload([f"document-{i:05}" for i in range(1000)]) == ""


async def test_the_state_columns_are_compressed_with_lz4(store: PostgresStore) -> None:
    # the serving generation's tables (a rebuild makes new ones LIKE the old, INCLUDING
    # their compression; earlier tests may have switched generations)
    rows = await store.pool.fetch(
        "SELECT g.view, a.attcompression::text AS attcompression"
        " FROM read.generations AS g"
        " JOIN pg_class AS c ON c.relname = g.view || '_g' || g.generation"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace AND n.nspname = 'read'"
        " JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'state'"
    )
    assert {(r["view"], r["attcompression"]) for r in rows} == {
        ("doc_state", "l"),
        ("history", "l"),
    }


async def test_large_states_go_in_statements_of_their_own(
    handler: CommandHandler, store: PostgresStore
) -> None:
    """States of 64 KiB and more are written with scalar parameters, the others in the
    array statement, in the same batch: every view is still exact, history included."""
    await create_docs(handler, ["big", "small"])
    filler = "x" * 1000
    for i in range(HISTORY_EVERY + 5):
        op = {"kind": "element.add", "element": f"e{i}", "layer": "L1", "shape": "text",
              "props": {"text": filler}}  # fmt: skip
        await handler.submit("big", "alice", "owner", f"e{i}", op)
        await handler.submit(
            "small", "alice", "owner", f"r{i}", {"kind": "doc.rename", "title": f"t{i}"}
        )
    assert await catch_up(store.pool, batch=300) == await store.head()
    async with store.pool.acquire() as conn:
        await wait_caught_up(conn, within=0)
        assert await assert_views_exact(conn) == 2
        sizes = await conn.fetch(
            "SELECT doc_id, length(state) AS n FROM read.history ORDER BY doc_id"
        )
        assert [(r["doc_id"], r["n"] >= 64 * 1024) for r in sizes] == [
            ("big", True),
            ("small", False),
        ]
