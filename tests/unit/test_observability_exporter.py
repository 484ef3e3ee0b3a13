"""``/metrics`` of the processes without HTTP of their own: app/observability/exporter.py."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
import structlog

from app.observability import metrics
from app.observability.exporter import exporting, start_exporter, watch_event_loop


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_the_exporter_serves_the_projects_registry_on_a_free_port() -> None:
    metrics.relay_published_total.inc(3)
    exporter = start_exporter("127.0.0.1", 0)
    try:
        assert exporter.port > 0
        assert exporter.url == f"http://127.0.0.1:{exporter.port}/metrics"
        status, text = get(exporter.url)
        assert status == 200
        assert "atelier_relay_published_total" in text
        assert "atelier_snapshotter_position" in text
        assert "python_gc_objects_collected_total" not in text  # not the global registry
        assert get(f"http://127.0.0.1:{exporter.port}/healthz") == (200, "ok\n")
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(f"http://127.0.0.1:{exporter.port}/other")
        assert missing.value.code == 404
        missing.value.close()
    finally:
        exporter.close()
    with pytest.raises(urllib.error.URLError):
        get(exporter.url)  # the port is released


def test_off_starts_nothing() -> None:
    with structlog.testing.capture_logs() as logs, exporting("127.0.0.1", None, process="x") as e:
        assert e is None
    assert [entry["event"] for entry in logs] == ["metrics listener off"]


def test_a_taken_port_is_a_warning_not_a_failure() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            structlog.testing.capture_logs() as logs,
            exporting("127.0.0.1", port, process="relay") as exporter,
        ):
            assert exporter is None
    (warning,) = logs
    assert (warning["event"], warning["log_level"], warning["port"]) == (
        "metrics listener not started",
        "warning",
        port,
    )


def test_exporting_logs_the_url_and_closes_on_exit() -> None:
    with (
        structlog.testing.capture_logs() as logs,
        exporting("127.0.0.1", 0, process="snapshotter") as exporter,
    ):
        assert exporter is not None
        assert get(exporter.url)[0] == 200
    assert logs[0]["event"] == "metrics listening"
    assert logs[0]["url"] == exporter.url
    with pytest.raises(urllib.error.URLError):
        get(exporter.url)


def test_healthz_is_503_while_the_watched_loop_is_stuck() -> None:
    """A wedged process (its loop in a blocking call) fails its liveness probe."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    exporter = start_exporter("127.0.0.1", 0, health_timeout=0.3)
    health = f"http://127.0.0.1:{exporter.port}/healthz"
    try:
        watch_event_loop(loop)
        assert get(health) == (200, "ok\n")
        loop.call_soon_threadsafe(time.sleep, 2.0)  # the loop blocks for two seconds
        time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as stuck:
            get(health)
        assert stuck.value.code == 503
        assert stuck.value.read() == b"event loop not responding\n"
        stuck.value.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # and 200 again once it runs
            try:
                if get(health)[0] == 200:
                    break
            except urllib.error.HTTPError as busy:
                busy.close()
                time.sleep(0.1)
        else:
            raise AssertionError("healthz never came back")
    finally:
        exporter.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()  # a closed watched loop counts as healthy: nothing stays watched
