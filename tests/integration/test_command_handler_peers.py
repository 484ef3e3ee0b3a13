"""Two command handlers on one store, as two gateway processes run them: a rejection is
decided on the document as the store holds it, never on a write model another process
has moved past (docs/architecture.md, "Rejections are decided on the store's state")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import pytest

from app.command import CommandHandler
from app.errors import Conflict, Invalid
from app.observability import metrics
from app.store.pool import create_pool
from app.store.ports import AppendRequest, AppendResult, StoredEvent
from app.store.postgres import PostgresStore


def rect(element: str, layer: str = "L1") -> dict[str, Any]:
    return {
        "kind": "element.add",
        "element": element,
        "layer": layer,
        "shape": "rect",
        "props": {"x": 0, "y": 0, "w": 10, "h": 10},
    }


LAYER = {"kind": "layer.add", "layer": "L1", "name": "Bg"}


def count(counter: Any) -> float:
    return float(counter._value.get())


@pytest.fixture
async def pools(pg_clean: str) -> AsyncIterator[list[asyncpg.Pool]]:
    made = [await create_pool(pg_clean, 4) for _ in range(2)]
    yield made
    for pool in made:
        await pool.close()


@pytest.fixture
async def peers(pools: list[asyncpg.Pool]) -> AsyncIterator[list[CommandHandler]]:
    """Two started handlers, each with its own pool and its own warm models."""
    handlers = [CommandHandler(PostgresStore(pool)) for pool in pools]
    for h in handlers:
        await h.start()
    yield handlers
    for h in handlers:
        await h.close()


async def behind(here: CommandHandler, there: CommandHandler) -> None:
    """d1 created through ``here`` (which keeps v1 warm), its layer L1 added through
    ``there``: ``here`` is one version behind the store."""
    await here.create_document("d1", "alice", "Poster")
    await there.submit("d1", "alice", "owner", "add-L1", LAYER)


async def versions(pool: asyncpg.Pool, doc_id: str = "d1") -> list[int]:
    rows = await pool.fetch("SELECT v FROM events WHERE doc_id = $1 ORDER BY v", doc_id)
    return [r["v"] for r in rows]


async def test_an_op_needing_what_another_process_added_is_accepted(
    peers: list[CommandHandler], pools: list[asyncpg.Pool]
) -> None:
    here, there = peers
    await behind(here, there)
    stale = count(metrics.stale_decisions_total)
    # `here` still holds v1, without L1: deciding there alone would answer `conflict`.
    ack = await here.submit("d1", "bob", "editor", "e1", rect("e1"))
    assert ack.v == 3 and not ack.duplicate
    assert count(metrics.stale_decisions_total) == stale + 1
    assert (await here.model("d1")).v == 3
    assert await versions(pools[0]) == [1, 2, 3]


async def test_a_rejection_on_the_current_state_stands_and_stores_nothing(
    peers: list[CommandHandler], pools: list[asyncpg.Pool]
) -> None:
    here, there = peers
    await behind(here, there)
    await here.submit("d1", "bob", "editor", "e1", rect("e1"))  # `here` catches up to v3
    stale = count(metrics.stale_decisions_total)
    with pytest.raises(Conflict, match="layer 'L9' does not exist"):
        await here.submit("d1", "bob", "editor", "e2", rect("e2", layer="L9"))
    assert count(metrics.stale_decisions_total) == stale  # current: no second decision
    assert await versions(pools[0]) == [1, 2, 3]


async def test_a_restore_to_a_version_another_process_appended_is_accepted(
    peers: list[CommandHandler], pools: list[asyncpg.Pool]
) -> None:
    here, there = peers
    await behind(here, there)
    await there.submit("d1", "alice", "owner", "e1", rect("e1"))
    await there.submit("d1", "alice", "owner", "e2", rect("e2"))
    # `here` holds v1: version 3 is "not in 1..1" there, but the store is at 4.
    ack = await here.restore("d1", "alice", "owner", 3)
    assert ack.v == 5
    model = await here.model("d1")
    assert [e.id for layer in model.doc.layers for e in layer.elements] == ["e1"]
    with pytest.raises(Invalid, match="no version 9"):
        await here.restore("d1", "alice", "owner", 9)
    assert await versions(pools[0]) == [1, 2, 3, 4, 5]


async def test_a_rejection_decided_on_ops_in_flight_is_decided_under_the_lock(
    peers: list[CommandHandler], pools: list[asyncpg.Pool]
) -> None:
    here, _ = peers
    await here.create_document("d1", "alice", "Poster")
    await here.submit("d1", "alice", "owner", "add-L1", LAYER)
    exclusive = count(metrics.exclusive_appends_total)
    queued = asyncio.Event()
    remove = asyncio.create_task(
        here.submit(
            "d1",
            "alice",
            "owner",
            "rm",
            {"kind": "layer.remove", "layer": "L1"},
            decided=queued.set,
        )
    )
    await queued.wait()
    # The add is decided on the head after the removal (L1 gone) while the removal's
    # commit is still out: that rejection rests on an op that has not committed, so
    # the add is decided again under the document's lock. Whichever takes the lock
    # first goes first: the removal (the add is rejected), or the add (then the
    # removal loses its race and is decided again after it). Either is one order.
    try:
        added = (await here.submit("d1", "bob", "editor", "e1", rect("e1"))).v
    except Conflict as exc:
        assert "layer 'L1' does not exist" in exc.message
        added = None
    removed = (await remove).v
    assert count(metrics.exclusive_appends_total) == exclusive + 1
    if added is None:
        assert removed == 3 and await versions(pools[0]) == [1, 2, 3]
    else:
        assert (added, removed) == (3, 4) and await versions(pools[0]) == [1, 2, 3, 4]
    assert (await here.model("d1")).doc.layers == ()


class LosingStore(PostgresStore):
    """The real store, except that an optimistic append of a ``restore`` event loses
    the race (as when another process keeps appending first); ``append_exclusive``,
    under the document's lock, is untouched."""

    async def append(self, batch: Sequence[AppendRequest]) -> list[AppendResult]:
        if any(r.event.kind == "restore" for r in batch):
            v = await self.pool.fetchval("SELECT v FROM documents WHERE id = $1", batch[0].doc_id)
            return [AppendResult(status="conflict", v=int(v)) for _ in batch]
        return await super().append(batch)


