"""What a gateway process owns for its lifetime: pool, store, command handler, Redis,
the websocket fan-out, and the read side's queries (views, time travel, the min_v watch).

With ``DATABASE_READ_URL`` set, a second pool on that streaming replica serves the
queries (``reads``, ``read_store``, ``history``, the watch's versions) through a
``ReadPool`` that falls back to the primary while the replica cannot answer; what must
be fresh (access checks, the welcome's state, the write side) stays on ``pool``
(docs/readside.md, "Reading a replica").

Created by the lifespan and closed in reverse order (STYLE.md habit 12); handlers
reach them through ``services(request)``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, cast

import structlog
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from app.bus import Keys, Redis, create_redis, is_cluster
from app.command import CommandHandler
from app.config import Settings
from app.gateway.fanout import CommitTap, Fanout
from app.gateway.members import MembersHub
from app.gateway.presence import PresenceHub
from app.gateway.quotas import UserQuotas
from app.observability import metrics
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from app.store.readpool import ReadPool
from app.views.reader import ReadViews
from app.views.replay import ReplicaReplay
from app.views.timetravel import ReplicaStreams, TimeTravel
from app.views.watch import ReadWatch

__all__ = ["Services", "lifespan", "services"]

log = structlog.get_logger(__name__)

_REPLICA_CONNECT_TIMEOUT: Final = 3.0  # seconds: then the query falls back to the primary


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
    views: ReadViews  # on the primary: the welcome's state
    history: TimeTravel  # ?at= and diff
    watch: ReadWatch  # ?min_v=
    reads: ReadViews  # the queries': the replica's when there is one, else = views
    read_store: PostgresStore  # named versions, time travel's events: likewise, else = store
    replica: ReadPool | None = None  # None without DATABASE_READ_URL


def services(conn: HTTPConnection) -> Services:
    return cast(Services, conn.app.state.services)


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    pool = await create_pool(settings.database_url, settings.db_pool_size)
    replica: ReadPool | None = None
    if settings.database_read_url:
        # No connection opened now (min_size 0): a replica that is down when the gateway
        # starts costs nothing but reads from the primary until it is back.
        replica = ReadPool(
            await create_pool(
                settings.database_read_url,
                settings.db_pool_size,
                min_size=0,
                server_settings={"application_name": "atelier-read"},
                connect_timeout=_REPLICA_CONNECT_TIMEOUT,
            ),
            pool,
        )
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
        # One XREAD for many documents' streams on a single Redis server; a cluster
        # refuses keys of several slots in one command (app/gateway/streams.py).
        token = uuid.uuid4().hex
        fanout = Fanout(
            store,
            client,
            keys.doc_stream,
            wake_key=None if is_cluster(client) else partial(keys.gateway_wake, token),
        )
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
            commit_timeout=settings.op_commit_timeout_ms / 1000,
        )
        await handler.start()
        views = ReadViews(pool)
        reads: ReadViews = views
        read_store: PostgresStore = store
        replay: Callable[[], Awaitable[None]] | None = None
        if replica is not None:
            reads, read_store = ReadViews(replica), PostgresStore(replica)
            replay = ReplicaReplay(pool, replica).caught_up
        watch = ReadWatch(settings.database_url, reads.version, replay=replay)
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
                TimeTravel(reads, ReplicaStreams(read_store, store) if replica else store),
                watch,
                reads,
                read_store,
                replica,
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
        if replica is not None:
            await replica.replica.close()
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
