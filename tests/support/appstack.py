"""The long-running processes (``python -m app serve | relay | worker | snapshotter``)
on the test's PostgreSQL and Redis, with their JSON log lines and their ``/metrics``.

    async with AppStack(pg_dsn, redis_url, prefix, LOG_LEVEL="debug") as stack:
        gateway = await stack.start("serve")       # waits until /healthz answers
        relay = await stack.start("relay")
        samples = await scrape(stack.metrics_url(relay))
        records(gateway)                            # its log lines, parsed

Every process gets its own free loopback port for ``/metrics`` (the gateway's is its
``APP_PORT``); every one is stopped (SIGTERM, then killed) when the block ends.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from types import TracebackType

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.tokens import issue_token
from tests.support.appprocess import AppProcess, log_records, wait_until

__all__ = ["AppStack", "Samples", "free_port", "records", "scrape", "wait_for"]

records = log_records
wait_for = wait_until

SECRET = "stack-secret-0123456789abcdef0123456789"

# command -> the setting naming the port its /metrics answers on
_PORT_SETTING = {
    "serve": "APP_PORT",
    "relay": "RELAY_METRICS_PORT",
    "snapshotter": "SNAPSHOTTER_METRICS_PORT",
    "worker": "WORKER_METRICS_PORT",
}

# family name -> {(sample name, sorted label pairs): value}
Samples = dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def scrape(url: str, types: dict[str, str] | None = None) -> Samples:
    """Every family of the exposition at ``url``, parsed by prometheus_client; each
    family's type goes into ``types`` when given."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    families: Samples = {}
    for family in text_string_to_metric_families(response.text):
        samples = families.setdefault(family.name, {})
        if types is not None:
            types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families


class AppStack:
    """App processes started on one store and one Redis prefix."""

    def __init__(self, pg_dsn: str, redis_url: str, prefix: str, **extra: str) -> None:
        self.pg_dsn = pg_dsn
        self.redis_url = redis_url
        self.prefix = prefix
        self.extra = extra
        self.processes: list[AppProcess] = []
        self.ports: dict[AppProcess, int] = {}
        self.gateway_url = ""

    async def __aenter__(self) -> AppStack:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes))

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": self.pg_dsn,
            "REDIS_URL": self.redis_url,
            "REDIS_PREFIX": self.prefix,
            "APP_ENV": "prod",
            "APP_SECRET": SECRET,
            "APP_HOST": "127.0.0.1",
            "METRICS_HOST": "127.0.0.1",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "info",
            "DB_POOL_SIZE": "4",
            "WORKER_LEASE_INTERVAL_MS": "200",
            **self.extra,
            **extra,
        }

    async def start(self, command: str, **extra: str) -> AppProcess:
        """``python -m app command`` with a free port for its ``/metrics``; a gateway
        (``serve``) is waited for until its ``/healthz`` answers (``gateway_url``), the
        others until their ``/metrics`` does."""
        port = free_port()
        extra = {_PORT_SETTING[command]: str(port), **extra}
        argv = (
            ["worker", "--id", f"stack-w{len(self.processes)}"]
            if command == "worker"
            else [command]
        )
        process = await AppProcess(argv, self.env(**extra), command).start()
        self.processes.append(process)
        self.ports[process] = port
        base = f"http://127.0.0.1:{port}"
        if command == "serve":
            self.gateway_url = base
        await wait_for(
            lambda: self._answers(process, base + "/healthz"),
            60,
            f"{command} to serve:\n{process.output}",
        )
        return process

    def metrics_url(self, process: AppProcess) -> str:
        return f"http://127.0.0.1:{self.ports[process]}/metrics"

    async def _answers(self, process: AppProcess, url: str) -> bool:
        assert process.running, f"{process.name} exited:\n{process.output}"
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    def token(self, user: str) -> str:
        return issue_token(SECRET, user, name=None, ttl=600, now=time.time())

    def http(self, user: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.gateway_url,
            headers={"Authorization": f"Bearer {self.token(user)}"},
            timeout=15,
        )

    def ws_url(self, doc_id: str) -> str:
        return self.gateway_url.replace("http://", "ws://") + f"/ws/documents/{doc_id}"
