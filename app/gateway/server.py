"""Run the gateway under uvicorn, from our own code so that shutdown drains first."""

from __future__ import annotations

import asyncio

import uvicorn

from app.config import Settings
from app.gateway.app import create_app

__all__ = ["run", "serve"]


async def serve(settings: Settings, *, port: int | None = None) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port if port is None else port,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=10,
    )
    await uvicorn.Server(config).serve()


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; in-flight ops are answered before the process exits."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
