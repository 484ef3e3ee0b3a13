"""``verify`` (app/views/verify.py, ``python -m app verify``) against the real PostgreSQL:
it passes on a store written by the real command handler and projected by catch_up,
and names the document and the check when a view row, a count, an activity row, a
snapshot, a stream or the log head was tampered with by hand."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
import pytest

from app.store.postgres import PostgresStore
from app.views.schema import View, table
from app.views.verify import verify
from app.views.writer import catch_up
from tests.integration.test_rebuild import app, generation, workload


async def serving(pool: asyncpg.Pool, name: View) -> str:
    """The table that serves ``read.<name>`` now (rebuild tests move generations)."""
    return table(name, await generation(pool, name))


@pytest.fixture
async def projected(store: PostgresStore) -> PostgresStore:
    await workload(store, docs=4, ops=500, snapshot_every=50)
    await catch_up(store.pool)
    return store


async def test_a_clean_store_passes(projected: PostgresStore) -> None:
    report = await verify(projected.pool)
    assert report.ok, "\n".join(report.lines())
    assert report.documents == 4
    assert report.events == await projected.pool.fetchval("SELECT count(*) FROM events")
    snapshots = report.checks[-1]
    assert snapshots.checked > 0, "the workload wrote snapshots; they were compared"
    assert report.lines()[-1].startswith("verify: OK")


async def test_a_view_behind_the_head_passes(projected: PostgresStore) -> None:
    """I5 speaks of the checkpoint, not the head: events no worker applied yet are not
    differences."""
    await workload(projected, docs=2, ops=60, seed=9, prefix="late")
    report = await verify(projected.pool)
    assert report.ok, "\n".join(report.lines())


async def test_the_command_passes_and_catches_a_tampered_state(
    projected: PostgresStore, pg_clean: str
) -> None:
    ok = await asyncio.to_thread(app, pg_clean, "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "I5 read.doc_state == fold up to its checkpoint" in ok.stdout
    assert "verify: OK (4 documents" in ok.stdout
    assert "verify" in ok.stderr  # the progress bar
    doc_state = await serving(projected.pool, "doc_state")
    await projected.pool.execute(
        f"UPDATE {doc_state} SET state = state || ' '::bytea WHERE doc_id = 'doc2'"
    )
    bad = await asyncio.to_thread(app, pg_clean, "verify")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    lines = [line for line in bad.stdout.splitlines() if "doc2" in line]
    assert lines and "state differs from byte" in lines[0], bad.stdout
    summary = [line for line in bad.stdout.splitlines() if line.startswith("I5 read.doc_state")]
    assert summary[0].endswith(" 1 difference"), bad.stdout
    one = await asyncio.to_thread(app, pg_clean, "verify", "--doc", "doc1")
    assert one.returncode == 0, one.stdout
    assert "verify: OK (1 documents" in one.stdout


async def test_a_tampered_catalog_count(projected: PostgresStore) -> None:
    catalog = await serving(projected.pool, "catalog")
    await projected.pool.execute(
        f"UPDATE {catalog} SET elements = elements + 1 WHERE doc_id = 'doc3'"
    )
    report = await verify(projected.pool)
    assert not report.ok
    check = next(c for c in report.checks if c.what.startswith("read.catalog"))
    assert check.differences == 1
    assert check.details[0].startswith("doc3 ") and "elements is" in check.details[0]
    assert sum(c.differences for c in report.checks) == 1, "only the catalog differs"


async def test_a_missing_activity_row(projected: PostgresStore, pg_clean: str) -> None:
    activity = await serving(projected.pool, "activity")
    await projected.pool.execute(f"DELETE FROM {activity} WHERE doc_id = 'doc1' AND v = 2")
    result = await asyncio.to_thread(app, pg_clean, "verify")
    assert result.returncode == 1
    assert "doc1 (fold of v1..v" in result.stdout and "1 rows missing (v 2)" in result.stdout


async def test_rows_of_a_document_without_events(projected: PostgresStore) -> None:
    history = await serving(projected.pool, "history")
    await projected.pool.execute(f"INSERT INTO {history} VALUES ('ghost', 256, '{{}}')")
    report = await verify(projected.pool)
    check = next(c for c in report.checks if c.what.startswith("read.history"))
    assert check.details == ["ghost: rows in the view, no events"]


async def test_a_tampered_snapshot(projected: PostgresStore) -> None:
    row = await projected.pool.fetchrow("SELECT doc_id, v, state FROM snapshots LIMIT 1")
    state = orjson.loads(row["state"])
    state["state"]["title"] = "forged"
    await projected.pool.execute(
        "UPDATE snapshots SET state = $3 WHERE doc_id = $1 AND v = $2",
        row["doc_id"],
        row["v"],
        orjson.dumps(state),
    )
    report = await verify(projected.pool, doc=row["doc_id"])
    assert [c.details for c in report.checks if not c.ok] == [
        [f"{row['doc_id']}: the snapshot at v{row['v']} is not the replay"]
    ]


async def test_a_broken_stream_and_log(projected: PostgresStore) -> None:
    """An event appended by hand past a gap, and a log head that lies (I2)."""
    pool = projected.pool
    async with pool.acquire() as conn, conn.transaction():
        head = await conn.fetchval("SELECT last_position FROM log_head")
        v = await conn.fetchval("SELECT v FROM documents WHERE id = 'doc0'")
        await conn.execute(
            "INSERT INTO events (position, doc_id, v, kind, op, effect, actor, ts)"
            " VALUES ($1, 'doc0', $2, 'doc.rename', $3, '{}', 'alice', now())",
            head + 2,
            v + 2,
            orjson.dumps({"kind": "doc.rename", "title": "x"}),
        )
    report = await verify(pool)
    streams, log = report.checks[0], report.checks[1]
    assert streams.details == [f"doc0: {v + 1} events with versions 1..{v + 2}: not 1..{v + 1}"]
    assert log.details == [
        f"1 holes in 1..{head + 2}, first at {head + 1}",
        f"log_head is {head}, the greatest position {head + 2}",
    ]
    assert any("cannot follow" in d for d in report.checks[-2].details), "the fold breaks too"


async def test_an_event_at_a_position_another_holds(projected: PostgresStore) -> None:
    """Positions are unique by construction, not by a constraint (events is partitioned
    by document, migration 0006): a forged event at a taken position, with the head
    moved so the count adds up, is a shared position and a hole."""
    pool = projected.pool
    async with pool.acquire() as conn, conn.transaction():
        head = await conn.fetchval("SELECT last_position FROM log_head")
        v = await conn.fetchval("SELECT v FROM documents WHERE id = 'doc1'")
        taken = await conn.fetchval("SELECT position FROM events WHERE doc_id = 'doc0' AND v = 3")
        await conn.execute(
            "INSERT INTO events (position, doc_id, v, kind, op, effect, actor, ts)"
            " VALUES ($1, 'doc1', $2, 'doc.rename', $3, '{}', 'alice', now()),"
            "        ($4, 'doc1', $5, 'doc.rename', $3, '{}', 'alice', now())",
            taken,
            v + 1,
            orjson.dumps({"kind": "doc.rename", "title": "x"}),
            head + 2,
            v + 2,
        )
        await conn.execute("UPDATE documents SET v = $1 WHERE id = 'doc1'", v + 2)
        await conn.execute("UPDATE log_head SET last_position = $1", head + 2)
    report = await verify(pool)
    assert report.checks[1].details == [
        f"1 events at a position another event holds, first at {taken} (2 events)",
        f"1 holes in 1..{head + 2}, first at {head + 1}",
    ]
    assert not report.ok


async def test_a_wrong_last_position_and_a_checkpoint_past_the_head(
    projected: PostgresStore,
) -> None:
    pool = projected.pool
    head = await pool.fetchval("SELECT last_position FROM log_head")
    await pool.execute("UPDATE documents SET last_position = 1 WHERE id = 'doc2'")
    await pool.execute(
        "UPDATE read.checkpoints SET position = $1 WHERE view = 'catalog' AND shard = 3",
        head + 5,
    )
    report = await verify(pool)
    streams, log = report.checks[0], report.checks[1]
    assert len(streams.details) == 1
    assert streams.details[0].startswith("doc2: documents.last_position = 1, its last event")
    assert log.details == [
        f"the checkpoint of catalog shard 3 is at {head + 5}, past the head {head}"
    ]
