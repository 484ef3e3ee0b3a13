"""The read side's test helpers: a random workload through the real command handler,
and the exactness check of every view against a fresh fold of the events (I5).

    await workload(handler, docs=["d0", "d1"], ops=200, seed=1)
    await assert_views_exact(conn)            # every doc_state/catalog/activity/history row
    await wait_caught_up(conn, within=10)     # every running checkpoint at the log's head
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import defaultdict
from typing import Any

import asyncpg

from app.command import CommandHandler
from app.domain import Document
from app.errors import AppError
from app.store._rows import EVENT_COLUMNS, to_event
from app.store.ports import StoredEvent
from app.views.project import fold
from app.views.schema import HISTORY_EVERY
from app.workers import Worker, WorkerConfig
from tests.support.appprocess import AppProcess

__all__ = [
    "RunningWorker",
    "WorkerProcess",
    "assert_views_exact",
    "create_docs",
    "fast_config",
    "fencings",
    "owners",
    "random_op",
    "wait_caught_up",
    "workload",
]


async def create_docs(handler: CommandHandler, docs: list[str], owner: str = "alice") -> None:
    for doc_id in docs:
        await handler.create_document(doc_id, owner, f"Doc {doc_id}")
        await handler.submit(
            doc_id,
            owner,
            "owner",
            f"{doc_id}-L1",
            {"kind": "layer.add", "layer": "L1", "name": "Bg"},
        )


def random_op(rng: random.Random, elements: list[str], n: int) -> dict[str, Any]:
    """One op of any kind; ``elements`` is what the caller believes exists (a guess:
    an op that no longer applies is rejected by the handler and stores nothing)."""
    roll = rng.random()
    if roll < 0.35 or not elements:
        element = f"e{n}"
        elements.append(element)
        return {
            "kind": "element.add",
            "element": element,
            "layer": rng.choice(["L1", "L1", "L2"]),
            "shape": "rect",
            "props": {"x": rng.randint(0, 500), "y": rng.randint(0, 500), "w": 10, "h": 10},
        }
    if roll < 0.55:
        return {
            "kind": "element.update",
            "element": rng.choice(elements),
            "set": {"x": rng.randint(0, 500), "color": rng.choice(["#ff0000", "#00ff00"])},
        }
    if roll < 0.62:
        return {"kind": "element.remove", "element": elements.pop(rng.randrange(len(elements)))}
    if roll < 0.70:
        return {"kind": "undo"}
    if roll < 0.74:
        return {"kind": "redo"}
    if roll < 0.78:
        return {"kind": "layer.add", "layer": "L2", "name": "Top"}
    if roll < 0.81:
        return {"kind": "doc.rename", "title": f"Title {n}"}
    if roll < 0.84:
        return {"kind": "layer.update", "layer": "L1", "set": {"opacity": rng.random()}}
    ops: list[dict[str, Any]] = []
    for i in range(rng.randint(2, 4)):
        element = f"e{n}b{i}"
        elements.append(element)
        ops.append(
            {
                "kind": "element.add",
                "element": element,
                "layer": "L1",
                "shape": "ellipse",
                "props": {"x": i, "y": i, "w": 5, "h": 5},
            }
        )
    return {"kind": "batch", "ops": ops}


async def workload(
    handler: CommandHandler,
    docs: list[str],
    ops: int,
    *,
    seed: int = 0,
    writers: int = 4,
    pace: float = 0.0,
) -> int:
    """``ops`` random ops over ``docs`` from ``writers`` concurrent writers (each on
    its own documents' slice, so ops pipeline into group commits); returns how many
    were accepted. ``pace``: seconds between one writer's ops."""
    elements: dict[str, list[str]] = defaultdict(list)
    accepted = 0

    async def writer(w: int) -> None:
        nonlocal accepted
        rng = random.Random(seed * 1000 + w)
        mine = docs[w::writers] or docs
        for i in range(w, ops, writers):
            doc_id = rng.choice(mine)
            op = random_op(rng, elements[doc_id], i)
            try:
                await handler.submit(doc_id, "alice", "owner", f"w{w}-{i}", op)
                accepted += 1
            except AppError:
                pass  # the guess was wrong (removed element, nothing to undo): stored nothing
            if pace:
                await asyncio.sleep(pace)

    await asyncio.gather(*(writer(w) for w in range(writers)))
    return accepted


async def _events_by_doc(conn: asyncpg.Connection) -> dict[str, list[StoredEvent]]:
    rows = await conn.fetch(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY doc_id, v")
    out: dict[str, list[StoredEvent]] = defaultdict(list)
    for row in rows:
        out[row["doc_id"]].append(to_event(row))
    return out


async def assert_views_exact(conn: asyncpg.Connection, only: set[str] | None = None) -> int:
    """Every view row equals what a fresh fold of the events gives, and no row is
    missing or extra (the views must be caught up to the head). ``only``: check these
    documents alone. Returns the number of documents checked."""
    by_doc = await _events_by_doc(conn)
    if only is not None:
        by_doc = {doc_id: events for doc_id, events in by_doc.items() if doc_id in only}
    states = {r["doc_id"]: r for r in await conn.fetch("SELECT * FROM read.doc_state")}
    catalog = {r["doc_id"]: r for r in await conn.fetch("SELECT * FROM read.catalog")}
    activity: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for r in await conn.fetch("SELECT * FROM read.activity ORDER BY doc_id, v"):
        activity[r["doc_id"]].append((r["v"], r["actor"], r["kind"], r["ts"]))
    history: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    for r in await conn.fetch("SELECT * FROM read.history ORDER BY doc_id, v"):
        history[r["doc_id"]].append((r["v"], bytes(r["state"])))
    if only is None:
        assert set(states) == set(by_doc), "doc_state rows are not one per document"
        assert set(catalog) == set(by_doc), "catalog rows are not one per document"
        assert set(activity) <= set(by_doc) and set(history) <= set(by_doc)
    for doc_id, events in by_doc.items():
        rows = fold(Document(doc_id), events)
        state = states[doc_id]
        assert (state["v"], bytes(state["state"]), state["updated_at"]) == (
            rows.doc.v,
            rows.state,
            rows.updated_at,
        ), f"doc_state of {doc_id} differs from the fold of its events"
        entry = catalog[doc_id]
        assert (
            entry["title"],
            entry["owner"],
            entry["v"],
            entry["layers"],
            entry["elements"],
            entry["updated_at"],
        ) == (
            rows.doc.title,
            events[0].actor,
            rows.doc.v,
            rows.layers,
            rows.elements,
            rows.updated_at,
        ), f"catalog of {doc_id} differs"
        expected = [(e.v, e.actor, e.kind, e.ts) for e in events]
        assert activity[doc_id] == expected, (
            f"activity of {doc_id} differs from its events: missing"
            f" {sorted(set(expected) - set(activity[doc_id]))[:5]},"
            f" extra {sorted(set(activity[doc_id]) - set(expected))[:5]}"
        )
        assert history[doc_id] == rows.history, f"history of {doc_id} differs"
        assert all(v % HISTORY_EVERY == 0 for v, _ in history[doc_id])
    return len(by_doc)


async def wait_caught_up(conn: asyncpg.Connection, within: float = 10.0) -> None:
    """Until every running checkpoint is at the log's head (raises on timeout)."""
    deadline = time.monotonic() + within
    while True:
        behind = await conn.fetchval(
            "SELECT count(*) FROM read.checkpoints WHERE status = 'running'"
            " AND position < (SELECT last_position FROM log_head)"
        )
        if behind == 0:
            return
        if time.monotonic() > deadline:
            rows = await conn.fetch(
                "SELECT view, shard, position, owner, fencing FROM read.checkpoints"
                " WHERE position < (SELECT last_position FROM log_head) ORDER BY shard, view"
            )
            head = await conn.fetchval("SELECT last_position FROM log_head")
            raise AssertionError(f"views not caught up to {head} in {within}s: {rows[:8]}")
        await asyncio.sleep(0.05)


class RunningWorker:
    """``async with RunningWorker(config) as w:`` runs ``Worker.run()`` in a task;
    leaving stops it (as SIGTERM would) and re-raises what made it fail."""

    def __init__(self, config: WorkerConfig) -> None:
        self.worker = Worker(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Worker:
        self.task = asyncio.create_task(self.worker.run())
        return self.worker

    async def __aexit__(self, *exc: object) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        self.worker.stop()
        done, _ = await asyncio.wait([task], timeout=10)
        if not done:
            task.cancel()
            raise AssertionError("the worker did not stop within 10 s of stop()")
        task.result()


def fast_config(dsn: str, worker_id: str = "w1", **overrides: Any) -> WorkerConfig:
    """A worker configuration with test-sized intervals."""
    values: dict[str, Any] = {
        "lease_interval": 0.1,
        "poll_interval": 0.5,
        "max_backoff": 0.2,
        **overrides,
    }
    return WorkerConfig(dsn=dsn, worker_id=worker_id, **values)


class WorkerProcess(AppProcess):
    """One ``python -m app worker --id NAME`` with its log lines collected as they come."""

    def __init__(self, dsn: str, name: str, **env: str) -> None:
        full = {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": dsn,
            "APP_ENV": "prod",
            "APP_SECRET": "s" * 40,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
            "WORKER_LEASE_INTERVAL_MS": "200",
            "WORKER_METRICS_PORT": "off",
            **env,
        }
        super().__init__(["worker", "--id", name], full, name)


async def owners(conn: asyncpg.Connection) -> dict[int, set[str | None]]:
    """shard -> the owners its view rows name (one each when all is well)."""
    out: dict[int, set[str | None]] = defaultdict(set)
    for row in await conn.fetch("SELECT shard, owner FROM read.checkpoints"):
        out[int(row["shard"])].add(row["owner"])
    return dict(out)


async def fencings(conn: asyncpg.Connection) -> dict[tuple[str, int], int]:
    rows = await conn.fetch("SELECT view, shard, fencing FROM read.checkpoints")
    return {(row["view"], int(row["shard"])): int(row["fencing"]) for row in rows}
