"""The ``max`` scenario's search: the highest op rate a deployment keeps within a bound.

    grow:   start, start * factor, start * factor^2, ...   until a step misses (at most
                                                            ``steps`` steps)
    refine: between the last rate kept and the first missed, the geometric middle,
            ``refine`` times (each halves the ratio between the two)

A 1.5x grid alone can only say "between 1,898 and 2,848 ops/s"; two refinements narrow
that to a ratio of 1.11. ``measure`` runs one step at a rate and says whether it was kept
(``ok``) and whether its correctness check passed (``correct``); the search stops at the
first step whose check failed, since a faster step says nothing more then.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["find_max"]

Step = dict[str, Any]


def find_max(
    measure: Callable[[float, str], Step],
    *,
    start: float,
    factor: float,
    steps: int,
    refine: int,
) -> tuple[list[Step], Step | None]:
    """Every step run, in order (refinement steps have ``refine: True``), and the
    fastest kept one (None when the first missed). ``measure(rate, label)`` runs one."""
    if factor <= 1 or start <= 0 or steps < 1 or refine < 0:
        raise ValueError("find_max needs start > 0, factor > 1, steps >= 1, refine >= 0")
    done: list[Step] = []
    best: Step | None = None
    missed: float | None = None
    rate = start
    for i in range(steps):
        step = measure(rate, f"step {i + 1}")
        done.append(step)
        if not step["ok"]:
            missed = rate
            break
        best = step
        rate *= factor
    if best is None or missed is None or not done[-1]["correct"]:
        return done, best
    low, high = float(best["rate"]), missed
    for j in range(refine):
        middle = math.sqrt(low * high)
        step = {**measure(middle, f"refine {j + 1}"), "refine": True}
        done.append(step)
        if not step["correct"]:
            break
        if step["ok"]:
            best, low = step, middle
        else:
            high = middle
    return done, best
