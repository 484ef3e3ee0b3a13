"""The queries' SQL (app/views/reader.py) and time travel over the real views: after a
workload through the real command handler and ``catch_up``, the catalog pages by
keyset in order with no gap and no duplicate, joined with the write side's members;
states and activity match the events; ``state_at`` equals the fold of the first v
events at random versions, across history rows, with the views current or behind."""

from __future__ import annotations

import random

from app.command import CommandHandler
from app.domain import Document
from app.store.postgres import PostgresStore
from app.views.project import fold
from app.views.reader import CatalogEntry, ReadViews
from app.views.schema import HISTORY_EVERY
from app.views.timetravel import TimeTravel
from app.views.writer import catch_up
from tests.support.worker import create_docs, workload


async def page_all(views: ReadViews, user: str, limit: int) -> list[CatalogEntry]:
    seen: list[CatalogEntry] = []
    after: tuple[int, str] | None = None
    while True:
        page = await views.catalog(user, limit, after)
        seen.extend(page)
        if len(page) < limit:
            return seen
        after = (page[-1].updated_at, page[-1].id)


async def test_catalog_lists_members_documents_newest_first_by_keyset(
    handler: CommandHandler, store: PostgresStore
) -> None:
    docs = [f"doc{i:02d}" for i in range(13)]
    await create_docs(handler, docs)
    await workload(handler, docs[:5], 40, seed=3)
    await store.set_member("doc03", "bob", "viewer")
    await store.set_member("doc07", "bob", "editor")
    await catch_up(store.pool)
    views = ReadViews(store.pool)
    everything = await views.catalog("alice", 100)
    assert {e.id for e in everything} == set(docs)
    keys = [(-e.updated_at, e.id) for e in everything]
    assert keys == sorted(keys)  # updated_at desc, then id
    for limit in (1, 2, 5, 13):
        assert await page_all(views, "alice", limit) == everything
    entry = next(e for e in everything if e.id == "doc03")
    committed = await handler.committed_model("doc03")
    assert (entry.title, entry.v, entry.owner, entry.role) == (
        committed.doc.title,
        committed.v,
        "alice",
        "owner",
    )
    assert entry.layers == len(committed.doc.layers)
    assert entry.elements == sum(len(layer.elements) for layer in committed.doc.layers)
    bobs = {"doc03": "viewer", "doc07": "editor"}
    expected = [(e.id, bobs[e.id]) for e in everything if e.id in bobs]  # same order
    assert [(e.id, e.role) for e in await views.catalog("bob", 10)] == expected
    await store.remove_member("doc03", "bob")  # members is the truth: gone at once
    assert [e.id for e in await views.catalog("bob", 10)] == ["doc07"]
    assert await views.catalog("nobody", 10) == []


async def test_state_version_and_activity_follow_the_events(
    handler: CommandHandler, store: PostgresStore
) -> None:
    await create_docs(handler, ["d1"])
    views = ReadViews(store.pool)
    assert await views.state("d1") is None and await views.version("d1") is None
    await workload(handler, ["d1"], 30, seed=5)
    await catch_up(store.pool)
    events = await store.read_stream("d1")
    row = await views.state("d1")
    assert row is not None
    assert (row.v, row.state) == (events[-1].v, fold(Document("d1"), events).state)
    assert await views.version("d1") == events[-1].v
    activity = await views.activity("d1", 7)
    assert [(a.v, a.actor, a.kind, a.ts) for a in activity] == [
        (e.v, e.actor, e.kind, e.ts) for e in reversed(events[-7:])
    ]


async def test_state_at_equals_the_fold_at_random_versions(
    handler: CommandHandler, store: PostgresStore
) -> None:
    await create_docs(handler, ["d1"])
    for i in range(2 * HISTORY_EVERY + 20):
        await handler.submit(
            "d1", "alice", "owner", f"r{i}", {"kind": "doc.rename", "title": f"{i}"}
        )
    await workload(handler, ["d1"], 60, seed=11)
    events = await store.read_stream("d1")
    head = events[-1].v
    rng = random.Random(4)
    versions = {1, 2, HISTORY_EVERY - 1, HISTORY_EVERY, HISTORY_EVERY + 1, head}
    versions |= {rng.randint(1, head) for _ in range(12)}
    views = ReadViews(store.pool)
    behind = TimeTravel(views, store)  # no view rows yet: replays from v = 0
    assert await behind.state_at("d1", 300) == fold(Document("d1"), events[:300]).state
    await catch_up(store.pool)
    base = await views.base("d1", HISTORY_EVERY + 5)
    assert base is not None and base.v == HISTORY_EVERY
    current = await views.base("d1", head + 10)
    assert current is not None and current.v == head  # the current state is a base too
    travel = TimeTravel(views, store)
    for v in sorted(versions):
        assert await travel.state_at("d1", v) == fold(Document("d1"), events[:v]).state, v
