"""The one place that configures structlog and the standard library's logging.

Both kinds of record end up as the same kind of line on stderr, so a line from uvicorn
or asyncpg looks like a line of ours:

    structlog.get_logger(name) ─▶ level filter ─▶ shared ─▶ renderer ─▶ _Lines ─┐
                                  (bound method)                                ├─▶ stderr
    logging.getLogger(name)    ─▶ stdlib handler ─▶ shared ─▶ renderer ────────┘   (one lock)
                                  (ProcessorFormatter)

``shared`` adds the contextvars, the logger's name, the level and an ISO time. Our own
lines take structlog's native path: a dropped level costs one no-op method call, and a
kept line no ``LogRecord``, no caller-frame lookup and no second formatter pass (the
per-op ``op accepted`` line costs a fraction of what the stdlib path took;
scripts/bench_log.py measures both). Library records go through the standard handler.

Production renders one JSON object per line through orjson; dev renders coloured console
lines. Fields bound with ``structlog.contextvars.bind_contextvars`` (doc, user, session)
appear on every line logged in that context (STYLE.md habit 13). The level is fixed when
``configure_logging`` runs (a logger caches its level on first use).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Final, TextIO

import orjson
import structlog
from structlog.types import Processor

from app.config import Settings

__all__ = ["configure_logging"]

_LEVELS: Final[dict[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _orjson_dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    # The stdlib handler writes text, so decode once here; OPT_NON_STR_KEYS keeps a
    # stray non-string key from turning a log line into an exception.
    return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS).decode()


def _renderer(settings: Settings) -> Processor:
    if settings.log_format == "json":
        return structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    # Plain tracebacks: rich's (when installed) print local variables, secrets included.
    return structlog.dev.ConsoleRenderer(
        colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
    )


class _Lines:
    """structlog's output for the app's own loggers: writes a rendered line to the
    stream the stdlib handler writes to, under that handler's lock, so lines of either
    kind never interleave. ``name`` is what ``add_logger_name`` reads."""

    __slots__ = ("_lock", "_stream", "name")

    def __init__(self, name: str, stream: TextIO, lock: AbstractContextManager[Any]) -> None:
        self.name = name
        self._stream = stream
        self._lock = lock

    def msg(self, message: str) -> None:
        with self._lock:
            self._stream.write(message + "\n")
            self._stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _LinesFactory:
    def __init__(self, stream: TextIO, lock: AbstractContextManager[Any]) -> None:
        self._stream = stream
        self._lock = lock

    def __call__(self, *args: Any) -> _Lines:
        name = args[0] if args and isinstance(args[0], str) else "app"
        return _Lines(name, self._stream, self._lock)


def configure_logging(settings: Settings) -> None:
    """Configure structlog and stdlib logging from ``settings``; safe to call again."""
    level = _LEVELS[settings.log_level]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if settings.log_format == "json":
        # Console rendering prints tracebacks itself; JSON needs them as a string field.
        shared.append(structlog.processors.format_exc_info)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(settings),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    lock: AbstractContextManager[Any] = handler.lock or threading.RLock()

    structlog.configure(
        processors=[*shared, _renderer(settings)],
        logger_factory=_LinesFactory(handler.stream, lock),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that install their own handlers would print every line twice.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncpg"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
