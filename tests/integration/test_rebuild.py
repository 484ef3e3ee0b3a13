"""Blue-green rebuild (app/views/rebuild.py) against the real PostgreSQL: a rebuilt view
holds the same bytes as the live one (I5), also while events keep arriving and the
workers keep writing, and the workers carry on into the new generation."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.command import CommandHandler
from app.errors import AppError
from app.snapshots import Snapshotter
from app.store.postgres import PostgresStore
from app.views.rebuild import RebuildBusy, RebuildError, rebuild
from app.views.schema import VIEWS, View, table
from app.views.verify import verify
from app.views.writer import catch_up

ROOT = Path(__file__).resolve().parents[2]

# Each view's rows in a stable order, as stored.
ORDER: dict[View, str] = {
    "doc_state": "doc_id",
    "catalog": "doc_id",
    "activity": "doc_id, v",
    "history": "doc_id, v",
}


async def dump(pool: asyncpg.Pool, name: View, source: str | None = None) -> list[tuple[Any, ...]]:
    """Every row of ``read.<name>`` (or of ``source``), as tuples, in key order."""
    rows = await pool.fetch(f"SELECT * FROM {source or 'read.' + name} ORDER BY {ORDER[name]}")
    return [tuple(row.values()) for row in rows]


async def dump_all(pool: asyncpg.Pool) -> dict[View, list[tuple[Any, ...]]]:
    return {name: await dump(pool, name) for name in VIEWS}


async def generation(pool: asyncpg.Pool, name: View) -> int:
    return int(await pool.fetchval("SELECT generation FROM read.generations WHERE view = $1", name))


def random_op(rng: random.Random, layers: list[str], elements: list[str], i: int) -> Any:
    """A plausible client op; some are refused (an element gone by then), as in life."""
    roll = rng.random()
    if roll < 0.05 or not layers:
        return {"kind": "layer.add", "layer": f"L{i}", "name": f"layer {i}"}
    if roll < 0.35 or not elements:
        shape = rng.choice(["rect", "stroke"])
        props: dict[str, Any] = (
            {"x": rng.randint(0, 500), "y": rng.randint(0, 500), "w": 10, "h": 10}
            if shape == "rect"
            else {"color": "#123456", "width": 2, "points": [[1, 2, 0.5], [3, 4, 0.5]]}
        )
        return {
            "kind": "element.add",
            "element": f"e{i}",
            "layer": rng.choice(layers),
            "shape": shape,
            "props": props,
        }
    if roll < 0.65:
        return {
            "kind": "element.update",
            "element": rng.choice(elements),
            "set": {"x": rng.randint(0, 500)} if rng.random() < 0.5 else {"y": rng.randint(0, 9)},
        }
    if roll < 0.72:
        return {"kind": "element.remove", "element": rng.choice(elements)}
    if roll < 0.8:
        return {"kind": "undo"}
    if roll < 0.85:
        return {"kind": "redo"}
    if roll < 0.9:
        return {"kind": "doc.rename", "title": f"title {i}"}
    if roll < 0.95:
        return {"kind": "layer.update", "layer": rng.choice(layers), "set": {"opacity": 0.5}}
    return {
        "kind": "batch",
        "ops": [
            {"kind": "element.update", "element": rng.choice(elements), "set": {"x": 1}},
            {"kind": "layer.update", "layer": rng.choice(layers), "set": {"visible": False}},
        ],
    }


async def workload(
    store: PostgresStore,
    *,
    docs: int = 6,
    ops: int = 400,
    seed: int = 1,
    prefix: str = "doc",
    snapshot_every: int = 0,
) -> int:
    """Documents created and edited through the real command handler by several users
    (undo, redo, batches and restores included); one document gets past HISTORY_EVERY.
    Returns the ops accepted."""
    rng = random.Random(seed)
    handler = CommandHandler(store)
    await handler.start()
    ids = [f"{prefix}{d}" for d in range(docs)]
    users = ["alice", "bob", "carol"]
    accepted = 0
    try:
        for doc_id in ids:
            await handler.create_document(doc_id, "alice", f"Poster {doc_id}")
            for user in users[1:]:
                await store.set_member(doc_id, user, "editor")
        for i in range(ops):
            # the first document gets half the ops: over HISTORY_EVERY (history rows)
            doc_id = ids[0] if rng.random() < 0.5 else rng.choice(ids)
            model = await handler.model(doc_id)
            layers = [layer.id for layer in model.doc.layers]
            elements = [e.id for layer in model.doc.layers for e in layer.elements]
            user = rng.choice(users)
            try:
                if rng.random() < 0.01 and model.v > 3:
                    await handler.restore(doc_id, user, "editor", rng.randint(1, model.v))
                else:
                    op = random_op(rng, layers, elements, i)
                    await handler.submit(doc_id, user, "editor", f"{prefix}-{i}", op)
                accepted += 1
            except AppError:
                pass
    finally:
        await handler.close()
    if snapshot_every:
        snapshotter = Snapshotter(store, every=snapshot_every)
        for doc_id in ids:
            await snapshotter.on_events(await store.read_stream(doc_id))
    return accepted


async def test_a_rebuilt_view_holds_the_live_views_bytes(store: PostgresStore) -> None:
    assert await workload(store, ops=700) > 600
    assert await catch_up(store.pool) > 0
    live = await dump_all(store.pool)
    assert any(live["history"]), "the workload should reach HISTORY_EVERY"
    summary = await rebuild(store.pool, ["doc_state"])
    old = summary.views[0].old
    assert summary.views[0].new == old + 1 and summary.views[0].dropped
    assert await generation(store.pool, "doc_state") == old + 1
    assert await dump(store.pool, "doc_state") == live["doc_state"]
    # every other view at once, with one fold; the old tables kept on request
    summary = await rebuild(store.pool, ["catalog", "activity", "history"], keep_old=True)
    assert [r.view for r in summary.views] == ["catalog", "activity", "history"]
    assert await dump_all(store.pool) == live
    for r in summary.views:
        assert await generation(store.pool, r.view) == r.new == r.old + 1
        assert await dump(store.pool, r.view, table(r.view, r.old)) == live[r.view], "kept"
        await store.pool.execute(f"DROP TABLE {table(r.view, r.old)}")
    exists = await store.pool.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", table("doc_state", old)
    )
    assert not exists, "the old doc_state table was dropped"


async def test_the_workers_carry_on_into_the_new_generation(store: PostgresStore) -> None:
    await workload(store, ops=120)
    await catch_up(store.pool)
    summary = await rebuild(store.pool, list(VIEWS))
    await workload(store, ops=120, seed=2, prefix="more")
    assert await catch_up(store.pool) > 0
    after = await dump_all(store.pool)
    for r in summary.views:
        assert await dump(store.pool, r.view, table(r.view, r.new)) == after[r.view]
    # and the live result still equals a fresh fold of everything
    await rebuild(store.pool, list(VIEWS))
    assert await dump_all(store.pool) == after


async def test_rebuild_while_events_arrive_and_workers_write(store: PostgresStore) -> None:
    """Appends and catch_up run the whole time the rebuild folds, catches up and
    switches; afterwards the view equals a fresh fold, and catch_up wrote the new
    table after the switch."""
    await workload(store, ops=300)
    await catch_up(store.pool)
    before = {name: await generation(store.pool, name) for name in VIEWS}
    stop = asyncio.Event()

    async def writers() -> None:
        n = 0
        while not stop.is_set():
            await workload(store, docs=2, ops=40, seed=100 + n, prefix=f"w{n}-")
            n += 1

    async def workers() -> None:
        while not stop.is_set():
            await catch_up(store.pool, batch=50)
            await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(writers()), asyncio.create_task(workers())]
    try:
        await asyncio.sleep(0.3)
        summary = await rebuild(store.pool, list(VIEWS))
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert all(r.tail > 0 for r in summary.views), "events arrived during the rebuild"
    await catch_up(store.pool)
    live = await dump_all(store.pool)
    await rebuild(store.pool, list(VIEWS))
    assert await dump_all(store.pool) == live
    assert {name: await generation(store.pool, name) - 2 for name in VIEWS} == before


async def test_a_view_behind_the_head_is_rebuilt_to_its_checkpoints(
    store: PostgresStore,
) -> None:
    """No worker ran since: the rebuild holds what the view held, not more (I5: the
    checkpoints did not move, so neither may the view)."""
    await workload(store, ops=100)
    await catch_up(store.pool)
    before = await dump_all(store.pool)
    await workload(store, ops=50, seed=3, prefix="late")
    await rebuild(store.pool, list(VIEWS))
    assert await dump_all(store.pool) == before
    await catch_up(store.pool)
    live = await dump_all(store.pool)
    await rebuild(store.pool, ["activity"])
    assert await dump(store.pool, "activity") == live["activity"]


async def test_one_rebuild_at_a_time(store: PostgresStore) -> None:
    serving = await generation(store.pool, "doc_state")
    async with store.pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext('atelier.rebuild'))")
        with pytest.raises(RebuildBusy):
            await rebuild(store.pool, ["doc_state"])
        await conn.execute("SELECT pg_advisory_unlock(hashtext('atelier.rebuild'))")
    assert await generation(store.pool, "doc_state") == serving


def app(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LANG": "C.UTF-8",
        "APP_ENV": "prod",
        "APP_SECRET": "a test secret that is long enough for HS256",
        "DATABASE_URL": dsn,
    }
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


async def test_the_rebuild_command(store: PostgresStore, pg_clean: str) -> None:
    await workload(store, ops=80)
    await catch_up(store.pool)
    live = await dump_all(store.pool)
    serving = await generation(store.pool, "doc_state")
    result = await asyncio.to_thread(app, pg_clean, "rebuild", "--all")
    assert result.returncode == 0, result.stderr
    assert f"rebuilt doc_state: g{serving + 1} serves" in result.stdout
    assert "events/s" in result.stdout
    assert "fold" in result.stderr  # the progress bars
    assert await dump_all(store.pool) == live
    bad = await asyncio.to_thread(app, pg_clean, "rebuild", "nope")
    assert bad.returncode == 2 and "doc_state" in bad.stderr
    both = await asyncio.to_thread(app, pg_clean, "rebuild", "catalog", "--all")
    assert both.returncode == 2


async def test_an_empty_store_rebuilds_to_empty_views(store: PostgresStore) -> None:
    summary = await rebuild(store.pool, list(VIEWS))
    assert summary.events == 0 and all(r.rows == 0 for r in summary.views)
    assert await dump_all(store.pool) == {name: [] for name in VIEWS}


async def test_a_broken_stream_stops_the_rebuild_and_changes_nothing(
    store: PostgresStore,
) -> None:
    await workload(store, docs=2, ops=30)
    await catch_up(store.pool)
    live = await dump_all(store.pool)
    serving = await generation(store.pool, "activity")
    async with store.pool.acquire() as conn, conn.transaction():
        head = await conn.fetchval("SELECT last_position FROM log_head")
        v = await conn.fetchval("SELECT v FROM documents WHERE id = 'doc1'")
        await conn.execute(
            "INSERT INTO events (position, doc_id, v, kind, op, effect, actor, ts)"
            " VALUES ($1, 'doc1', $2, 'no.such', '{\"kind\": \"no.such\"}', '{}', 'x', now())",
            head + 1,
            v + 1,
        )
        await conn.execute("UPDATE log_head SET last_position = $1", head + 1)
        # as if a worker had got past it (the real one dead-letters it and stops)
        await conn.execute("UPDATE read.checkpoints SET position = $1", head + 1)
    with pytest.raises(RebuildError, match=rf"'doc1' at v{v + 1} \(position {head + 1}\)"):
        await rebuild(store.pool, ["activity"])
    assert await generation(store.pool, "activity") == serving
    new = table("activity", serving + 1)
    assert not await store.pool.fetchval("SELECT to_regclass($1) IS NOT NULL", new)
    assert await dump_all(store.pool) == live


async def test_the_switch_waits_for_a_reader_and_tries_again(
    store: PostgresStore, pg_clean: str
) -> None:
    """A transaction reading the view holds it past lock_timeout: the switch rolls back
    and tries again, and succeeds once the reader is gone; a reader that never goes
    makes the rebuild fail with nothing serving changed."""
    await workload(store, docs=2, ops=40)
    await catch_up(store.pool)
    live = await dump_all(store.pool)
    serving = await generation(store.pool, "history")
    reader = await asyncpg.connect(pg_clean)
    try:
        await reader.execute("BEGIN; SELECT count(*) FROM read.history")
        with pytest.raises(RebuildError, match=r"could not lock read\.history in 10 tries"):
            await rebuild(store.pool, ["history"], lock_timeout=0.05)
        assert await generation(store.pool, "history") == serving
        new = table("history", serving + 1)
        assert not await store.pool.fetchval("SELECT to_regclass($1) IS NOT NULL", new)

        async def let_go() -> None:
            await asyncio.sleep(0.3)
            await reader.execute("COMMIT")

        release = asyncio.create_task(let_go())
        summary = await rebuild(store.pool, ["history"], lock_timeout=0.05)
        await release
    finally:
        await reader.close()
    assert summary.views[0].new == serving + 1 == await generation(store.pool, "history")
    assert await dump_all(store.pool) == live


async def test_after_a_restore_the_rebuild_renews_void_checkpoints(store: PostgresStore) -> None:
    """A restore bumps the store's epoch: every checkpoint of the old one is void and the
    workers apply nothing to them. The rebuild folds those shards up to the head and
    sets their checkpoints there, at the new epoch."""
    await workload(store, docs=3, ops=60)
    await catch_up(store.pool)
    await workload(store, docs=2, ops=40, seed=4, prefix="after")
    await store.pool.execute("UPDATE store_meta SET epoch = epoch + 1")
    head = await store.pool.fetchval("SELECT last_position FROM log_head")
    fencing = await store.pool.fetchval("SELECT max(fencing) FROM read.checkpoints")
    await rebuild(store.pool, list(VIEWS))
    rows = await store.pool.fetch("SELECT DISTINCT position, epoch FROM read.checkpoints")
    assert [tuple(r.values()) for r in rows] == [(head, 2)]
    assert await store.pool.fetchval("SELECT min(fencing) FROM read.checkpoints") > fencing
    report = await verify(store.pool)
    assert report.ok, "\n".join(report.lines())
    assert report.events == head
    doc_ids = [row[0] for row in (await dump_all(store.pool))["doc_state"]]
    assert any(doc_id.startswith("after") for doc_id in doc_ids)
