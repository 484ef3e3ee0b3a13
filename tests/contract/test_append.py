"""The append contract: statuses, chains, group commit, I2 and I3."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
import pytest

from app.store.ports import AppendResult
from app.store.postgres import PostgresStore
from tests.contract.helpers import assert_log_consistent, create_doc, nested_plans, request


async def test_append_ok_returns_version_position_and_commit_time(store: PostgresStore) -> None:
    created = await create_doc(store, "d1")
    assert (created.v, created.position) == (1, 1)
    [result] = await store.append([request("d1", 1, "op-1")])
    assert result.status == "ok"
    assert (result.v, result.position) == (2, 2)
    assert result.ts >= created.ts > 0
    stored = await store.read_stream("d1")
    assert [(e.v, e.position, e.op_id) for e in stored] == [(1, 1, None), (2, 2, "op-1")]
    assert stored[1].ts == result.ts
    doc = await store.get_document("d1")
    assert doc is not None and doc.v == 2 and doc.updated_at == result.ts


async def test_the_op_bytes_come_back_verbatim(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    # Key order and number formatting that jsonb would not keep.
    raw = b'{"z":1,"a":[1.50,2e3],"kind":"element.update"}'
    req = request("d1", 1, "op-1")
    req = type(req)(
        doc_id="d1",
        expected_v=1,
        event=type(req.event)(
            actor="alice", op_id="op-1", kind="element.update", op=raw, effect=b"\x00\xff"
        ),
    )
    await store.append([req])
    [_, stored] = await store.read_stream("d1")
    assert stored.op == raw and stored.effect == b"\x00\xff"


async def test_conflict_reports_the_current_version(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    await store.append([request("d1", 1)])
    [result] = await store.append([request("d1", 1, "late")])
    assert result == AppendResult(status="conflict", v=2)
    assert await store.find_op("d1", "alice", "late") is None


async def test_missing_document(store: PostgresStore) -> None:
    [result] = await store.append([request("nope", 0, "op-1")])
    assert result == AppendResult(status="missing", v=0)
    assert await store.head() == 0


async def test_duplicate_returns_the_first_outcome_and_stores_nothing(
    store: PostgresStore,
) -> None:
    await create_doc(store, "d1")
    [first] = await store.append([request("d1", 1, "op-1")])
    await store.append([request("d1", 2, "op-2")])
    # Re-sent with a stale expected version AND a different payload: still the first v.
    [again] = await store.append([request("d1", 1, "op-1", op={"kind": "other"})])
    assert again == AppendResult(status="duplicate", v=2, position=first.position, ts=first.ts)
    assert await store.find_op("d1", "alice", "op-1") == 2
    assert len(await store.read_stream("d1")) == 3
    # The op id is per user: bob may use the same id.
    [bobs] = await store.append([request("d1", 3, "op-1", actor="bob")])
    assert bobs.status == "ok" and bobs.v == 4


async def test_chained_batch_for_one_document(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    results = await store.append([request("d1", v, f"op-{v}") for v in range(1, 11)])
    assert [r.status for r in results] == ["ok"] * 10
    assert [r.v for r in results] == list(range(2, 12))
    assert [r.position for r in results] == list(range(2, 12))
    assert len({r.ts for r in results}) == 1  # one transaction, one commit time
    assert await assert_log_consistent(store.pool) == 11


async def test_a_conflict_in_a_batch_fails_alone_and_breaks_only_its_chain(
    store: PostgresStore,
) -> None:
    for doc in ("a", "b", "c"):
        await create_doc(store, doc)
    results = await store.append(
        [
            request("a", 1, "a1"),
            request("b", 5, "b1"),  # wrong: b is at 1
            request("a", 2, "a2"),
            request("b", 1, "b2"),  # right version, but chained after a failure
            request("zz", 0, "z1"),  # no such document
            request("c", 1, "c1"),
        ]
    )
    assert [(r.status, r.v) for r in results] == [
        ("ok", 2),
        ("conflict", 1),
        ("ok", 3),
        ("conflict", 1),
        ("missing", 0),
        ("ok", 2),
    ]
    # Positions follow request order among the successes, densely.
    assert [r.position for r in results if r.status == "ok"] == [4, 5, 6]
    assert await assert_log_consistent(store.pool) == 6


async def test_duplicates_inside_a_batch(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    await store.append([request("d1", 1, "old")])
    results = await store.append(
        [
            request("d1", 2, "new"),
            request("d1", 3, "new"),  # same op id again in this batch
            request("d1", 3, "x"),  # chained after a duplicate: decided on a wrong state
            request("d1", 2, "old"),  # stored in an earlier transaction
        ]
    )
    assert [(r.status, r.v) for r in results] == [
        ("ok", 3),
        ("duplicate", 3),
        ("conflict", 3),
        ("duplicate", 2),
    ]
    assert results[1].position == results[0].position
    assert await assert_log_consistent(store.pool) == 3


async def test_same_document_race_has_exactly_one_winner(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    results = await asyncio.gather(
        *(store.append([request("d1", 1, f"op-{i}", actor=f"u{i}")]) for i in range(8))
    )
    statuses = sorted(r[0].status for r in results)
    assert statuses == ["conflict"] * 7 + ["ok"]
    assert all(r[0].v == 2 for r in results)
    assert await assert_log_consistent(store.pool) == 2


async def test_two_identical_ops_in_flight_store_one_event(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    results = await asyncio.gather(
        *(store.append([request("d1", 1, "same", op={"try": i})]) for i in range(6))
    )
    statuses = sorted(r[0].status for r in results)
    assert statuses == ["duplicate"] * 5 + ["ok"]
    assert {r[0].v for r in results} == {2}
    [_, stored] = await store.read_stream("d1")
    winner = next(r[0] for r in results if r[0].status == "ok")
    assert stored.position == winner.position
    assert orjson.loads(stored.op)["try"] in range(6)
    assert await assert_log_consistent(store.pool) == 2


async def test_rolled_back_appends_leave_no_hole(store: PostgresStore, pg_dsn: str) -> None:
    await create_doc(store, "d1")
    conn = await asyncpg.connect(pg_dsn)
    try:
        for _ in range(3):
            tx = conn.transaction()
            await tx.start()
            rows = await conn.fetch(
                "SELECT * FROM atelier_append($1::text[], $2::bigint[], $3::text[], $4::text[],"
                " $5::text[], $6::bytea[], $7::bytea[])",
                ["d1"],
                [1],
                ["alice"],
                ["rolled-back"],
                ["k"],
                [b"{}"],
                [b"{}"],
            )
            assert rows[0]["position"] == 2  # taken, then given back by the rollback
            await tx.rollback()
    finally:
        await conn.close()
    [result] = await store.append([request("d1", 1, "rolled-back")])
    assert (result.status, result.v, result.position) == ("ok", 2, 2)
    # The OCC losers and missing documents take no positions either.
    await store.append([request("d1", 1, "loser"), request("nope", 0, "x")])
    [after] = await store.append([request("d1", 2, "after")])
    assert after.position == 3
    assert await assert_log_consistent(store.pool) == 3


async def test_commit_time_never_decreases_along_positions(store: PostgresStore) -> None:
    for doc in ("a", "b", "c", "d"):
        await create_doc(store, doc)

    async def writer(doc: str) -> None:
        v = 1
        for i in range(30):
            [r] = await store.append([request(doc, v, f"{doc}-{i}")])
            assert r.status == "ok"
            v = r.v

    await asyncio.gather(*(writer(doc) for doc in ("a", "b", "c", "d")))
    ts = [e.ts for e in await store.read_log(0, 1000)]
    assert len(ts) == 124 and ts == sorted(ts)


async def test_read_stream_pages(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    await store.append([request("d1", v) for v in range(1, 20)])
    page = await store.read_stream("d1", after_v=5, limit=4)
    assert [e.v for e in page] == [6, 7, 8, 9]
    assert [e.v for e in await store.read_stream("d1", after_v=18)] == [19, 20]
    assert await store.read_stream("nope") == []


async def test_events_are_append_only(store: PostgresStore, pg_dsn: str) -> None:
    await create_doc(store, "d1")
    conn = await asyncpg.connect(pg_dsn)
    try:
        for sql in (
            "UPDATE events SET kind = 'forged'",
            "DELETE FROM events",
            "TRUNCATE events",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql)
    finally:
        await conn.close()
    assert [e.kind for e in await store.read_stream("d1")] == ["doc.create"]


async def test_empty_batch_is_a_no_op(store: PostgresStore) -> None:
    assert await store.append([]) == []
    assert await store.head() == 0


async def test_append_only_probes_indexes_whatever_the_history(
    store: PostgresStore, pg_dsn: str
) -> None:
    """A regression guard for 0003: every plan inside atelier_append is an index probe,
    never a scan whose cost grows with the log or the ledger (auto_explain shows the
    nested statements' plans)."""
    await create_doc(store, "d1")
    await store.append([request("d1", v, f"op-{v}") for v in range(1, 2001)])
    nested, _ = await nested_plans(
        pg_dsn,
        "SELECT * FROM atelier_append($1::text[], $2::bigint[], $3::text[], $4::text[],"
        " $5::text[], $6::bytea[], $7::bytea[])",
        "FROM atelier_append(",
        (
            ["d1", "d1", "d1"],
            [2001, 2002, 1],
            ["alice"] * 3,
            ["new-1", "op-5", "op-7"],  # ok, then a duplicate, then a ledger duplicate
            ["k"] * 3,
            [b"{}"] * 3,
            [b"{}"] * 3,
        ),
    )
    assert len(nested) >= 6, nested
    for plan in nested:
        assert "Seq Scan" not in plan, plan
