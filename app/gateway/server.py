"""Run the gateway under uvicorn, from our own code so that shutdown drains first."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from typing import Final

import uvicorn
from starlette.applications import Starlette

from app.config import Settings
from app.gateway.app import create_app
from app.gateway.direct import DirectWebSocketProtocol
from app.loop import run as run_loop

__all__ = ["GatewayServer", "run", "serve"]

# How long websocket sessions get to answer their ops in flight and close 1001.
_DRAIN_SECONDS: Final = 5.0
# The cyclic GC's thresholds once serving (CPython's default is 700, 10, 10). Each open
# websocket holds ~100-200 tracked objects; with the defaults a full collection walked
# every one of them every few seconds of traffic (65-200 ms at 500-1,000 connections).
# What exists at startup is frozen (never walked again). Young collections stay small
# (5,000 objects: about a millisecond); survivors move on to the old generation after
# 10 of them, so the middle one stays small too (50,000 with (50_000, 20, 100) held a
# connection burst's objects: a 60 ms middle collection); full collections wait for
# 1,000 middle ones (and CPython skips them until the objects that reached the old
# generation since the last one exceed a quarter of it).
GC_THRESHOLDS: Final = (5_000, 10, 1_000)


class GatewayServer(uvicorn.Server):
    """uvicorn, with the websocket sessions drained before uvicorn's own shutdown.

    uvicorn closes every open websocket with 1012 as its shutdown begins, before the
    ASGI lifespan shutdown runs (STYLE.md finding 1). This hook runs first: each session
    stops taking ops, answers the ones in flight, and closes 1001 (PROTOCOL.md 4: the
    server is going away; reconnect with `since`). What has not closed in time gets
    uvicorn's 1012, which the protocol accepts too.
    """

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # The services are up (the lifespan ran): their objects live as long as the
        # process does, so the collector leaves them out from now on.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        services = getattr(self._app.state, "services", None)
        if services is not None and services.fanout.live:
            services.fanout.shutdown("the server is going away; reconnect with since")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_SECONDS):
                    await services.fanout.drained()
        await super().shutdown(sockets)


async def serve(settings: Settings, *, port: int | None = None) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port if port is None else port,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws_per_message_deflate=False,
        # Frames built once and written straight to the transport (app/gateway/direct.py);
        # its frames are the same bytes for every socket only without deflate.
        ws=DirectWebSocketProtocol,
        # A frame over the limit is refused with 1009 as its header is read, without
        # buffering it (uvicorn's own default would take 16 MiB first).
        ws_max_size=settings.max_body_bytes,
        timeout_graceful_shutdown=10,
    )
    await GatewayServer(config, app).serve()


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; in-flight ops are answered before the process exits."""
    run_loop(serve(settings))
