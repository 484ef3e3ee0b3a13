"""Presence expiry: a gateway process SIGKILLed announces nothing, yet its sessions'
presence is dropped by the other gateways within the TTL (app/gateway/liveness.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from tests.e2e.conftest import SECRET, Gateway
from tests.e2e.test_ws_presence import presences
from tests.e2e.ws_client import make_doc, open_ws

HEARTBEAT_MS = 250
TTL_MS = 1000
FAST_PRESENCE = {
    "WS_PRESENCE_HEARTBEAT_MS": str(HEARTBEAT_MS),
    "WS_PRESENCE_TTL_MS": str(TTL_MS),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def process_gateway(
    pg_dsn: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Gateway]]:
    """``python -m app serve`` in a process of its own, so that it can be SIGKILLed."""
    port = _free_port()
    env = {
        **os.environ,
        "APP_ENV": "dev",
        "APP_SECRET": SECRET,
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "APP_PORT": str(port),
        "DB_POOL_SIZE": "2",
        "LOG_LEVEL": "warning",
        **FAST_PRESENCE,
    }
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the gateway process did not start:\n" + log.read_text())
            time.sleep(0.05)
        yield proc, Gateway(f"http://127.0.0.1:{port}", Settings.from_env(env))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


async def test_the_presence_of_a_killed_gateways_sessions_expires(
    make_gateway: Any,
    process_gateway: tuple[subprocess.Popen[bytes], Gateway],
    redis_prefix: str,
) -> None:
    proc, doomed = process_gateway
    survivor = await make_gateway(REDIS_PREFIX=redis_prefix, **FAST_PRESENCE)
    doc = await make_doc(survivor, bob="viewer", carol="viewer")
    alice = await open_ws(doomed, doc)
    bob = await open_ws(survivor, doc)
    welcome = await alice.hello(doomed.token("alice", name="Alice"))
    await bob.hello(survivor.token("bob"))
    await asyncio.sleep(0.2)  # both subscriptions are in place
    await alice.send({"type": "presence", "state": {"cursor": [3, 4]}})
    (seen,) = await presences(bob, 0.5)
    assert (seen["session"], seen["state"]) == (welcome["session"], {"cursor": [3, 4]})

    # Alice says nothing more for twice the TTL: the liveness lines keep her there.
    assert await presences(bob, 2 * TTL_MS / 1000) == []

    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 10)
    killed = time.monotonic()
    left = await bob.recv(TTL_MS / 1000 + 1.0)
    waited = time.monotonic() - killed
    assert left == {
        "type": "presence",
        "session": welcome["session"],
        "user": "alice",
        "name": "Alice",
        "state": None,
    }
    # within the TTL of her last liveness line (a heartbeat at most before the kill),
    # plus one sweep and the scheduling of a busy machine
    assert waited < (TTL_MS + HEARTBEAT_MS + 500) / 1000, waited
    assert await presences(bob, 0.3) == []

    # ...and a session that joins now is not told about her.
    carol = await open_ws(survivor, doc)
    await carol.hello(survivor.token("carol"))
    assert await presences(carol, 0.5) == []
