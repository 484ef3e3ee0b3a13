"""The read worker's cyclic garbage collection: young generations automatic, full
collections only when the worker is idle (or rarely).

Why: a worker's heap is mostly the documents it keeps decoded (every element's props
dict, every stroke's point lists: all tracked by the cyclic GC), and it churns fast
(each event makes a new version of a document). With the default thresholds,
CPython ran full collections every couple of seconds under the write benchmark's load,
each traversing that whole heap: pauses up to 540 ms, which were the view lag's p99
(606 ms; 75 ms with the policy below, scripts/bench_worker.py). The documents are
trees, freed by reference counting; cycles are rare (exceptions, asyncio internals),
so collecting them late costs a little memory, not correctness.

    policy = Collector()
    policy.install()                    # at start: freeze what imports made, raise thresholds
    policy.tick(idle_for=seconds)       # every second or so: a full collection when due
"""

from __future__ import annotations

import gc
import time
from typing import Final

import structlog

__all__ = ["Collector"]

log = structlog.get_logger(__name__)

# gen0 collects after this many net allocations (default 700): fewer young collections,
# each a few milliseconds. gen1 and gen2 thresholds high enough that CPython never
# starts a full collection by itself under load.
_YOUNG: Final = 20_000
_MIDDLE: Final = 50
_OLD: Final = 1_000


class Collector:
    """Full collections when the worker has been idle ``idle`` seconds and ``every``
    seconds have passed since the last one, and in any case every ``at_most``."""

    def __init__(self, *, idle: float = 1.0, every: float = 60.0, at_most: float = 600.0) -> None:
        self._idle = idle
        self._every = every
        self._at_most = at_most
        self._last = time.monotonic()
        self.collections = 0

    def install(self) -> None:
        """Move everything alive now (modules, settings) out of the collector's way and
        set the thresholds."""
        gc.collect()
        gc.freeze()
        gc.set_threshold(_YOUNG, _MIDDLE, _OLD)

    def tick(self, *, idle_for: float) -> float | None:
        """Run a full collection if one is due; its duration in seconds, else None."""
        since = time.monotonic() - self._last
        due = since >= self._at_most or (since >= self._every and idle_for >= self._idle)
        if not due:
            return None
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        self._last = time.monotonic()
        self.collections += 1
        log.debug("full garbage collection", seconds=round(took, 4), unreachable=found)
        return took
