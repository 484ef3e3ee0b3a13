"""Stroke normalization: quantization, simplification, determinism, cost."""

from __future__ import annotations

import itertools
import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.stroke import EPSILON, _simplify, normalize_points


def seg_distance(p: list[float], a: list[float], b: list[float]) -> float:
    ax, ay, bx, by = a[0], a[1], b[0], b[1]
    dx, dy = bx - ax, by - ay
    l2 = dx * dx + dy * dy
    if l2 == 0:
        return math.hypot(p[0] - ax, p[1] - ay)
    t = max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / l2))
    return math.hypot(p[0] - (ax + t * dx), p[1] - (ay + t * dy))


def test_quantization() -> None:
    out = normalize_points([[1.23456, -7.891, 0.12345]])
    assert out == [[1.23, -7.89, 0.123]]
    # half to even on the scaled value, deterministic
    assert normalize_points([[0.125, 0.375, 0.0005]]) == [[0.12, 0.38, 0.0]]


def test_negative_zero_becomes_zero() -> None:
    (p,) = normalize_points([[-0.001, -0.0, -0.0]])
    assert p == [0.0, 0.0, 0.0]
    assert all(math.copysign(1.0, v) == 1.0 for v in p)


def test_collinear_points_are_dropped_ends_kept() -> None:
    line = [[float(i), 2.0 * i, 0.5] for i in range(100)]
    assert normalize_points(line) == [[0.0, 0.0, 0.5], [99.0, 198.0, 0.5]]


def test_points_within_epsilon_are_dropped_beyond_are_kept() -> None:
    within = normalize_points([[0, 0, 0.5], [5, 0.05, 0.5], [10, 0, 0.5]])
    assert len(within) == 2
    beyond = normalize_points([[0, 0, 0.5], [5, 0.06, 0.5], [10, 0, 0.5]])
    assert len(beyond) == 3


def test_a_stroke_that_doubles_back_keeps_its_turning_point() -> None:
    out = normalize_points([[0, 0, 0.1], [10, 0, 0.5], [5, 0, 0.9]])
    assert out == [[0.0, 0.0, 0.1], [10.0, 0.0, 0.5], [5.0, 0.0, 0.9]]


def test_closed_stroke_and_duplicates() -> None:
    square = [[0, 0, 0.5], [10, 0, 0.5], [10, 10, 0.5], [0, 10, 0.5], [0, 0, 0.5]]
    assert normalize_points(square) == [[float(x), float(y), p] for x, y, p in square]
    assert normalize_points([[1, 1, 0.5]] * 5) == [[1.0, 1.0, 0.5], [1.0, 1.0, 0.5]]


def test_one_and_two_points() -> None:
    assert normalize_points([[3, 4, 1]]) == [[3.0, 4.0, 1.0]]
    assert normalize_points([[3, 4, 1], [3, 4, 0]]) == [[3.0, 4.0, 1.0], [3.0, 4.0, 0.0]]


def test_large_coordinates_stay_exact() -> None:
    base = 9_999_000.0
    pts = [[base + i, base - i, 0.5] for i in range(50)] + [[base + 50, base - 40, 0.5]]
    out = normalize_points(pts)
    assert out[0] == [base, base, 0.5]
    assert [base + 49, base - 49, 0.5] in out
    assert out[-1] == [base + 50, base - 40, 0.5]


point = st.tuples(
    st.floats(-1000, 1000, allow_nan=False),
    st.floats(-1000, 1000, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
)


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(point, min_size=1, max_size=60))
def test_normalization_properties(points: list[tuple[float, float, float]]) -> None:
    out = normalize_points(points)
    q = [[round(x * 100) / 100, round(y * 100) / 100, round(p * 1000) / 1000] for x, y, p in points]
    keep = _simplify([p[0] for p in q], [p[1] for p in q]) if len(q) > 2 else range(len(q))
    assert out == [q[i] for i in keep]
    assert keep[0] == 0 and keep[-1] == len(q) - 1
    # every dropped point is within epsilon of the segment between its kept neighbours
    for a, b in itertools.pairwise(keep):
        for i in range(a + 1, b):
            assert seg_distance(q[i], q[a], q[b]) <= EPSILON + 1e-9
    # deterministic and idempotent
    assert normalize_points(points) == out
    assert normalize_points(out) == out


def test_ten_thousand_points_cost() -> None:
    pts = [
        [100 + 300 * math.cos(i * 0.003) + (i % 3) * 0.01, 200 + 250 * math.sin(i * 0.004), 0.5]
        for i in range(10_000)
    ]
    start = time.perf_counter()
    out = normalize_points(pts)
    elapsed = time.perf_counter() - start
    assert 2 <= len(out) < len(pts)
    assert elapsed < 0.5  # ~10 ms measured; generous bound for a loaded CI machine
