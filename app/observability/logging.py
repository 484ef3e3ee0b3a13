"""The one place that configures structlog and the standard library's logging.

Both kinds of record go through the same chain and the same handler, so a line from
uvicorn or asyncpg looks like a line of ours:

    structlog.get_logger(...)  ─┐
                                ├─▶ shared processors ─▶ renderer ─▶ one stderr handler
    logging.getLogger(...)     ─┘   (contextvars, level, ISO time)   (JSON or console)

Production renders one JSON object per line through orjson; dev renders coloured console
lines. Fields bound with ``structlog.contextvars.bind_contextvars`` (doc, user, session)
appear on every line logged in that context (STYLE.md habit 13).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, Final

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

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(settings),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)

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
