"""deploy/healthcheck.py, the image's HEALTHCHECK: which URL it asks for which command,
and that it answers 0 only when /healthz does (against a real local HTTP server)."""

from __future__ import annotations

import http.server
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from app.config import VARIABLES

PATH = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hc = _load()


def test_ports_are_the_settings_defaults() -> None:
    for command, (setting, default) in hc.PORTS.items():
        assert VARIABLES[setting][0] == default, command


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["python", "-m", "app", "serve"], "serve"),
        (["/sbin/docker-init", "--", "python", "-m", "app", "relay"], "relay"),
        (["/usr/local/bin/atelier", "worker"], "worker"),
        (["python", "-m", "app"], None),
        (["postgres"], None),
        ([], None),
    ],
)
def test_command_of(argv: list[str], command: str | None) -> None:
    assert hc.command_of(argv) == command


def test_health_url() -> None:
    assert hc.health_url("serve", {}) == "http://127.0.0.1:8000/healthz"
    assert hc.health_url("serve", {"APP_PORT": "9000", "APP_HOST": "0.0.0.0"}) == (
        "http://127.0.0.1:9000/healthz"
    )
    assert hc.health_url("relay", {}) == "http://127.0.0.1:9101/healthz"
    assert hc.health_url("snapshotter", {"METRICS_HOST": "::"}) == "http://[::1]:9102/healthz"
    assert hc.health_url("worker", {"WORKER_METRICS_PORT": "9200"}) == (
        "http://127.0.0.1:9200/healthz"
    )
    assert hc.health_url("relay", {"RELAY_METRICS_PORT": "off"}) is None
    assert hc.health_url("relay", {"RELAY_METRICS_PORT": "0"}) is None
    assert hc.health_url("migrate", {}) is None
    assert hc.health_url(None, {}) is None


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.HTTPServer]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.mark.parametrize(("status", "code"), [(200, 0), (503, 1)])
def test_main_asks_healthz(
    server: http.server.HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    code: int,
) -> None:
    monkeypatch.setattr(_Handler, "status", status)
    monkeypatch.setattr(hc, "_pid1_argv", lambda: ["python", "-m", "app", "relay"])
    monkeypatch.setenv("RELAY_METRICS_PORT", str(server.server_address[1]))
    monkeypatch.setenv("METRICS_HOST", "0.0.0.0")
    assert hc.main() == code


def test_main_fails_when_nothing_listens(
    server: http.server.HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    monkeypatch.setattr(hc, "_pid1_argv", lambda: ["python", "-m", "app", "serve"])
    monkeypatch.setenv("APP_PORT", str(port))
    monkeypatch.delenv("APP_HOST", raising=False)
    assert hc.main() == 1


def test_main_passes_for_a_one_shot_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hc, "_pid1_argv", lambda: ["python", "-m", "app", "migrate"])
    assert hc.main() == 0
