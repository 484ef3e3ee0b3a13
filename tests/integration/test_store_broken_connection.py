"""A pooled connection whose asyncpg protocol is left mid-operation raises
``InternalClientError`` (seen after a backend is terminated under it). For every store
caller (the gateway's ops, the snapshotter's snapshots) that is the database being
unavailable, to retry with the same op id, not a bug that ends the snapshotter or a
500 for the client."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from app.errors import Unavailable
from app.store.postgres import PostgresStore


async def test_internal_client_error_on_a_pooled_connection_is_unavailable(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = asyncpg.connection.Connection.fetchval
    failures = [asyncpg.InternalClientError("unexpected message in the protocol")]

    async def fetchval(self: Any, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "fetchval", fetchval)
    with pytest.raises(Unavailable):
        await store.head()
    assert await store.head() == 0  # the next call goes through
