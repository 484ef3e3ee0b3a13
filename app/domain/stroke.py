"""Stroke point normalization (PROTOCOL.md section 2: "stored compressed").

1. Quantize: x and y to 0.01, pressure to 0.001, as ``round(v * 100) / 100``
   (``round`` rounds half to even; the result of dividing an ``int`` is never -0.0).
2. Simplify: Ramer-Douglas-Peucker with epsilon 0.05 on the quantized (x, y), keeping
   the first and last point. Distances are to the *segment* between the two kept
   neighbours (to the infinite line first, then a check of points that project past
   the segment's ends), so a stroke that doubles back on itself keeps its turning
   point. Every dropped point lies within 0.05 units of the stored polyline.

The result is deterministic (pure float arithmetic, iterative, first maximum wins) and
idempotent: normalizing normalized points returns them unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["EPSILON", "normalize_points"]

EPSILON = 0.05


def normalize_points(points: Sequence[Sequence[float]]) -> list[list[float]]:
    """Quantize and simplify ``[x, y, pressure]`` points; returns fresh lists."""
    r = round
    xs = [r(p[0] * 100) / 100 for p in points]
    ys = [r(p[1] * 100) / 100 for p in points]
    keep = _simplify(xs, ys) if len(xs) > 2 else range(len(xs))
    return [[xs[i], ys[i], r(points[i][2] * 1000) / 1000] for i in keep]


def _simplify(xs: list[float], ys: list[float]) -> list[int]:  # noqa: C901 (one tight loop)
    n = len(xs)
    # Work relative to the first point: keeps the cross products small and exact
    # enough even at coordinates near +/-1e7.
    x0, y0 = xs[0], ys[0]
    xr = [x - x0 for x in xs]
    yr = [y - y0 for y in ys]
    keep = bytearray(n)
    keep[0] = keep[n - 1] = 1
    hypot = math.hypot
    eps = EPSILON
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        ax, ay, bx, by = xr[a], yr[a], xr[b], yr[b]
        dx, dy = bx - ax, by - ay
        length = hypot(dx, dy)
        split = -1
        if length > 0.0:
            # cross = signed distance to the line * length; the first maximum wins.
            c = dy * ax - dx * ay
            worst = eps * length
            for i in range(a + 1, b):
                d = dy * xr[i] - dx * yr[i] - c
                if d > worst:
                    worst, split = d, i
                elif -d > worst:
                    worst, split = -d, i
            if split < 0:
                # All within eps of the line: check the points beyond either end.
                l2 = length * length
                worst = eps
                for i in range(a + 1, b):
                    px, py = xr[i] - ax, yr[i] - ay
                    t = dx * px + dy * py
                    if t < 0.0:
                        d = hypot(px, py)
                    elif t > l2:
                        d = hypot(xr[i] - bx, yr[i] - by)
                    else:
                        continue
                    if d > worst:
                        worst, split = d, i
        else:
            worst = eps
            for i in range(a + 1, b):
                d = hypot(xr[i] - ax, yr[i] - ay)
                if d > worst:
                    worst, split = d, i
        if split >= 0:
            keep[split] = 1
            if b - split > 1:
                stack.append((split, b))
            if split - a > 1:
                stack.append((a, split))
    return [i for i in range(n) if keep[i]]
