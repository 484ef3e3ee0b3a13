"""The relay's lease connection through the ways asyncpg reports a broken connection:
while queueing for the lease and while holding it (its heartbeat), each one is a lost
lease (queue again) or a retry, never a crash of the relay; every event is still
published once."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from app.bus import Keys, Redis
from app.relay import Relay
from app.store.postgres import PostgresStore
from tests.support.relay import (
    RunningRelay,
    Writer,
    assert_published_exactly,
    fast_config,
    wait_until,
)

DOCS = ["d1", "d2"]

ERRORS = [
    asyncpg.InternalClientError("unexpected message in the protocol"),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
]
IDS = ["internal-client-error", "interface-error"]


@pytest.mark.parametrize("error", ERRORS, ids=IDS)
async def test_the_lease_heartbeat_failing_oddly_is_a_lost_lease(
    store: PostgresStore,
    pg_clean: str,
    redis: Redis,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    relay = Relay(fast_config(pg_clean, redis_prefix), redis)
    real = asyncpg.connection.Connection.fetchrow
    failures = [error]

    async def fetchrow(self: Any, *args: Any, **kwargs: Any) -> Any:
        if failures and self is relay.lease._conn:
            raise failures.pop()
        return await real(self, *args, **kwargs)

    async with Writer(store) as writer, RunningRelay(relay) as running:
        await writer.documents(*DOCS)
        await running.caught_up(store)
        monkeypatch.setattr(asyncpg.connection.Connection, "fetchrow", fetchrow)
        await wait_until(lambda: not failures, what="the heartbeat to fail")
        await writer.edits(DOCS, 10)
        await running.caught_up(store)
        await writer.edits(DOCS, 10)
        await running.caught_up(store)
    await assert_published_exactly(redis, Keys(redis_prefix), store)


@pytest.mark.parametrize("error", ERRORS, ids=IDS)
async def test_queueing_for_the_lease_through_odd_failures(
    store: PostgresStore,
    pg_clean: str,
    redis: Redis,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    real_connect = asyncpg.connect
    real_fetchval = asyncpg.connection.Connection.fetchval
    connects = [error]
    tries = [error]

    async def connect(*args: Any, **kwargs: Any) -> Any:
        if connects and "lease" in str(kwargs.get("server_settings")):
            raise connects.pop()
        return await real_connect(*args, **kwargs)

    async def fetchval(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if tries and "pg_try_advisory_lock" in query:
            raise tries.pop()
        return await real_fetchval(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg, "connect", connect)
    monkeypatch.setattr(asyncpg.connection.Connection, "fetchval", fetchval)
    relay = Relay(fast_config(pg_clean, redis_prefix), redis)
    async with Writer(store) as writer, RunningRelay(relay) as running:
        await writer.documents(*DOCS)
        await writer.edits(DOCS, 10)
        await running.caught_up(store)
        assert not connects and not tries
    await assert_published_exactly(redis, Keys(redis_prefix), store)
