"""Fixtures shared by the integration tests (the store's are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.command import CommandHandler
from app.store.postgres import PostgresStore


@pytest.fixture
async def handler(store: PostgresStore) -> AsyncIterator[CommandHandler]:
    """A started command handler on the test's store, closed after the test."""
    h = CommandHandler(store)
    await h.start()
    yield h
    await h.close()


@pytest.fixture
async def conn(pg_clean: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the emptied test database."""
    c = await asyncpg.connect(pg_clean)
    yield c
    await c.close()
