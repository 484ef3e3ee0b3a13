"""What a gateway process owns for its lifetime: pool, store, command handler, Redis.

Created by the lifespan and closed in reverse order (STYLE.md habit 12); handlers
reach them through ``services(request)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as redis
import structlog
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from app.command import CommandHandler
from app.config import Settings
from app.store.pool import create_pool
from app.store.postgres import PostgresStore

__all__ = ["Services", "lifespan", "services"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    pool: Any  # asyncpg.Pool (untyped library)
    store: PostgresStore
    handler: CommandHandler
    redis: redis.Redis


def services(conn: HTTPConnection) -> Services:
    return cast(Services, conn.app.state.services)


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    pool = await create_pool(settings.database_url, settings.db_pool_size)
    client = redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        store = PostgresStore(pool)
        handler = CommandHandler(
            store,
            lanes=settings.db_commit_lanes,
            max_batch=settings.group_commit_max,
            cache_size=settings.write_model_cache,
            undo_depth=settings.undo_depth,
        )
        await handler.start()
        try:
            yield Services(settings, pool, store, handler, client)
        finally:
            await handler.close()
    finally:
        await client.aclose()
        await pool.close()


def lifespan(settings: Settings) -> Any:
    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        async with open_services(settings) as opened:
            app.state.services = opened
            log.info("gateway ready", env=settings.env)
            yield
            log.info("gateway draining")

    return run
