"""The event loop every long-running process runs on: uvloop, or asyncio's own where
uvloop is not installed (it ships with ``uvicorn[standard]``, a dependency, so that
is a stripped-down install).

The gateway, the relay, the read workers, the snapshotter and the load generator's
client processes are all I/O loops: most of what they do per event is socket reads and
writes, timers and task switches, which uvloop runs in C. At one commit per op the
relay, the worker and the snapshotter took 5-18% less CPU on uvloop than on asyncio's
own loop (docs/benchmarks.md, "The log followers' plans and the event loop").
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new event loop, as ``asyncio.run`` does."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(main)
    return uvloop.run(main)
