"""What one log line costs: CPU per call of the gateway's per-op line.

    .venv/bin/python scripts/bench_log.py [--calls N]

Configures logging as a process of the app does (``configure_logging``), with stderr
pointed at /dev/null, binds the fields a websocket binds (doc, user, session), then
times ``log.info("op accepted", op_id=..., v=...)`` -- the line every op outcome writes
(app/gateway/ws.py) -- and one standard-library record (what uvicorn and asyncpg log),
at each level and format. Prints CPU microseconds per call (process time, best of three
rounds). Nothing here touches PostgreSQL or Redis: the ceiling beside these figures is
the empty call, a logger whose level drops the line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable

import structlog

from app.config import Settings
from app.observability import configure_logging


def per_call(call: Callable[[int], None], calls: int) -> float:
    """CPU microseconds per call, best of three rounds."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for i in range(calls):
            call(i)
        best = min(best, time.process_time() - start)
    return best / calls * 1e6


def measure(log_format: str, level: str, calls: int) -> tuple[float, float]:
    configure_logging(
        Settings.from_env({"APP_SECRET": "s" * 32, "LOG_FORMAT": log_format, "LOG_LEVEL": level})
    )
    structlog.contextvars.bind_contextvars(doc="d1", user="alice", session="S3ss10n")
    ours = structlog.get_logger("app.gateway.ws")
    theirs = logging.getLogger("uvicorn.error")

    def op_line(i: int) -> None:
        ours.info("op accepted", op_id=f"s{i}", v=i)

    def stdlib_line(i: int) -> None:
        theirs.info("connection %s open", i)

    return per_call(op_line, calls), per_call(stdlib_line, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round (20,000)")
    args = parser.parse_args()
    out = sys.stdout
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the process's log stream
    print(f"{args.calls:,} calls a round, best of 3; CPU µs per call", file=out)
    print(
        f"{'format':<8} {'level':<8} {'op accepted (structlog)':>24} {'stdlib record':>14}",
        file=out,
    )
    for log_format in ("json", "console"):
        for level in ("info", "warning"):
            ours, theirs = measure(log_format, level, args.calls)
            print(f"{log_format:<8} {level:<8} {ours:>24.1f} {theirs:>14.1f}", file=out)


if __name__ == "__main__":
    main()
