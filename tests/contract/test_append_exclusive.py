"""``append_exclusive``: the document's row lock, then the events after it (a statement
of its own), then the chain ``build`` returns, in one transaction.

What must hold: ``build`` sees every event committed by a transaction it waited for
(the read's snapshot is taken after the lock), so a decision under the lock is never
made on a stale state (I2); nothing can append to the document meanwhile; a rejection
from ``build`` rolls everything back; a missing document is ``NotFound``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest

from app.errors import Conflict, NotFound
from app.store.ports import AppendRequest, StoredEvent
from app.store.postgres import PostgresStore
from tests.contract.helpers import assert_log_consistent, create_doc, request

_APPEND = (
    "SELECT status, v FROM atelier_append($1::text[], $2::bigint[], $3::text[], $4::text[],"
    " $5::text[], $6::bytea[], $7::bytea[])"
)


async def test_build_sees_the_events_of_the_transaction_it_waited_for(
    store: PostgresStore, pg_pool: asyncpg.Pool
) -> None:
    await create_doc(store, "d1")
    seen: list[list[int]] = []

    def build(events: list[StoredEvent]) -> Sequence[AppendRequest]:
        seen.append([e.v for e in events])
        return [request("d1", events[-1].v, "after-the-wait")]

    async with pg_pool.acquire() as holder:
        tx = holder.transaction()
        await tx.start()
        # An append holding the document's row lock, not yet committed.
        [row] = await holder.fetch(
            _APPEND, ["d1"], [1], ["bob"], ["first"], ["doc.rename"], [b"{}"], [b"{}"]
        )
        assert (row["status"], row["v"]) == ("ok", 2)
        waiting = asyncio.create_task(store.append_exclusive("d1", 0, build))
        await asyncio.sleep(0.3)
        assert not waiting.done() and seen == []  # it waits for the lock
        await tx.commit()
        [result] = await waiting
    assert seen == [[1, 2]]  # the waited-for commit's event is there
    assert (result.status, result.v) == ("ok", 3)
    assert await assert_log_consistent(pg_pool) == 3


async def test_nothing_appends_to_the_document_while_it_is_locked(
    store: PostgresStore, pg_pool: asyncpg.Pool
) -> None:
    await create_doc(store, "d1")
    async with pg_pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        # The lock append_exclusive takes.
        await conn.execute("SELECT v FROM documents WHERE id = 'd1' FOR NO KEY UPDATE")
        racer = asyncio.create_task(store.append([request("d1", 1, "racer")]))
        await asyncio.sleep(0.3)
        assert not racer.done()  # queued behind the lock
        await tx.commit()
    [raced] = await racer
    assert (raced.status, raced.v) == ("ok", 2)


async def test_a_rejection_in_build_rolls_back_and_an_empty_chain_appends_nothing(
    store: PostgresStore, pg_pool: asyncpg.Pool
) -> None:
    await create_doc(store, "d1")

    def refuse(events: list[StoredEvent]) -> Sequence[AppendRequest]:
        raise Conflict("no")

    with pytest.raises(Conflict):
        await store.append_exclusive("d1", 0, refuse)
    assert await store.append_exclusive("d1", 0, lambda events: []) == []
    assert await assert_log_consistent(pg_pool) == 1
    # The lock went with the transaction: an append goes through at once.
    [result] = await store.append([request("d1", 1, "next")])
    assert result.status == "ok"


async def test_a_chain_under_the_lock_and_a_missing_document(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    results = await store.append_exclusive(
        "d1", 1, lambda events: [request("d1", 1, "a"), request("d1", 2, "b")]
    )
    assert [(r.status, r.v) for r in results] == [("ok", 2), ("ok", 3)]
    with pytest.raises(NotFound):
        await store.append_exclusive("nope", 0, lambda events: [])
