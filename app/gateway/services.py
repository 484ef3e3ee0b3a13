"""What a gateway process owns for its lifetime: pool, store, command handler, Redis,
the websocket fan-out, and the read side's queries (views, time travel, the min_v watch).

Created by the lifespan and closed in reverse order (STYLE.md habit 12); handlers
reach them through ``services(request)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import structlog
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from app.bus import Keys, Redis, create_redis
from app.command import CommandHandler
from app.config import Settings
from app.gateway.fanout import CommitTap, Fanout
from app.gateway.members import MembersHub
from app.gateway.presence import PresenceHub
from app.gateway.quotas import UserQuotas
from app.observability import metrics
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from app.views.reader import ReadViews
from app.views.timetravel import TimeTravel
from app.views.watch import ReadWatch

__all__ = ["Services", "lifespan", "services"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    pool: Any  # asyncpg.Pool (untyped library)
    store: PostgresStore
    handler: CommandHandler
    redis: Redis
    fanout: Fanout
    presence: PresenceHub
    members: MembersHub
    quotas: UserQuotas
    views: ReadViews
    history: TimeTravel  # ?at= and diff
    watch: ReadWatch  # ?min_v=


def services(conn: HTTPConnection) -> Services:
    return cast(Services, conn.app.state.services)


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    pool = await create_pool(settings.database_url, settings.db_pool_size)
    client = create_redis(
        settings.redis_url,
        cluster=settings.redis_cluster,
        socket_timeout=5,
        connect_timeout=5,
        health_check_interval=0,
    )
    try:
        # The handler appends through the tap, so the fan-out has each event this process
        # commits before its ack is answered (PROTOCOL.md 4, guarantee 2).
        store = CommitTap(pool)
        keys = Keys(settings.redis_prefix)
        fanout = Fanout(store, client, keys.doc_stream)
        store.listener = fanout.committed
        presence = PresenceHub(
            client,
            keys.doc_presence,
            heartbeat=settings.ws_presence_heartbeat_ms / 1000,
            ttl=settings.ws_presence_ttl_ms / 1000,
        )
        members = MembersHub(client, keys.doc_members)
        quotas = UserQuotas(
            op_rate=settings.ws_user_op_rate,
            op_burst=settings.ws_user_op_burst,
            max_connections=settings.ws_user_connections,
        )
        presence.start()
        metrics.ws_send_queue_frames.set_function(fanout.queued)
        metrics.ws_send_queue_max.set_function(fanout.deepest)
        handler = CommandHandler(
            store,
            lanes=settings.db_commit_lanes,
            max_batch=settings.group_commit_max,
            cache_size=settings.write_model_cache,
            undo_depth=settings.undo_depth,
        )
        await handler.start()
        views = ReadViews(pool)
        watch = ReadWatch(settings.database_url, views.version)
        watch.start()
        try:
            yield Services(
                settings,
                pool,
                store,
                handler,
                client,
                fanout,
                presence,
                members,
                quotas,
                views,
                TimeTravel(views, store),
                watch,
            )
        finally:
            await watch.close()
            # Sockets that are still open (uvicorn closes them with 1012 before this
            # runs; see docs/websocket.md) are told the server is going away.
            fanout.shutdown("the server is going away; reconnect with since")
            await handler.close()
            await fanout.close()
            await presence.close()
            await members.close()
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
