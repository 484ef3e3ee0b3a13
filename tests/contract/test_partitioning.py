"""Migration 0006: events partitioned by HASH (doc_id), on a fresh store and on one
holding events written by the previous schema (docs/eventstore.md, "Partitioning")."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg
import pytest

from app.store.migrate import LATEST, ensure_database, migrate, migrations
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from tests.contract.helpers import assert_log_consistent, create_doc, request

PARTITIONS = 16
BEFORE = 5  # the last migration before events was partitioned
# What the old store gets: the partitioning (0006) and every migration after it.
LATER = [m.name for m in migrations()][BEFORE:]
assert LATER[0] == "0006_events_partitioned"
_ROWS = (
    "SELECT position, doc_id, v, kind, op, effect, actor, op_id, ts FROM events ORDER BY position"
)


async def partitions(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT inhrelid::regclass::text AS name FROM pg_inherits"
        " WHERE inhparent = 'events'::regclass ORDER BY 1"
    )
    return [row["name"] for row in rows]


async def write_history(store: PostgresStore, docs: int) -> None:
    """``docs`` documents (fixed ids, so every run spreads them alike), each with a
    chain of ops, some with op ids (ledger rows), in mixed group commits."""
    for d in range(docs):
        await create_doc(store, f"doc-{d:03d}")
    for round_ in range(3):
        batch = [
            request(f"doc-{d:03d}", 1 + 2 * round_ + k, f"op-{round_}-{k}" if d % 2 else None)
            for d in range(docs)
            for k in range(2)
        ]
        results = await store.append(batch)
        assert {r.status for r in results} == {"ok"}


async def assert_append_only_everywhere(conn: asyncpg.Connection) -> None:
    """UPDATE, DELETE and TRUNCATE refused on the parent and on every partition, each
    of which holds rows (a row trigger only fires on a row)."""
    for table in ["events", *await partitions(conn)]:
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") > 0, table
        for sql in (
            f"UPDATE {table} SET kind = 'forged'",
            f"DELETE FROM {table}",
            f"TRUNCATE {table}",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql)


async def test_a_fresh_store_is_partitioned_by_document(pg_clean: str) -> None:
    conn = await asyncpg.connect(pg_clean)
    try:
        assert (
            await conn.fetchval("SELECT pg_get_partkeydef('events'::regclass)") == "HASH (doc_id)"
        )
        assert await partitions(conn) == [f"events_p{i:02d}" for i in range(PARTITIONS)]
        assert (
            await conn.fetchval(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'events'::regclass AND contype = 'p'"
            )
            == "PRIMARY KEY (doc_id, v)"
        )
        checks = await conn.fetch(
            "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint"
            " WHERE conrelid = 'events'::regclass AND contype = 'c' ORDER BY 1"
        )
        assert [r["def"] for r in checks] == ['CHECK (("position" >= 1))', "CHECK ((v >= 1))"]
        # Every partition carries both triggers; the truncate one is per table.
        triggers = await conn.fetch(
            "SELECT tgrelid::regclass::text AS rel, tgname FROM pg_trigger"
            " WHERE NOT tgisinternal AND tgfoid = 'atelier_events_append_only'::regproc"
        )
        by_table = {(r["rel"], r["tgname"]) for r in triggers}
        for table in ["events", *await partitions(conn)]:
            assert (table, "events_no_update_delete") in by_table
            assert (table, "events_no_truncate") in by_table
    finally:
        await conn.close()


async def test_the_document_version_key_is_still_enforced(store: PostgresStore) -> None:
    """I2's constraint survives partitioning: (doc_id, v) is the primary key."""
    await create_doc(store, "d1")
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.pool.execute(
            "INSERT INTO events (position, doc_id, v, kind, op, effect, actor, ts)"
            " VALUES (99, 'd1', 1, 'forged', '{}', '{}', 'mallory', now())"
        )


