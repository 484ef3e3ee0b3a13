"""The hot reads of events on the partitioned table (migration 0006): the plans they
get, read from EXPLAIN.

What is asserted is what does not depend on the planner's cost guesses where it can:
partition pruning (a read by document touches one partition, at plan time with its
values and at run time with a generic plan) is deterministic. The ordered reads across
all partitions (the log by position, the rebuild's keyset by document) are asserted to
be a Merge Append of per-partition index scans, with no Sort and no Seq Scan, over
enough rows (20,000 events in 256 documents, analyzed) that a full scan and a sort
would cost far more than the few hundred rows a page reads. Nothing is disabled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import orjson
import pytest

from app.store._rows import EVENT_COLUMNS
from tests.contract.helpers import assert_log_consistent, fill_log

DOCS = 256
EVENTS = 20_000
PARTITIONS = 16

FOLLOW = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
RANGE = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 AND position <= $2"
    " ORDER BY position LIMIT $3"
)
STREAM = f"SELECT {EVENT_COLUMNS} FROM events WHERE doc_id = $1 AND v > $2 ORDER BY v LIMIT $3"
BEFORE_V = f"SELECT {EVENT_COLUMNS} FROM events WHERE doc_id = $1 AND v < $2 ORDER BY v"
DUPLICATE = "SELECT position, atelier_ms(ts) FROM events WHERE doc_id = $1 AND v = $2"
DOCS_ANY = f"SELECT {EVENT_COLUMNS} FROM events WHERE doc_id = ANY($1) ORDER BY doc_id, v"
KEYSET = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE (doc_id, v) > ($1, $2) ORDER BY doc_id, v LIMIT $3"
)
AT_POSITIONS = (
    "SELECT position, atelier_ms(ts) AS ts FROM events WHERE position = ANY($1::bigint[])"
)
LAST = "SELECT position, ts FROM events ORDER BY position DESC LIMIT 1"


@pytest.fixture
async def conn(pg_clean: str) -> AsyncIterator[asyncpg.Connection]:
    """A store of EVENTS events round-robin over DOCS documents, consistent (log head,
    documents' versions and last positions), analyzed."""
    c = await asyncpg.connect(pg_clean)
    try:
        await fill_log(c, EVENTS, DOCS)
        assert await assert_log_consistent(c) == EVENTS
        yield c
    finally:
        await c.close()


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def explain(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    """The plan the query gets with these values (a custom plan)."""
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    plan: dict[str, Any] = orjson.loads(raw)[0]["Plan"]
    return plan


async def explain_generic(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    """The generic plan, as a prepared statement gets it once the driver has run it a
    few times (plan_cache_mode = auto), executed with these values: pruning by a
    parameter happens at run time and shows as "Subplans Removed"."""
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE hot AS {sql}")
        try:
            values = ", ".join(_literal(a) for a in args)
            raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE hot ({values})")
        finally:
            await conn.execute("DEALLOCATE hot")
    plan: dict[str, Any] = orjson.loads(raw)[0]["Plan"]
    return plan


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]"
    return str(value)


def scanned(plan: dict[str, Any]) -> set[str]:
    return {n["Relation Name"] for n in nodes(plan) if "Relation Name" in n}


def node_types(plan: dict[str, Any]) -> set[str]:
    return {n["Node Type"] for n in nodes(plan)}


def assert_merge_of_index_scans(plan: dict[str, Any], index: str) -> None:
    """Every partition read through its own ``index`` in order, merged: no full scan,
    no sort of the table."""
    types = node_types(plan)
    assert "Merge Append" in types, plan
    assert not types & {"Seq Scan", "Sort", "Incremental Sort", "Bitmap Heap Scan"}, plan
    scans = [n for n in nodes(plan) if n["Node Type"] in ("Index Scan", "Index Only Scan")]
    assert len(scans) == PARTITIONS, plan
    assert {s["Index Name"] for s in scans} == {
        f"events_p{i:02d}_{index}" for i in range(PARTITIONS)
    }


async def partition_of(conn: asyncpg.Connection, doc_id: str) -> str:
    name = await conn.fetchval(
        "SELECT tableoid::regclass::text FROM events WHERE doc_id = $1 LIMIT 1", doc_id
    )
    assert isinstance(name, str)
    return name


async def test_the_follow_is_a_merge_of_position_index_scans(
    conn: asyncpg.Connection,
) -> None:
    """The relay's and the workers' read (follow.py, loading.py, read_log): one page
    after the cursor, in position order, across all partitions. From the start of the
    log and near its head, with the values and generic."""
    for after in (0, EVENTS - 50):
        assert_merge_of_index_scans(await explain(conn, FOLLOW, after, 500), "position_idx")
        assert_merge_of_index_scans(await explain_generic(conn, FOLLOW, after, 500), "position_idx")
    # The rebuild's tail: a bounded range of positions.
    assert_merge_of_index_scans(
        await explain(conn, RANGE, EVENTS - 1000, EVENTS, 500), "position_idx"
    )
    # The restore drill's last event: the same indexes, backwards.
    assert_merge_of_index_scans(await explain(conn, LAST), "position_idx")


async def test_a_page_of_the_follow_is_the_log_in_order(conn: asyncpg.Connection) -> None:
    """The merge gives the same rows a single table would: dense, in order."""
    rows = await conn.fetch(FOLLOW, EVENTS - 700, 500)
    assert [r["position"] for r in rows] == list(range(EVENTS - 699, EVENTS - 199))


async def test_reads_by_document_touch_one_partition(conn: asyncpg.Connection) -> None:
    """read_stream, append_exclusive, the worker's replay and atelier_append's
    duplicate probe: pruned to the document's partition, at plan time with values and
    at run time with a generic plan, and read through its primary key."""
    doc = "doc-7"
    home = await partition_of(conn, doc)
    for sql, args in (
        (STREAM, (doc, 100, 50)),
        (BEFORE_V, (doc, 40)),
        (DUPLICATE, (doc, 3)),
    ):
        plan = await explain(conn, sql, *args)
        assert scanned(plan) == {home}, plan
        assert "Seq Scan" not in node_types(plan), plan
        generic = await explain_generic(conn, sql, *args)
        assert scanned(generic) == {home}, generic
        removed = [n["Subplans Removed"] for n in nodes(generic) if "Subplans Removed" in n]
        assert removed == [PARTITIONS - 1], generic
        assert "Seq Scan" not in node_types(generic), generic
        indexes = {n.get("Index Name") for n in nodes(plan) if "Index Name" in n}
        assert indexes == {f"{home}_pkey"}, plan


async def test_verify_reads_only_the_partitions_of_its_documents(
    conn: asyncpg.Connection,
) -> None:
    docs = ["doc-1", "doc-2", "doc-3"]
    homes = {await partition_of(conn, d) for d in docs}
    plan = await explain(conn, DOCS_ANY, docs)
    assert scanned(plan) == homes, plan
    assert len(homes) < PARTITIONS


async def test_the_rebuild_keyset_is_a_merge_of_primary_key_scans(
    conn: asyncpg.Connection,
) -> None:
    """The rebuild reads every event in (doc_id, v) order, a page at a time. Its page
    (10,000) is small against a production log; here the page is 500 of 20,000 (at a
    page of half the table, sorting each partition is rightly cheaper)."""
    assert_merge_of_index_scans(await explain(conn, KEYSET, "doc-30", 12, 500), "pkey")
    assert_merge_of_index_scans(await explain_generic(conn, KEYSET, "doc-30", 12, 500), "pkey")


async def test_an_append_locks_only_the_partitions_it_writes(
    conn: asyncpg.Connection,
) -> None:
    """atelier_append (0007) names events only to insert, and for duplicates: once its
    generic plans are cached, an append of two documents locks those documents'
    partitions and no other (0003's result statement locked all sixteen and their
    indexes on every call)."""
    call = (
        "SELECT status FROM atelier_append($1::text[], $2::bigint[], $3::text[],"
        " $4::text[], $5::text[], $6::bytea[], $7::bytea[])"
    )
    docs = ["doc-1", "doc-2"]
    homes = {await partition_of(conn, d) for d in docs}
    versions = dict(await conn.fetch("SELECT id, v FROM documents WHERE id = ANY($1)", docs))
    for i in range(8):  # past the first calls: the cached generic plans are what runs
        args = [versions[d] + i for d in docs]
        async with conn.transaction():
            rows = await conn.fetch(
                call,
                docs,
                args,
                ["alice"] * 2,
                [f"lk-{i}-{d}" for d in docs],
                ["k"] * 2,
                [b"{}"] * 2,
                [b"{}"] * 2,
            )
            assert [r["status"] for r in rows] == ["ok", "ok"]
            locked = await conn.fetch(
                "SELECT DISTINCT relation::regclass::text AS rel FROM pg_locks"
                " WHERE pid = pg_backend_pid() AND locktype = 'relation'"
                " AND relation::regclass::text LIKE 'events%'"
            )
    assert {r["rel"] for r in locked} == {"events", *homes}
