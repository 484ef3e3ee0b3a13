"""The dev supervisor (``python -m app dev``): restarts, readiness, clean stops.

The supervisor is driven in-process with small stand-in children (a few lines of
Python each), so these tests need neither the gateway nor the services.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from app.config import Settings
from app.ops.dev import Child, Supervisor, children, page_url

# A child that listens on PORT, records the signal that stops it, and exits 0.
SERVER = """
import signal, socket, sys, time
marker, port = sys.argv[1], int(sys.argv[2])
def stop(signum, frame):
    with open(marker, "w") as f:
        f.write(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
with open(marker + ".pgid", "w") as f:
    import os
    f.write(str(os.getpgid(0)))
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", port))
sock.listen()
while True:
    time.sleep(0.05)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - polls state outside our control
            await asyncio.sleep(0.02)


def settings(**env: str) -> Settings:
    return Settings.from_env({"APP_SECRET": "s" * 32, **env})


def test_page_url() -> None:
    assert page_url(settings()) == "http://127.0.0.1:8000/"
    assert page_url(settings(APP_HOST="0.0.0.0", APP_PORT="9000")) == "http://127.0.0.1:9000/"
    assert page_url(settings(APP_HOST="::")) == "http://[::1]:8000/"
    assert page_url(settings(APP_HOST="localhost")) == "http://localhost:8000/"


def test_the_dev_children_are_the_gateway_relay_worker_and_snapshotter() -> None:
    serve, relay, worker, snapshotter = children(settings(APP_PORT="8123"))
    assert serve.argv == (sys.executable, "-m", "app", "serve")
    assert serve.ready == ("127.0.0.1", 8123)
    assert relay.argv == (sys.executable, "-m", "app", "relay")
    assert relay.ready is None
    assert worker.argv == (sys.executable, "-m", "app", "worker")
    assert snapshotter.argv == (sys.executable, "-m", "app", "snapshotter")
    names = [child.name for child in children(settings(SNAPSHOT_EVERY="0"))]
    assert names == ["serve", "relay", "worker"]


async def test_a_dying_child_is_restarted_with_backoff() -> None:
    crash = Child("crash", (sys.executable, "-c", "raise SystemExit(3)"))
    supervisor = Supervisor([crash], initial_backoff=0.05, max_backoff=0.2, stable_after=5)
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    await wait_for(lambda: supervisor.starts["crash"] >= 4)
    supervisor.stop()
    assert await asyncio.wait_for(task, 5) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_ready_url_then_a_clean_stop(tmp_path: Path, sig: signal.Signals) -> None:
    port, marker = free_port(), tmp_path / "stopped"
    child = Child(
        "serve", (sys.executable, "-c", SERVER, str(marker), str(port)), ready=("127.0.0.1", port)
    )
    out = io.StringIO()
    supervisor = Supervisor([child], url=f"http://127.0.0.1:{port}/", out=out)
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    await wait_for(lambda: "running" in out.getvalue())
    assert out.getvalue() == f"Atelier is running at http://127.0.0.1:{port}/\n"
    # The child leads its own process group: a terminal's Ctrl-C reaches only us.
    pgid = int((tmp_path / "stopped.pgid").read_text())
    assert pgid != os.getpgid(0)
    supervisor.stop(sig)
    assert await asyncio.wait_for(task, 10) == 0
    assert marker.read_text() == sig.name  # the signal was forwarded, once
    assert supervisor.starts["serve"] == 1


async def test_a_child_that_ignores_the_signal_is_killed() -> None:
    stubborn = Child(
        "stubborn",
        (
            sys.executable,
            "-c",
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('up', flush=True)\ntime.sleep(60)",
        ),
    )
    supervisor = Supervisor([stubborn], stop_timeout=0.5)
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    await wait_for(lambda: supervisor.starts["stubborn"] == 1)
    await asyncio.sleep(0.3)  # let it install its handler
    supervisor.stop()
    assert await asyncio.wait_for(task, 10) == 0


async def test_a_second_stop_kills_at_once() -> None:
    stubborn = Child(
        "stubborn",
        (
            sys.executable,
            "-c",
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)",
        ),
    )
    supervisor = Supervisor([stubborn], stop_timeout=30)
    task = asyncio.create_task(supervisor.run(handle_signals=False))
    await wait_for(lambda: supervisor.starts["stubborn"] == 1)
    await asyncio.sleep(0.3)
    supervisor.stop()
    await asyncio.sleep(0.1)
    supervisor.stop()
    assert await asyncio.wait_for(task, 5) == 0


async def test_a_taken_port_is_refused_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        child = Child("serve", (sys.executable, "-c", "pass"), ready=("127.0.0.1", port))
        supervisor = Supervisor([child])
        assert await supervisor.run(handle_signals=False) == 1
    assert supervisor.starts["serve"] == 0
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


# ----------------------------------------------------------------------------------
# The real thing: `python -m app dev` supervising the gateway, as `make run` starts it.
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_app_dev_serves_then_stops_cleanly(
    pg_dsn: str, tmp_path: Path, sig: signal.Signals, redis_url: str, redis_prefix: str
) -> None:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "dev",
        "APP_DATA_DIR": str(tmp_path),
        "APP_PORT": str(port),
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        # The relay child writes keys: under the test's own prefix, deleted afterwards.
        "REDIS_PREFIX": redis_prefix,
        "LOG_FORMAT": "json",
    }
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "dev"],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the gateway accepts connections
        assert line == f"Atelier is running at http://127.0.0.1:{port}/\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert '"child_stopped"' in err
    # The relay ran too (it may not have got far: a signal that lands before its
    # handler is installed ends it quietly, with nothing to clean up yet).
    assert '"child":"relay"' in err