async def test_a_shared_position_is_caught_by_the_log_check(store: PostgresStore) -> None:
    """Positions are unique by construction, not by a constraint: a forged event at a
    taken position (in another document, so another partition most likely) is
    accepted by the table, and the consistency check used by the contract and
    global-order tests fails on it."""
    await create_doc(store, "d1")
    await create_doc(store, "d2")
    await store.pool.execute(
        "INSERT INTO events (position, doc_id, v, kind, op, effect, actor, ts)"
        " VALUES (1, 'd2', 2, 'forged', '{}', '{}', 'mallory', now())"
    )
    await store.pool.execute("UPDATE log_head SET last_position = 3")
    with pytest.raises(AssertionError, match="share a position"):
        await assert_log_consistent(store.pool)


async def test_migrating_a_store_with_events(scratch_dsn: Callable[[], str]) -> None:
    """A store written by the previous schema: every row survives with its position,
    version and bytes; the trigger fires on every partition; grants are carried over;
    appends go on from the same head."""
    dsn = scratch_dsn()
    await ensure_database(dsn)
    assert len(await migrate(dsn, upto=BEFORE)) == BEFORE
    role = f"atelier_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn)
    try:
        assert (
            await conn.fetchval("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass")
            == b"r"
        )
        await conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
        await conn.execute(f'GRANT SELECT, INSERT ON events TO "{role}"')
        pool = await create_pool(dsn, 4)
        try:
            store = PostgresStore(pool)
            await write_history(store, docs=160)
            before = [tuple(r) for r in await conn.fetch(_ROWS)]
            head = await store.head()
            assert len(before) == head == 160 * 7

            assert await migrate(dsn) == LATER

            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == LATEST
            assert [tuple(r) for r in await conn.fetch(_ROWS)] == before
            assert sum(
                [await conn.fetchval(f"SELECT count(*) FROM {p}") for p in await partitions(conn)]
            ) == len(before)
            assert await assert_log_consistent(conn) == head
            await assert_append_only_everywhere(conn)
            for table in ["events", *await partitions(conn)]:
                for privilege, allowed in (("SELECT", True), ("INSERT", True), ("UPDATE", False)):
                    assert (
                        await conn.fetchval(
                            "SELECT has_table_privilege($1, $2, $3)", role, table, privilege
                        )
                        is allowed
                    ), (table, privilege)

            # The store goes on where it was, through the new table.
            results = await store.append(
                [request("doc-000", 7, "after-1"), request("doc-001", 7, "op-2-1")]
            )
            assert [(r.status, r.position) for r in results] == [
                ("ok", head + 1),
                (
                    "duplicate",
                    (
                        await conn.fetchval(
                            "SELECT position FROM events WHERE doc_id = 'doc-001' AND v = 7"
                        )
                    ),
                ),
            ]
            assert [e.v for e in await store.read_stream("doc-000", after_v=5)] == [6, 7, 8]
            assert await assert_log_consistent(conn) == head + 1
            assert await migrate(dsn) == []
        finally:
            await pool.close()
    finally:
        await conn.execute(f'DROP OWNED BY "{role}"')
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        await conn.close()


async def test_a_view_on_events_stops_the_migration_unchanged(
    scratch_dsn: Callable[[], str],
) -> None:
    dsn = scratch_dsn()
    await ensure_database(dsn)
    await migrate(dsn, upto=BEFORE)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE VIEW recent_events AS SELECT position, doc_id FROM events")
        with pytest.raises(asyncpg.DependentObjectsStillExistError, match="recent_events"):
            await migrate(dsn)
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == BEFORE
        assert (
            await conn.fetchval("SELECT relkind FROM pg_class WHERE oid = 'events'::regclass")
            == b"r"
        )
        assert await conn.fetchval("SELECT to_regclass('events_partitioned')") is None
        await conn.execute("DROP VIEW recent_events")
        assert await migrate(dsn) == LATER
    finally:
        await conn.close()
