"""``/metrics`` for a process that serves no HTTP of its own (relay, snapshotter, worker).

prometheus_client's own server (``start_http_server``: a WSGI server in a daemon
thread) serves this process's registry (``metrics.REGISTRY``, never the library's
global default one) in the Prometheus text format. It answers every GET path with the
metrics, so ``GET /healthz`` is 200 as well: while the process runs, its thread
answers. Nothing here touches the event loop.

    exporter = start_exporter("127.0.0.1", 0)   # 0: any free port; exporter.port says which
    exporter.close()

``exporting`` is what a runner uses: ``off`` (None) starts nothing, a port that is
taken is a warning and the process runs on without one (its work matters more than
its metrics, and a standby relay on the same host must not die of it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import start_http_server

from app.observability.metrics import REGISTRY

__all__ = ["Exporter", "exporting", "start_exporter"]

log = structlog.get_logger(__name__)

_JOIN_TIMEOUT: Final = 2.0


class Exporter:
    """A running ``/metrics`` listener; ``port`` is the one it bound."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        address = server.server_address
        self.host: str = str(address[0])
        self.port: int = int(address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port (waits for the serving thread)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(_JOIN_TIMEOUT)


def start_exporter(host: str, port: int) -> Exporter:
    """Serve this process's metrics on ``host:port`` (``0``: any free port); raises
    ``OSError`` when the address cannot be bound."""
    server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    return Exporter(server, thread)


@contextmanager
def exporting(host: str, port: int | None, *, process: str) -> Iterator[Exporter | None]:
    """``start_exporter`` for the lifetime of a ``with`` block, its URL logged; None when
    ``port`` is None (off) or cannot be bound (logged as a warning)."""
    if port is None:
        log.info("metrics listener off", process=process)
        yield None
        return
    try:
        exporter = start_exporter(host, port)
    except OSError as exc:
        log.warning(
            "metrics listener not started", process=process, host=host, port=port, error=str(exc)
        )
        yield None
        return
    log.info("metrics listening", process=process, url=exporter.url)
    try:
        yield exporter
    finally:
        exporter.close()
