"""The long-running processes (``python -m app serve | relay | worker | snapshotter``)
with PostgreSQL and Redis reached through a ``TcpProxy`` each, so that a test can cut
either one and restore it (tests/integration/test_proxy_faults_*.py).

    async with FaultRig(pg_dsn, redis_url, prefix) as rig:
        gateway = await rig.start("serve")
        relay = await rig.start("relay")
        rig.pg.cut(); ...; rig.pg.restore()
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.tokens import issue_token
from tests.support.appprocess import AppProcess
from tests.support.tcpproxy import TcpProxy

__all__ = ["FaultRig", "free_port", "log_events", "wait_for"]

SECRET = "fault-secret-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _through(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    return url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}", 1)


def log_events(process: AppProcess) -> list[dict[str, Any]]:
    """The process's JSON log lines, parsed (other lines are left out)."""
    found = []
    for line in list(process.lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


async def wait_for(
    check: Callable[[], bool | Awaitable[bool]], within: float = 20.0, what: str = ""
) -> None:
    """Until ``check()`` is true, polling; fails after ``within`` seconds with ``what``."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what or check}")
        await asyncio.sleep(0.05)


class FaultRig:
    """Two proxies (``pg``, ``redis``) and the app processes started through them."""

    def __init__(self, pg_dsn: str, redis_url: str, prefix: str) -> None:
        self.pg_dsn = pg_dsn
        self.redis_url = redis_url
        self.prefix = prefix
        self.processes: list[AppProcess] = []
        self.gateway_url = ""
        self.pg: TcpProxy
        self.redis: TcpProxy

    async def __aenter__(self) -> FaultRig:
        pg = urlsplit(self.pg_dsn)
        redis = urlsplit(self.redis_url)
        self.pg = await TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432).start()
        self.redis = await TcpProxy(redis.hostname or "127.0.0.1", redis.port or 6379).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.pg.restore()
        self.redis.restore()
        try:
            await asyncio.gather(*(p.stop() for p in self.processes))
        finally:
            await self.pg.close()
            await self.redis.close()

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": _through(self.pg_dsn, self.pg),
            "REDIS_URL": _through(self.redis_url, self.redis),
            "REDIS_PREFIX": self.prefix,
            "APP_ENV": "prod",
            "APP_SECRET": SECRET,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
            "DB_POOL_SIZE": "4",
            "SNAPSHOT_EVERY": "5",
            "WORKER_LEASE_INTERVAL_MS": "200",
            "RELAY_METRICS_PORT": "off",
            "WORKER_METRICS_PORT": "off",
            "SNAPSHOTTER_METRICS_PORT": "off",
            **extra,
        }

    async def start(self, command: str, **extra: str) -> AppProcess:
        """``python -m app command`` through the proxies; a gateway (``serve``) is
        waited for until its ``/healthz`` answers (``gateway_url``)."""
        if command == "serve":
            port = free_port()
            extra = {"APP_HOST": "127.0.0.1", "APP_PORT": str(port), **extra}
            self.gateway_url = f"http://127.0.0.1:{port}"
        argv = ["worker", "--id", "fault-w1"] if command == "worker" else [command]
        process = await AppProcess(argv, self.env(**extra), command).start()
        self.processes.append(process)
        if command == "serve":
            await wait_for(self._healthy, 30, f"the gateway to serve:\n{process.output}")
        return process

    async def _healthy(self) -> bool:
        for process in self.processes:
            assert process.running, f"{process.name} exited:\n{process.output}"
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(self.gateway_url + "/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    def token(self, user: str) -> str:
        return issue_token(SECRET, user, name=None, ttl=600, now=time.time())

    def http(self, user: str, timeout: float = 10) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.gateway_url,
            headers={"Authorization": f"Bearer {self.token(user)}"},
            timeout=timeout,
        )

    def ws_url(self, doc_id: str) -> str:
        return self.gateway_url.replace("http://", "ws://") + f"/ws/documents/{doc_id}"

    def assert_alive(self) -> None:
        for process in self.processes:
            assert process.running, f"{process.name} exited:\n{process.output}"
