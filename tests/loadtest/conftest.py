"""A real deployment for the harness: ``python -m app serve``, ``relay`` and ``worker`` as
processes on the session's throwaway database and a Redis prefix of this module's own;
and ``run_loadtest``, the harness's command line as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.bus import create_redis
from tests.conftest import delete_prefix, reset_store

ROOT = Path(__file__).resolve().parents[2]
SECRET = "loadtest-secret-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Deployment:
    url: str
    procs: dict[str, subprocess.Popen[bytes]]
    logs: Path

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]


def _wait_ready(url: str, proc: subprocess.Popen[bytes], logs: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the gateway did not become ready: {(logs / 'serve.log').read_text()}")


@pytest.fixture(scope="module")
def deployment(
    pg_dsn: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    prefix = f"atelier_test_{uuid.uuid4().hex[:12]}:"
    logs = tmp_path_factory.mktemp("loadtest-servers")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "prod",
        "APP_SECRET": SECRET,
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(port),
        "APP_DATA_DIR": str(logs),
        "WORKER_METRICS_PORT": "off",
        "LOG_LEVEL": "warning",
    }
    asyncio.run(reset_store(pg_dsn))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    url = f"http://127.0.0.1:{port}"
    try:
        for name, argv in (
            ("serve", ["serve"]),
            ("relay", ["relay"]),
            ("worker", ["worker", "--id", "lt"]),
        ):
            with (logs / f"{name}.log").open("ab") as log:
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "app", *argv],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        _wait_ready(url, procs["serve"], logs)
        yield Deployment(url, procs, logs)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        asyncio.run(reset_store(pg_dsn))
        asyncio.run(_delete_keys(redis_url, prefix))


async def _delete_keys(url: str, prefix: str) -> None:
    client = create_redis(url)
    try:
        await delete_prefix(client, prefix)
    finally:
        await client.aclose()


@dataclass
class Outcome:
    status: int
    stdout: str
    stderr: str
    result: dict[str, Any] | None
    html: Path | None


def run_loadtest(url: str, out: Path, *args: str, timeout: float = 50) -> Outcome:
    """``python -m app loadtest ARGS --url URL --out OUT``; its result file, if any."""
    argv = [sys.executable, "-m", "app", "loadtest", *args, "--url", url, "--out", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    jsons = sorted(out.glob("loadtest-*.json"))
    htmls = sorted(out.glob("loadtest-*.html"))
    return Outcome(
        done.returncode,
        done.stdout,
        done.stderr,
        orjson.loads(jsons[-1].read_bytes()) if jsons else None,
        htmls[-1] if htmls else None,
    )
