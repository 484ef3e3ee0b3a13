"""The web client in a real browser: headless Chromium (the system's, never a download)
driven by Playwright, against real processes.

``server`` (package scope) starts ``python -m app serve``, ``relay`` and, once the
read worker's command exists, ``worker``, as separate processes, on a database and a
Redis key prefix of their own (created here, dropped after), so nothing the rest of
the suite truncates can reach them; ``browser`` is one Chromium for the package;
``users`` makes signed-in pages, each in its own browser context (its own storage, as
two people on two machines), and fails the test on any console error or page error.

Chromium is looked up as ``ATELIER_CHROMIUM``, then ``chromium``, ``chromium-browser``,
``google-chrome`` on the PATH. Without it (or without the playwright package) every test
here FAILS with a message that says what to install: `make test` installs Debian's
``chromium`` when it runs as root; these tests never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.bus import create_redis
from app.store.migrate import ensure_database, migrate
from app.tokens import issue_token
from tests.conftest import delete_prefix, drop_database, with_database

ROOT = Path(__file__).resolve().parents[2]
SECRET = "browser-secret-0123456789abcdef0123456789"
OUTPUT = Path(os.environ.get("ATELIER_TEST_OUTPUT") or ROOT / ".data" / "test-output" / "browser")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}


def find_chromium() -> str:
    explicit = os.environ.get("ATELIER_CHROMIUM")
    if explicit:
        if not os.access(explicit, os.X_OK):
            pytest.fail(f"ATELIER_CHROMIUM={explicit} is not an executable file", pytrace=False)
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "the browser tests need Chromium and none was found: install Debian's package "
        "(`apt-get install -y chromium`, which `make test` does when it runs as root) or "
        "set ATELIER_CHROMIUM=/path/to/chromium. Playwright's own browser download is "
        "not used.",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(coro: Any) -> Any:
    """``asyncio.run`` in a thread of its own: Playwright's sync API keeps an event loop
    running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _has_worker() -> bool:
    """Whether ``python -m app worker`` exists yet (the read worker)."""
    out = subprocess.run(
        [sys.executable, "-m", "app", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    return " worker" in out.stdout


@dataclass
class Server:
    url: str
    worker: bool
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def token(self, user: str, name: str | None = None) -> str:
        return issue_token(SECRET, user, name=name, ttl=3600, now=time.time())

    def http(self, user: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15)

    def create_doc(self, owner: str, title: str, **members: str) -> str:
        doc = f"d{uuid.uuid4().hex[:12]}"
        with self.http(owner) as client:
            r = client.post("/api/documents", json={"title": title, "id": doc})
            assert r.status_code == 201, r.text
            for user, role in members.items():
                r = client.put(f"/api/documents/{doc}/members/{user}", json={"role": role})
                assert r.status_code == 200, r.text
        return doc

    def state(self, doc: str, v: int | None = None, user: str = "alice") -> dict[str, Any]:
        """``GET /api/documents/{doc}``; with ``v``, the read side at ``v`` or later
        (``min_v`` when the worker runs; without it the route answers from the write
        side, which is current)."""
        params = {"min_v": str(v)} if v is not None and self.worker else {}
        with self.http(user) as client:
            r = client.get(f"/api/documents/{doc}", params=params)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
        return body

    def events(self, doc: str, user: str = "alice") -> list[dict[str, Any]]:
        """Every event of ``doc``: ``GET /api/documents/{doc}/events``, page by page."""
        got: list[dict[str, Any]] = []
        after: int | None = 0
        with self.http(user) as client:
            while after is not None:
                r = client.get(f"/api/documents/{doc}/events", params={"after": after})
                assert r.status_code == 200, r.text
                page = r.json()
                got.extend(page["events"])
                after = page["next"]
        return got

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}"


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _start(
    procs: dict[str, subprocess.Popen[bytes]], commands: list[str], env: dict[str, str], logs: Path
) -> str:
    """Start ``python -m app COMMAND`` for each command; the gateway's URL once ready."""
    url = f"http://127.0.0.1:{env['APP_PORT']}"
    for command in commands:
        with (logs / f"{command}.log").open("wb") as out:
            procs[command] = subprocess.Popen(
                [sys.executable, "-m", "app", command],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
    deadline = time.monotonic() + 30
    while True:
        for command, proc in procs.items():
            if proc.poll() is not None:
                log = (logs / f"{command}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"`python -m app {command}` exited:\n{log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return url
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway was not ready within 30 s")
        time.sleep(0.1)


@pytest.fixture(scope="package")
def server(
    pg_admin_dsn: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    name = f"atelier_test_web_{uuid.uuid4().hex[:10]}"
    dsn = with_database(pg_admin_dsn, name)
    _run(ensure_database(dsn))
    _run(migrate(dsn))
    prefix = f"atelier_test_web_{uuid.uuid4().hex[:8]}:"
    logs = tmp_path_factory.mktemp("browser-server")
    env = {
        **os.environ,
        "APP_ENV": "dev",
        "APP_SECRET": SECRET,
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(_free_port()),
        "APP_DATA_DIR": str(logs),
        "DB_POOL_SIZE": "4",
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": "json",
        "RELAY_METRICS_PORT": "off",
        "WORKER_METRICS_PORT": "off",
    }
    commands = ["serve", "relay"]
    worker = _has_worker()
    if worker:
        commands.append("worker")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        # A second try on a fresh port: the one picked may be taken before the gateway
        # binds it (another test's server), and the first error is kept in the second's.
        try:
            url = _start(procs, commands, env, logs)
        except RuntimeError as first:
            _stop(procs)
            procs.clear()
            env["APP_PORT"] = str(_free_port())
            try:
                url = _start(procs, commands, env, logs)
            except RuntimeError as second:
                raise RuntimeError(f"{second}\n(first attempt: {first})") from first
        yield Server(url, worker, procs)
    finally:
        _stop(procs)
        _run(drop_database(pg_admin_dsn, name))

        async def clean() -> None:
            client = create_redis(redis_url)
            try:
                await delete_prefix(client, prefix)
            finally:
                await client.aclose()

        _run(clean())


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    executable = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the browser tests need the playwright package: pip install -e '.[dev]'",
            pytrace=False,
        )
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class User:
    """One person: a browser context of their own, one page, signed in through the
    page's own form (dev mode: a name)."""

    def __init__(self, browser: Any, server: Server, name: str) -> None:
        self.name = name
        self.server = server
        self.context = browser.new_context(viewport=VIEWPORT)
        self.context.set_default_timeout(15000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.goto(server.url + "/")
        self.page.fill("#signin-name", name)
        self.page.click("#signin-dev button[type=submit]")
        self.page.wait_for_selector("#documents:not(.hidden)")

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console.error: {message.text} at {message.location}")

    # -- the page's model (window.atelier) --------------------------------------------------

    def js(self, body: str, arg: Any = None) -> Any:
        return self.page.evaluate(f"(arg) => {body}", arg)

    def wait(self, body: str, arg: Any = None, timeout: float = 15000) -> None:
        self.page.wait_for_function(f"(arg) => {body}", arg=arg, timeout=timeout)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.js("window.atelier.state()")
        return state

    def pending(self) -> list[dict[str, Any]]:
        pending: list[dict[str, Any]] = self.js("window.atelier.pending()")
        return pending

    def open(self, doc: str) -> None:
        self.page.goto(f"{self.server.url}/#/d/{doc}")
        self.wait("window.atelier.status() === 'live'")

    def settled(self, v: int | None = None) -> dict[str, Any]:
        """Wait until nothing is pending (and the state is at ``v`` at least)."""
        self.wait(
            "window.atelier.status() === 'live' && window.atelier.pending().length === 0"
            " && window.atelier.state().v >= (arg ?? 0)",
            v,
        )
        return self.state()

    # -- gestures on the canvas --------------------------------------------------------------

    def origin(self) -> tuple[float, float]:
        box = self.page.locator("#canvas").bounding_box()
        assert box is not None
        return box["x"], box["y"]

    def tool(self, name: str) -> None:
        self.page.click(f"[data-tool={name}]")

    def stroke(self, points: list[tuple[float, float]]) -> None:
        ox, oy = self.origin()
        mouse = self.page.mouse
        mouse.move(ox + points[0][0], oy + points[0][1])
        mouse.down()
        for x, y in points[1:]:
            mouse.move(ox + x, oy + y, steps=3)
        mouse.up()

    def drag(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.stroke([(x0, y0), (x1, y1)])

    def hover(self, x: float, y: float) -> None:
        ox, oy = self.origin()
        self.page.mouse.move(ox + x, oy + y, steps=2)

    def screenshot(self, name: str) -> Path:
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / name
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()


def zigzag(
    x: float, y: float, n: int = 6, dx: float = 18, dy: float = 22
) -> list[tuple[float, float]]:
    """A stroke that no simplification can reduce to a line."""
    return [(x + i * dx, y + (dy if i % 2 else 0)) for i in range(n)]


def elements(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for layer in state["layers"] for e in layer["elements"]}


@pytest.fixture
def users(server: Server, browser: Any) -> Iterator[Callable[[str], User]]:
    """``users("alice")``: a signed-in person; after the test, no page of any of them
    may have logged a console error or thrown."""
    made: list[User] = []

    def make(name: str) -> User:
        user = User(browser, server, name)
        made.append(user)
        return user

    yield make
    errors = [f"{u.name}: {e}" for u in made for e in u.errors]
    for user in made:
        user.close()
    server.check_alive()
    assert not errors, "console errors in the page:\n" + "\n".join(errors)
