"""atelier_append_one (migration 0008), the append of a batch of one request: it
answers exactly as atelier_append does for the same request, probes only indexes
whatever the history, and locks only the partition it writes."""

from __future__ import annotations

from typing import Any

import asyncpg

from app.store.postgres import PostgresStore
from tests.contract.helpers import assert_log_consistent, create_doc, nested_plans, request

MANY = (
    "SELECT status, v, position, ts FROM atelier_append($1::text[], $2::bigint[],"
    " $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bytea[])"
)
ONE = (
    "SELECT status, v, position, ts FROM atelier_append_one($1, $2::bigint, $3, $4, $5,"
    " $6::bytea, $7::bytea)"
)
OP = b'{"kind":"element.update","element":"e1","set":{"x":1}}'


async def many(conn: asyncpg.Connection, doc: str, expected: int, op_id: str | None) -> Any:
    rows = await conn.fetch(MANY, [doc], [expected], ["alice"], [op_id], ["k"], [OP], [b"{}"])
    assert len(rows) == 1
    return rows[0]


async def one(conn: asyncpg.Connection, doc: str, expected: int, op_id: str | None) -> Any:
    rows = await conn.fetch(ONE, doc, expected, "alice", op_id, "k", OP, b"{}")
    assert len(rows) == 1
    return rows[0]


async def test_it_answers_as_atelier_append(store: PostgresStore, pg_dsn: str) -> None:
    await create_doc(store, "m")
    await create_doc(store, "o")
    # ok with an op id, ok without one, a conflict, a duplicate of the first (decided
    # on the version it would have had), a duplicate whatever its expected version,
    # an op id reused by no one yet after a conflict.
    steps = [(1, "a"), (2, None), (1, "b"), (3, "a"), (7, "a"), (3, "b")]
    conn = await asyncpg.connect(pg_dsn)
    try:
        answers = {}
        for doc, call in (("m", many), ("o", one)):
            answers[doc] = [await call(conn, doc, exp, op_id) for exp, op_id in steps]
            answers[doc].append(await call(conn, "absent", 0, "z"))
        expected = [
            ("ok", 2),
            ("ok", 3),
            ("conflict", 3),
            ("duplicate", 2),
            ("duplicate", 2),
            ("ok", 4),
            ("missing", 0),
        ]
        for doc in ("m", "o"):
            got = answers[doc]
            assert [(r["status"], r["v"]) for r in got] == expected, doc
            first = (got[0]["position"], got[0]["ts"])
            assert (got[3]["position"], got[3]["ts"]) == first  # the first outcome
            assert (got[4]["position"], got[4]["ts"]) == first
            assert all(got[i]["position"] == 0 and got[i]["ts"] == 0 for i in (2, 6))
            assert got[0]["position"] < got[1]["position"] < got[5]["position"]
        assert await assert_log_consistent(conn) == 2 + 2 * 3  # two creates, 3 oks each
        assert [e.v for e in await store.read_stream("o", after_v=0)] == [1, 2, 3, 4]
    finally:
        await conn.close()


async def test_it_probes_only_indexes_whatever_the_history(
    store: PostgresStore, pg_dsn: str
) -> None:
    await create_doc(store, "d1")
    await store.append([request("d1", v, f"op-{v}") for v in range(1, 2001)])
    nested, (ok, dup) = await nested_plans(
        pg_dsn,
        ONE,
        "FROM atelier_append_one(",
        ("d1", 2001, "alice", "new-1", "k", OP, b"{}"),
        ("d1", 1, "alice", "op-5", "k", OP, b"{}"),  # a duplicate of an old op
    )
    assert ok[0]["status"] == "ok" and dup[0]["status"] == "duplicate"
    assert len(nested) >= 6, nested
    for plan in nested:
        assert "Seq Scan" not in plan, plan


async def test_it_locks_only_the_partition_it_writes(store: PostgresStore, pg_dsn: str) -> None:
    await create_doc(store, "d1")
    conn = await asyncpg.connect(pg_dsn)
    try:
        home = await conn.fetchval(
            "SELECT tableoid::regclass::text FROM events WHERE doc_id = 'd1' LIMIT 1"
        )
        for v in range(1, 9):  # past the first calls: the cached generic plans run
            async with conn.transaction():
                assert (await one(conn, "d1", v, f"lk-{v}"))["status"] == "ok"
                locked = await conn.fetch(
                    "SELECT DISTINCT relation::regclass::text AS rel FROM pg_locks"
                    " WHERE pid = pg_backend_pid() AND locktype = 'relation'"
                    " AND relation::regclass::text LIKE 'events%'"
                )
        assert {r["rel"] for r in locked} == {"events", home}
    finally:
        await conn.close()
