"""The command handler against the real PostgreSQL: I1, I2, I3, group commit, no forks."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import asyncpg
import orjson
import pytest

from app.command import CommandHandler
from app.domain import model_to_json, replay, state_to_json
from app.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from app.snapshots import Snapshotter
from app.store.pool import create_pool
from app.store.postgres import PostgresStore


def rect(element: str, layer: str = "L1", x: float = 0) -> dict[str, Any]:
    return {
        "kind": "element.add",
        "element": element,
        "layer": layer,
        "shape": "rect",
        "props": {"x": x, "y": 0, "w": 10, "h": 10},
    }


async def new_doc(h: CommandHandler, doc_id: str = "d1", owner: str = "alice") -> None:
    await h.create_document(doc_id, owner, "Poster")
    await h.submit(
        doc_id, owner, "owner", "add-L1", {"kind": "layer.add", "layer": "L1", "name": "Bg"}
    )


async def count_events(pool: asyncpg.Pool, doc_id: str = "d1") -> int:
    n: int = await pool.fetchval("SELECT count(*) FROM events WHERE doc_id = $1", doc_id)
    return n


async def test_ack_comes_after_the_event_is_committed(handler: CommandHandler, pg_dsn: str) -> None:
    await new_doc(handler)
    ack = await handler.submit("d1", "alice", "owner", "op-1", rect("e1"))
    # I1: another connection sees the event the moment the ack exists.
    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT v, actor, op_id FROM events WHERE doc_id='d1' AND v=$1", ack.v
        )
    finally:
        await conn.close()
    assert ack.v == 3 and not ack.duplicate
    assert (row["v"], row["actor"], row["op_id"]) == (3, "alice", "op-1")


async def test_a_resent_op_returns_its_first_version_and_stores_nothing(
    handler: CommandHandler, store: PostgresStore
) -> None:
    await new_doc(handler)
    first = await handler.submit("d1", "alice", "owner", "op-1", rect("e1"))
    before = await count_events(store.pool)
    again = await handler.submit("d1", "alice", "owner", "op-1", rect("e1"))
    other_payload = await handler.submit("d1", "alice", "owner", "op-1", rect("e9", x=5))
    assert again.v == other_payload.v == first.v
    assert again.duplicate and other_payload.duplicate
    assert await count_events(store.pool) == before


async def test_a_resent_op_after_a_lost_answer_is_stored_once(store: PostgresStore) -> None:
    """The answer was lost and the process restarted: a fresh handler (cold cache)
    finds the op in the ledger, even though the op would now conflict (I3)."""
    first = CommandHandler(store)
    await first.start()
    await new_doc(first)
    ack = await first.submit("d1", "alice", "owner", "op-1", rect("e1"))
    await first.close()
    second = CommandHandler(store)
    await second.start()
    try:
        again = await second.submit("d1", "alice", "owner", "op-1", rect("e1"))
        update = {"kind": "element.update", "element": "e1", "set": {"x": 3}}
        retried_other = await second.submit("d1", "alice", "owner", "op-1", update)
    finally:
        await second.close()
    assert again.v == retried_other.v == ack.v
    assert await count_events(store.pool) == 3


async def test_copies_of_one_op_in_flight_at_once_are_stored_once(
    handler: CommandHandler, store: PostgresStore
) -> None:
    await new_doc(handler)
    acks = await asyncio.gather(
        *(handler.submit("d1", "alice", "owner", "same", rect("e1")) for _ in range(8))
    )
    assert len({a.v for a in acks}) == 1
    assert sum(not a.duplicate for a in acks) == 1
    assert await count_events(store.pool) == 3


async def test_op_ids_are_per_user(handler: CommandHandler) -> None:
    await new_doc(handler)
    a = await handler.submit("d1", "alice", "owner", "op-1", rect("e1"))
    b = await handler.submit("d1", "bob", "editor", "op-1", rect("e2"))
    assert a.v != b.v and not b.duplicate


@pytest.mark.parametrize(
    ("op", "role", "error"),
    [
        (rect("e1", layer="nope"), "owner", Conflict),
        ({"kind": "element.add", "element": "e1"}, "owner", Invalid),
        ({"kind": "no.such"}, "owner", Invalid),
        (rect("e1"), "viewer", Forbidden),
        ({"kind": "undo"}, "editor", Conflict),
    ],
)
async def test_rejected_ops_store_nothing(
    handler: CommandHandler, store: PostgresStore, op: dict[str, Any], role: Any, error: type
) -> None:
    await new_doc(handler)
    with pytest.raises(error):
        await handler.submit("d1", "bob", role, "op-x", op)
    assert await count_events(store.pool) == 2
    # A rejected op stored nothing: the same id is validated afresh next time.
    ok = await handler.submit("d1", "bob", "editor", "op-x", rect("e1"))
    assert not ok.duplicate


async def test_unknown_document(handler: CommandHandler) -> None:
    with pytest.raises(NotFound):
        await handler.submit("nope", "alice", "owner", "op-1", rect("e1"))


async def test_concurrent_ops_share_transactions(
    handler: CommandHandler, store: PostgresStore
) -> None:
    await new_doc(handler)
    await asyncio.gather(
        *(handler.submit("d1", f"u{i % 5}", "editor", f"op-{i}", rect(f"e{i}")) for i in range(100))
    )
    txns = await store.pool.fetchval("SELECT count(DISTINCT xmin::text) FROM events WHERE v > 2")
    versions = await store.pool.fetch("SELECT v FROM events WHERE doc_id = 'd1' ORDER BY v")
    assert [r["v"] for r in versions] == list(range(1, 103))
    assert txns < 50, f"100 concurrent ops took {txns} transactions"


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def test_ops_handed_over_once_decided_keep_their_order_and_share_commits(
    handler: CommandHandler, store: PostgresStore
) -> None:
    """As a websocket's submitter does: the next op goes in once the previous one is
    decided, before its commit; the ops keep their order and chain into few commits."""
    await new_doc(handler)
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[Any]] = []
    before_ack = 0
    for i in range(50):
        decided: asyncio.Future[None] = loop.create_future()
        task = asyncio.create_task(
            handler.submit(
                "d1",
                "alice",
                "owner",
                f"op-{i}",
                rect(f"e{i}", x=i),
                decided=functools.partial(_settle, decided),
            )
        )
        tasks.append(task)
        await decided
        before_ack += not task.done()
    acks = await asyncio.gather(*tasks)
    assert [ack.v for ack in acks] == list(range(3, 53))  # decided in the order handed over
    assert before_ack == 50  # each op was decided before its own commit answered
    txns = await store.pool.fetchval("SELECT count(DISTINCT xmin::text) FROM events WHERE v > 2")
    assert txns <= 25, f"50 ops handed over one at a time took {txns} transactions"


async def test_two_handlers_appending_to_one_document_never_fork_it(pg_clean: str) -> None:
    pools = [await create_pool(pg_clean, 4) for _ in range(2)]
    handlers = [CommandHandler(PostgresStore(p)) for p in pools]
    for h in handlers:
        await h.start()
    try:
        await new_doc(handlers[0])
        acked: dict[str, int] = {}

        async def writer(h: CommandHandler, w: int) -> None:
            for i in range(25):
                op_id = f"h{w}-{i}"
                update = {"kind": "element.update", "element": "e0", "set": {"x": w * 100 + i}}
                op = update if i % 3 == 2 else rect(op_id)
                acked[op_id] = (await h.submit("d1", f"user{w}", "editor", op_id, op)).v

        await handlers[1].submit("d1", "alice", "owner", "e0", rect("e0"))
        await asyncio.gather(*(writer(handlers[w % 2], w) for w in range(8)))
        rows = await pools[0].fetch(
            "SELECT v, op_id, op, effect, actor FROM events WHERE doc_id = 'd1' ORDER BY v"
        )
        # I2: one line of versions, each acked op exactly once at the version it was acked at.
        assert [r["v"] for r in rows] == list(range(1, len(rows) + 1))
        by_op = {r["op_id"]: r["v"] for r in rows if r["op_id"]}
        assert all(by_op[k] == v for k, v in acked.items())
        assert len(rows) == 3 + len(acked)
        # Both handlers converge on the state that the events fold to (I6).
        folded = replay(
            "d1",
            [(r["v"], r["actor"], orjson.loads(r["op"]), orjson.loads(r["effect"])) for r in rows],
        )
        for h in handlers:
            await h.submit(
                "d1", "alice", "owner", f"sync-{id(h)}", {"kind": "doc.rename", "title": "Poster"}
            )
        models = [await h.model("d1") for h in handlers]
        latest = max(models, key=lambda m: m.v)
        assert state_to_json(latest.doc)["layers"] == state_to_json(folded.doc)["layers"]
    finally:
        for h in handlers:
            await h.close()
        for p in pools:
            await p.close()


async def test_undo_through_the_handler_reverts_only_the_users_op(handler: CommandHandler) -> None:
    await new_doc(handler)
    await handler.submit("d1", "alice", "owner", "a1", rect("ea"))
    await handler.submit("d1", "bob", "editor", "b1", rect("eb"))
    ack = await handler.submit("d1", "alice", "owner", "a2", {"kind": "undo"})
    model = await handler.model("d1")
    ids = [e.id for layer in model.doc.layers for e in layer.elements]
    assert ids == ["eb"] and model.v == ack.v


async def test_restore_brings_back_an_earlier_state(handler: CommandHandler) -> None:
    await new_doc(handler)
    await handler.submit("d1", "alice", "owner", "a1", rect("e1"))
    at_3 = state_to_json((await handler.model("d1")).doc)
    await handler.submit("d1", "alice", "owner", "a2", {"kind": "layer.remove", "layer": "L1"})
    await handler.submit("d1", "alice", "owner", "a3", {"kind": "doc.rename", "title": "Other"})
    ack = await handler.restore("d1", "alice", "owner", 3)
    now = state_to_json((await handler.model("d1")).doc)
    assert ack.v == 6
    assert {k: v for k, v in now.items() if k != "v"} == {k: v for k, v in at_3.items() if k != "v"}


async def test_snapshots_are_written_and_a_cold_load_uses_them(store: PostgresStore) -> None:
    h = CommandHandler(store)
    await h.start()
    snapshotter = Snapshotter(store, every=5)
    seen = 0
    try:
        await new_doc(h)
        for i in range(12):
            await h.submit("d1", "alice", "owner", f"op-{i}", rect(f"e{i}", x=i))
            new = await store.read_stream("d1", after_v=seen)
            seen = new[-1].v
            await snapshotter.on_events(new)
    finally:
        await h.close()
    rows = await store.pool.fetch("SELECT v FROM snapshots WHERE doc_id = 'd1' ORDER BY v")
    assert [r["v"] for r in rows] == [5, 10]
    reads: list[int] = []

    class Recording(PostgresStore):
        async def read_stream(self, doc_id: str, after_v: int = 0, limit: int | None = None) -> Any:
            reads.append(after_v)
            return await super().read_stream(doc_id, after_v, limit)

    cold = CommandHandler(Recording(store.pool))
    await cold.start()
    try:
        loaded = await cold.model("d1")
    finally:
        await cold.close()
    events = await store.read_stream("d1")
    full = replay(
        "d1", [(e.v, e.actor, orjson.loads(e.op), orjson.loads(e.effect)) for e in events]
    )
    assert loaded.v == 14
    assert reads == [10], "the cold load must start from the newest snapshot"
    assert state_to_json(loaded.doc) == state_to_json(full.doc)
    assert model_to_json(loaded) == model_to_json(full), "undo history survives the snapshot"


class HeldStore(PostgresStore):
    """The real store whose appends wait for ``go`` before they run: a store that has
    stopped answering, then answers."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.go = asyncio.Event()
        self.go.set()

    async def append(self, requests: Any) -> Any:
        await self.go.wait()
        return await super().append(requests)


async def test_an_op_whose_commit_does_not_come_is_unavailable_then_stored_once(
    store: PostgresStore,
) -> None:
    held = HeldStore(store.pool)
    h = CommandHandler(held, commit_timeout=0.3)
    await h.start()
    try:
        await new_doc(h)
        held.go.clear()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Unavailable):
            await h.submit("d1", "alice", "owner", "op-1", rect("e1"))
        assert 0.3 <= loop.time() - started < 2
        # The next op is decided on the held one's state, and is bounded the same way.
        with pytest.raises(Unavailable):
            await h.submit("d1", "alice", "owner", "op-2", rect("e2"))
        held.go.set()  # the store answers: the held transaction commits after all
        again = await h.submit("d1", "alice", "owner", "op-1", rect("e1"))
        second = await h.submit("d1", "alice", "owner", "op-2", rect("e2"))
        assert (again.v, second.v) == (3, 4)
        assert await count_events(store.pool) == 4  # created, L1, op-1, op-2: once each
        model = await h.committed_model("d1")
        assert [e.id for layer in model.doc.layers for e in layer.elements] == ["e1", "e2"]
    finally:
        await h.close()
