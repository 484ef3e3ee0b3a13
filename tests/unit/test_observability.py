"""Logging set-up (JSON and console, stdlib and structlog alike) and the metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import prometheus_client
import pytest
import structlog

from app.config import Settings
from app.observability import configure_logging, metrics

LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncpg")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back for the next test."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved_libs = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in LIBRARY_LOGGERS
    }
    yield
    root.handlers[:], level = saved_root
    root.setLevel(level)
    for name, (handlers, propagate) in saved_libs.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def settings(**env: str) -> Settings:
    return Settings.from_env({"APP_SECRET": "s" * 32, **env})


def json_lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line]


def test_json_lines_from_structlog_and_stdlib(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(settings(LOG_FORMAT="json"))
    structlog.contextvars.bind_contextvars(doc="d1", user="alice")
    structlog.get_logger("app.test").info("op_acked", v=3)
    structlog.get_logger("app.test").debug("hidden at info")
    logging.getLogger("uvicorn.error").warning("from %s", "uvicorn")
    first, second = json_lines(capsys.readouterr().err)
    assert first["event"] == "op_acked"
    assert first["v"] == 3
    assert first["level"] == "info"
    assert first["logger"] == "app.test"
    assert (first["doc"], first["user"]) == ("d1", "alice")
    timestamp = str(first["timestamp"])
    assert timestamp.endswith("Z") and "T" in timestamp  # ISO 8601, UTC
    assert second["event"] == "from uvicorn"
    assert second["level"] == "warning"
    assert second["doc"] == "d1"  # contextvars reach stdlib records too


def test_exceptions_become_a_field(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(settings(LOG_FORMAT="json"))
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        structlog.get_logger("app.test").exception("failed")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["level"] == "error"
    assert "ZeroDivisionError: boom" in str(line["exception"])


def test_level_comes_from_settings(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(settings(LOG_FORMAT="json", LOG_LEVEL="debug"))
    structlog.get_logger("app.test").debug("shown")
    configure_logging(settings(LOG_FORMAT="json", LOG_LEVEL="error"))
    structlog.get_logger("app.other").warning("hidden")
    logging.getLogger("asyncpg").warning("hidden too")
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["shown"]


def test_console_in_dev(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(settings(APP_ENV="dev", APP_SECRET="s" * 32))
    structlog.get_logger("app.test").info("child_started", child="serve")
    err = capsys.readouterr().err
    assert "child_started" in err
    assert "child=serve" in err
    assert not err.lstrip().startswith("{")


def test_configuring_twice_does_not_print_twice(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(settings(LOG_FORMAT="json"))
    configure_logging(settings(LOG_FORMAT="json"))
    logging.getLogger("uvicorn.access").info("once")
    assert len(json_lines(capsys.readouterr().err)) == 1


def test_metrics_render_on_their_own_registry() -> None:
    assert metrics.REGISTRY is not prometheus_client.REGISTRY
    metrics.ops_total.labels(outcome="reject", code="test_observability").inc()
    metrics.http_requests_total.labels(
        method="GET", route="/__test_observability__", status="200"
    ).inc()
    metrics.ack_seconds.observe(0.0004)
    metrics.append_batch_size.observe(17)
    body, content_type = metrics.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in (
        "atelier_ops_total",
        "atelier_append_batch_size",
        "atelier_append_seconds",
        "atelier_ack_seconds",
        "atelier_version_conflicts_total",
        "atelier_write_models_cached",
        "atelier_write_model_loads_total",
        "atelier_snapshots_written_total",
        "atelier_http_requests_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    assert 'atelier_ops_total{code="test_observability",outcome="reject"}' in text
    assert 'atelier_ack_seconds_bucket{le="0.0005"}' in text  # sub-millisecond buckets
    assert 'atelier_append_batch_size_bucket{le="32.0"}' in text