async def test_restores_decided_under_the_lock_are_each_stored(
    pools: list[asyncpg.Pool],
) -> None:
    # A restore carries no client op id: under the lock it must not be stored with one,
    # or the same user's next restore there would be answered as a duplicate of it.
    h = CommandHandler(LosingStore(pools[0]))
    await h.start()
    try:
        await h.create_document("d1", "alice", "Poster")
        await h.submit("d1", "alice", "owner", "add-L1", LAYER)
        await h.submit("d1", "alice", "owner", "e1", rect("e1"))
        first = await h.restore("d1", "alice", "owner", 2)
        second = await h.restore("d1", "alice", "owner", 3)
    finally:
        await h.close()
    assert (first.v, first.duplicate) == (4, False)
    assert (second.v, second.duplicate) == (5, False)
    ledger = await pools[0].fetch("SELECT op_id FROM op_ledger WHERE doc_id = 'd1' ORDER BY v")
    assert [r["op_id"] for r in ledger] == ["add-L1", "e1"]


class CountingStore(PostgresStore):
    """The real store, counting the transactions taken under a document's lock and the
    requests they carried."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.locked: list[int] = []

    async def append_exclusive(
        self,
        doc_id: str,
        after_v: int,
        build: Callable[[list[StoredEvent]], Sequence[AppendRequest]],
    ) -> list[AppendResult]:
        results = await super().append_exclusive(doc_id, after_v, build)
        self.locked.append(len(results))
        return results


async def test_ops_of_a_contended_document_share_transactions_under_the_lock(
    pools: list[asyncpg.Pool],
) -> None:
    stores = [CountingStore(pool) for pool in pools]
    here, there = (CommandHandler(store) for store in stores)
    for h in (here, there):
        await h.start()
    try:
        await here.create_document("d1", "alice", "Poster")
        await here.submit("d1", "alice", "owner", "add-L1", LAYER)
        await there.submit("d1", "alice", "owner", "t0", rect("t0"))  # `here` is behind
        conflicts = count(metrics.version_conflicts_total)
        # Three ops at once on the stale head: the first batch loses its race, which
        # marks the document contended, and all three are decided under the lock,
        # together: one is rejected there (its element id is taken) and answered alone.
        ops = [rect("e1"), rect("t0"), rect("e2")]
        answers = await asyncio.gather(
            *(here.submit("d1", "bob", "editor", f"o{i}", op) for i, op in enumerate(ops)),
            return_exceptions=True,
        )
    finally:
        for h in (here, there):
            await h.close()
    assert count(metrics.version_conflicts_total) > conflicts
    assert isinstance(answers[1], Conflict) and "t0" in answers[1].message
    acked = sorted(a.v for a in answers if not isinstance(a, BaseException))
    assert acked == [4, 5]
    assert stores[0].locked == [2]  # one transaction carried both
    assert await versions(pools[0]) == [1, 2, 3, 4, 5]


async def test_two_handlers_writing_one_document_at_once_never_fork_it(
    pools: list[asyncpg.Pool],
) -> None:
    # Races lost, documents contended, ops under the lock and optimistic ones mixed, in
    # whatever order the two handlers' timing makes (batching under the lock is checked
    # deterministically above).
    handlers = [CommandHandler(PostgresStore(pool)) for pool in pools]
    for h in handlers:
        await h.start()
    acked: dict[str, int] = {}
    try:
        await handlers[0].create_document("d1", "alice", "Poster")
        await handlers[0].submit("d1", "alice", "owner", "add-L1", LAYER)

        async def writer(w: int) -> None:
            h = handlers[w % 2]
            for i in range(15):
                op_id = f"w{w}-{i}"
                acked[op_id] = (await h.submit("d1", f"user{w}", "editor", op_id, rect(op_id))).v

        await asyncio.gather(*(writer(w) for w in range(8)))
    finally:
        for h in handlers:
            await h.close()
    rows = await pools[0].fetch("SELECT v, op_id FROM events WHERE doc_id = 'd1' ORDER BY v")
    # I2 and I3: one line of versions; each acked op stored once, at its acked version.
    assert [r["v"] for r in rows] == list(range(1, 2 + len(acked) + 1))
    assert {r["op_id"]: r["v"] for r in rows if r["op_id"] and r["op_id"][0] == "w"} == acked


async def test_undo_through_another_process_reverts_the_users_last_op(
    peers: list[CommandHandler], pools: list[asyncpg.Pool]
) -> None:
    here, there = peers
    await here.create_document("d1", "alice", "Poster")
    await here.submit("d1", "alice", "owner", "add-L1", LAYER)  # `here` holds v2
    await there.submit("d1", "bob", "editor", "b1", rect("e1"))
    await there.submit("d1", "bob", "editor", "b2", rect("e2"))
    # Bob's undo reaches `here`, where he has no op yet: decided there alone it would be
    # "nothing to undo"; the store holds his two adds, and the last one is reverted.
    ack = await here.submit("d1", "bob", "editor", "b3", {"kind": "undo"})
    assert ack.v == 5
    ids = [e.id for layer in (await here.model("d1")).doc.layers for e in layer.elements]
    assert ids == ["e1"]
    assert await versions(pools[0]) == [1, 2, 3, 4, 5]
