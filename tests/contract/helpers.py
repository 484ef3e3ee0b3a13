"""Builders and checks shared by the contract tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import orjson

from app.store.ports import AppendRequest, EventStore, NewEvent, StoredEvent

__all__ = [
    "assert_log_consistent",
    "create_doc",
    "event",
    "fill_log",
    "nested_plans",
    "request",
    "wait_for_lock_waiters",
    "wait_until",
]


def event(
    actor: str = "alice",
    op_id: str | None = None,
    *,
    kind: str = "element.update",
    op: dict[str, Any] | None = None,
    effect: bytes = b"{}",
) -> NewEvent:
    body = op if op is not None else {"kind": kind, "element": "e1", "set": {"x": 1}}
    return NewEvent(actor=actor, op_id=op_id, kind=kind, op=orjson.dumps(body), effect=effect)


def request(
    doc_id: str,
    expected_v: int,
    op_id: str | None = None,
    *,
    actor: str = "alice",
    op: dict[str, Any] | None = None,
) -> AppendRequest:
    return AppendRequest(doc_id=doc_id, expected_v=expected_v, event=event(actor, op_id, op=op))


async def create_doc(store: EventStore, doc_id: str, owner: str = "alice") -> StoredEvent:
    create = NewEvent(
        actor=owner,
        op_id=None,
        kind="doc.create",
        op=orjson.dumps({"kind": "doc.create", "title": f"Title of {doc_id}"}),
        effect=b"{}",
    )
    return await store.create_document(doc_id, owner, f"Title of {doc_id}", create)


async def assert_log_consistent(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """I2 and the log's density, checked in SQL over the whole store; returns the count.

    positions are exactly 1..head; per document, versions are exactly 1..documents.v,
    documents.last_position is the position of its last event, and the ledger points at
    events that exist.
    """
    head = await conn.fetchval("SELECT last_position FROM log_head")
    count, distinct, low, high = await conn.fetchrow(
        "SELECT count(*), count(DISTINCT position), min(position), max(position) FROM events"
    )
    assert count == head, f"{count} events but head {head}"
    # Unique by construction, not by a constraint (events is partitioned by doc_id).
    assert distinct == count, f"{count - distinct} events share a position"
    if count:
        assert (low, high) == (1, head), f"positions span {low}..{high}, head {head}"
    bad_docs = await conn.fetch(
        """
        SELECT d.id, d.v, d.last_position, count(e.v) AS n, max(e.v) AS top, max(e.position) AS last
          FROM documents d LEFT JOIN events e ON e.doc_id = d.id
         GROUP BY d.id
        HAVING d.v <> count(e.v) OR d.v <> coalesce(max(e.v), 0)
            OR d.last_position <> coalesce(max(e.position), 0)
        """
    )
    assert not bad_docs, f"documents out of step with their events: {bad_docs}"
    orphans = await conn.fetchval(
        "SELECT count(*) FROM op_ledger l LEFT JOIN events e ON e.doc_id = l.doc_id AND e.v = l.v"
        " WHERE e.position IS NULL OR e.actor <> l.user_id OR e.op_id <> l.op_id"
    )
    assert orphans == 0, "ledger rows without their event"
    return int(count)


async def wait_until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def wait_for_lock_waiters(conn: asyncpg.Connection, count: int) -> None:
    """Until ``count`` sessions of ``conn``'s database wait on a lock (a row lock on
    log_head or on a document shows as wait_event_type 'Lock')."""
    deadline = time.monotonic() + 10
    while True:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting >= count:
            return
        assert time.monotonic() < deadline, f"{waiting} lock waiters, expected {count}"
        await asyncio.sleep(0.01)


async def fill_log(
    conn: asyncpg.Connection, events: int, docs: int, *, analyze: bool = True
) -> None:
    """A consistent store of ``events`` events round-robin over ``docs`` documents
    (``doc-0`` ...), written in one transaction without the append path (log head,
    documents' versions and last positions set), then analyzed (unless ``analyze`` is
    False: scripts/bench_plans.py keeps the statistics of the empty store). Also what
    scripts/bench_follow.py reads."""
    op = orjson.dumps({"kind": "element.update", "element": "e1", "set": {"x": 1}})
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO documents (id, title, owner) SELECT 'doc-' || d, 'T', 'alice'"
            " FROM generate_series(0, $1 - 1) AS d",
            docs,
        )
        await conn.execute(
            "INSERT INTO events (position, doc_id, v, kind, op, effect, actor, ts)"
            " SELECT p, 'doc-' || ((p - 1) % $2), (p - 1) / $2 + 1, 'element.update',"
            "        $3, '{}', 'alice', now()"
            " FROM generate_series(1, $1::bigint) AS p",
            events,
            docs,
            op,
        )
        await conn.execute(
            "UPDATE documents AS d SET v = e.v, last_position = e.p"
            " FROM (SELECT doc_id, max(v) AS v, max(position) AS p FROM events"
            "       GROUP BY doc_id) AS e WHERE e.doc_id = d.id"
        )
        await conn.execute("UPDATE log_head SET last_position = $1", events)
    if analyze:
        await conn.execute("ANALYZE events, documents")


async def nested_plans(
    dsn: str, sql: str, outer: str, *calls: Sequence[Any]
) -> tuple[list[str], list[list[Any]]]:
    """Run ``sql`` once per argument list in ``calls`` on a new connection, with
    auto_explain logging the plans of the statements nested inside it: those plans
    (the ones naming ``outer``, the call itself, left out) and each call's rows. The
    tables are analyzed first, so the plans are made from statistics of this history."""
    conn = await asyncpg.connect(dsn)
    plans: list[str] = []
    try:
        await conn.execute("ANALYZE events, op_ledger, documents")
        # Prepared first, so the driver's own type introspection is not in the plans.
        statement = await conn.prepare(sql)
        conn.add_log_listener(lambda _conn, message: plans.append(message.message))
        await conn.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
            " SET auto_explain.log_nested_statements = on; SET auto_explain.log_level = notice"
        )
        rows = [await statement.fetch(*args) for args in calls]
        await asyncio.sleep(0.05)  # notices arrive asynchronously
    finally:
        await conn.close()
    return [p for p in plans if outer not in p], rows
