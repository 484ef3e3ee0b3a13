"""``/metrics`` and ``/healthz`` for a process that serves no HTTP of its own (relay,
snapshotter, worker).

A WSGI server in a daemon thread (prometheus_client's ``make_wsgi_app`` over this
process's registry, ``metrics.REGISTRY``, never the library's global default one):

- ``GET /metrics``: the Prometheus text format;
- ``GET /healthz``: 200 ``ok`` while the process's event loop runs callbacks. The
  serving thread asks the loop that ``watch_event_loop()`` registered to run a no-op
  and waits up to ``health_timeout`` seconds for it: a loop stuck in a long CPU step
  or a blocking call answers 503, so a liveness probe restarts a wedged process, not
  only a dead one. Before a loop is registered (start-up) the answer is 200 too;
- any other path: 404.

Nothing here touches the event loop but ``call_soon_threadsafe``.

    exporter = start_exporter("127.0.0.1", 0)   # 0: any free port; exporter.port says which
    watch_event_loop()                            # inside the process's asyncio.run
    exporter.close()

``exporting`` is what a runner uses: ``off`` (None) starts nothing, a port that is
taken is a warning and the process runs on without one (its work matters more than
its metrics, and a standby relay on the same host must not die of it).
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import make_wsgi_app

from app.observability.metrics import REGISTRY

__all__ = ["Exporter", "exporting", "start_exporter", "watch_event_loop"]

log = structlog.get_logger(__name__)

_JOIN_TIMEOUT: Final = 2.0
HEALTH_TIMEOUT: Final = 2.0  # under the probes' 3 s timeout (deploy/k8s)

_watched: asyncio.AbstractEventLoop | None = None

StartResponse = Callable[..., Any]


def watch_event_loop(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Make ``/healthz`` answer for ``loop`` (default: the running one)."""
    global _watched
    _watched = loop or asyncio.get_running_loop()


def _loop_answers(timeout: float) -> bool:
    loop = _watched
    if loop is None or loop.is_closed():
        return True  # starting up, or shutting down: the process itself is fine
    ran = threading.Event()
    try:
        loop.call_soon_threadsafe(ran.set)
    except RuntimeError:  # closed between the check and the call
        return True
    return ran.wait(timeout)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight never holds the process up


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged: one line every few seconds per scraper is noise."""


def _application(
    health_timeout: float,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            result: Iterable[bytes] = metrics_app(environ, start_response)
            return result
        if path == "/healthz":
            if _loop_answers(health_timeout):
                status, body = "200 OK", b"ok\n"
            else:
                status, body = "503 Service Unavailable", b"event loop not responding\n"
        else:
            status, body = "404 Not Found", b"not found: /metrics or /healthz\n"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [body]

    return app


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


def start_exporter(host: str, port: int, *, health_timeout: float = HEALTH_TIMEOUT) -> Exporter:
    """Serve this process's metrics and health on ``host:port`` (``0``: any free port);
    raises ``OSError`` when the address cannot be bound."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(_Server):
        address_family = family

    server = make_server(host, port, _application(health_timeout), Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
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
