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
import os
import re
import time
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from app.tokens import issue_token
from tests.support.appprocess import AppProcess, log_records, wait_until
from tests.support.tcpproxy import TcpProxy

__all__ = ["FaultRig", "Socket", "log_events", "wait_for"]

log_events = log_records
wait_for = wait_until

_SERVING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")
SECRET = "fault-secret-0123456789abcdef0123456789"


def _through(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    return url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}", 1)


class FaultRig:
    """Two proxies (``pg``, ``redis``) and the app processes started through them."""

    def __init__(self, pg_dsn: str, redis_url: str, prefix: str) -> None:
        self.pg_dsn = pg_dsn
        self.redis_url = redis_url
        self.prefix = prefix
        self.processes: list[AppProcess] = []
        self.gateway_url = ""  # the first gateway's
        self.urls: dict[AppProcess, str] = {}  # each gateway's
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
            # Port 0: the gateway binds a free port itself and logs it (a port picked
            # here could be taken by another process before the gateway binds it).
            extra = {"APP_HOST": "127.0.0.1", "APP_PORT": "0", **extra}
        argv = ["worker", "--id", "fault-w1"] if command == "worker" else [command]
        process = await AppProcess(argv, self.env(**extra), command).start()
        self.processes.append(process)
        if command == "serve":
            await wait_for(
                lambda: self._serving(process), 30, f"the gateway to serve:\n{process.output}"
            )
            self.gateway_url = self.gateway_url or self.urls[process]
        return process

    async def _serving(self, process: AppProcess) -> bool:
        self.assert_alive()
        found = _SERVING.search(process.output)
        if found is None:
            return False
        url = found.group(1)
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                healthy = (await client.get(url + "/healthz")).status_code == 200
        except httpx.HTTPError:
            return False
        if healthy:
            self.urls[process] = url
        return healthy

    def token(self, user: str) -> str:
        return issue_token(SECRET, user, name=None, ttl=600, now=time.time())

    def http(self, user: str, timeout: float = 10, url: str = "") -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=url or self.gateway_url,
            headers={"Authorization": f"Bearer {self.token(user)}"},
            timeout=timeout,
        )

    def ws_url(self, doc_id: str, url: str = "") -> str:
        return (url or self.gateway_url).replace("http://", "ws://") + f"/ws/documents/{doc_id}"

    def assert_alive(self) -> None:
        for process in self.processes:
            assert process.running, f"{process.name} exited:\n{process.output}"


class Socket:
    """One websocket session of the test: what it received, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.presence: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, rig: FaultRig, doc_id: str, user: str, url: str = "") -> Socket:
        """A session on the gateway at ``url`` (the first one by default)."""
        ws = await connect(rig.ws_url(doc_id, url), open_timeout=10, close_timeout=2)
        await ws.send(orjson.dumps({"type": "hello", "token": rig.token(user)}).decode())
        welcome = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        socket = cls(ws)
        socket.welcome_v = int(welcome["v"])
        return socket

    welcome_v = 0

    async def _read(self) -> None:
        async for frame in self.ws:
            message = orjson.loads(frame)
            kind = message["type"]
            if kind == "event":
                self.events.append(message)
            elif kind == "events":
                self.events.extend(message["events"])
            elif kind in ("ack", "reject"):
                self.answers.setdefault(message["id"], []).append(message)
            elif kind == "presence":
                self.presence.append(message)

    async def op(self, op_id: str, op: dict[str, Any], within: float = 10) -> dict[str, Any]:
        """Send the op and wait for its next answer (ack or reject)."""
        seen = len(self.answers.get(op_id, []))
        await self.ws.send(orjson.dumps({"type": "op", "id": op_id, "op": op}).decode())
        await wait_for(lambda: len(self.answers.get(op_id, [])) > seen, within, f"answer {op_id}")
        return self.answers[op_id][seen]

    async def send_presence(self, state: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps({"type": "presence", "state": state}).decode())

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
