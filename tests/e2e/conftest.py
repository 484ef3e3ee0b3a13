"""A real gateway: uvicorn on a free loopback port, in the test's own event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection

from app.config import Settings
from app.gateway.app import create_app
from app.gateway.direct import DirectWebSocketProtocol
from app.tokens import issue_token

SECRET = "e2e-secret-0123456789abcdef0123456789"

# Every websocket client a test opens (tests/e2e/ws_client.py adds them): the gateway
# fixture drops those still open when the test ends, so no socket is left for the
# garbage collector to close (a ResourceWarning in whichever test runs then). A client
# whose library stopped reading (its queue full) would not act on the server's close.
OPEN_CLIENTS: list[ClientConnection] = []


@dataclass
class Gateway:
    url: str
    settings: Settings

    def token(self, user: str, name: str | None = None, ttl: int = 600) -> str:
        return issue_token(SECRET, user, name=name, ttl=ttl, now=time.time())

    def client(self, user: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


def gateway_settings(pg_dsn: str, redis_url: str, **extra: str) -> Settings:
    env = {
        "APP_ENV": "dev",
        "APP_SECRET": SECRET,
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "APP_PORT": "0",
        "DB_POOL_SIZE": "4",
        "LOG_LEVEL": "warning",
        **extra,
    }
    return Settings.from_env(env)


async def start_gateway(settings: Settings) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws_per_message_deflate=False,
        ws_max_size=settings.max_body_bytes,  # as app/gateway/server.py
        ws=DirectWebSocketProtocol,  # as app/gateway/server.py
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}"


@pytest.fixture
async def make_gateway(
    pg_dsn: str, pg_pool: object, redis_url: str
) -> AsyncIterator[Callable[..., object]]:
    """Start gateways (several if a test asks); the ``pg_pool`` fixture empties the store after."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def make(**extra: str) -> Gateway:
        settings = gateway_settings(pg_dsn, redis_url, **extra)
        server, task, url = await start_gateway(settings)
        running.append((server, task))
        return Gateway(url, settings)

    yield make
    for server, task in running:
        server.should_exit = True
        await task
    drop_clients()


def drop_clients() -> None:
    """Close the socket of every client the test left open."""
    for ws in OPEN_CLIENTS:
        ws.transport.abort()
    OPEN_CLIENTS.clear()


@pytest.fixture
async def gateway(make_gateway: Callable[..., object]) -> Gateway:
    made = await make_gateway()  # type: ignore[misc]
    assert isinstance(made, Gateway)
    return made
