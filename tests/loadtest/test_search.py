"""The max scenario's search over op rates, with a fake deployment (no sockets)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.loadtest.search import find_max


def deployment(capacity: float, broken_at: float = math.inf) -> Any:
    """Keeps every rate up to ``capacity``; its correctness check fails from ``broken_at``."""
    calls: list[tuple[float, str]] = []

    def measure(rate: float, label: str) -> dict[str, Any]:
        calls.append((rate, label))
        correct = rate < broken_at
        return {"rate": rate, "ok": correct and rate <= capacity, "correct": correct}

    measure.calls = calls  # type: ignore[attr-defined]
    return measure


def test_grows_then_narrows_between_the_last_kept_and_the_first_missed() -> None:
    measure = deployment(capacity=2500)
    steps, best = find_max(measure, start=250, factor=1.5, steps=10, refine=2)
    rates = [s["rate"] for s in steps]
    grown = [250 * 1.5**i for i in range(7)]  # up to 2,847.7, the first missed
    assert rates[:7] == pytest.approx(grown)
    first = math.sqrt(grown[5] * grown[6])  # 2,324.9: kept
    second = math.sqrt(first * grown[6])  # 2,573.0: missed
    assert rates[7:] == pytest.approx([first, second])
    assert [s.get("refine", False) for s in steps] == [False] * 7 + [True, True]
    assert [s["ok"] for s in steps] == [True] * 6 + [False, True, False]
    assert best is not None and best["rate"] == pytest.approx(first)
    assert [label for _, label in measure.calls] == [
        *(f"step {i}" for i in range(1, 8)),
        "refine 1",
        "refine 2",
    ]


def test_no_refinement_without_a_kept_step_or_a_missed_one() -> None:
    steps, best = find_max(deployment(capacity=10), start=20, factor=2, steps=5, refine=3)
    assert [s["rate"] for s in steps] == [20] and best is None
    steps, best = find_max(deployment(capacity=1e9), start=20, factor=2, steps=3, refine=3)
    assert [s["rate"] for s in steps] == [20, 40, 80]
    assert best is not None and best["rate"] == 80
    steps, _ = find_max(deployment(capacity=30), start=20, factor=2, steps=3, refine=0)
    assert [s["rate"] for s in steps] == [20, 40]


def test_a_failed_correctness_check_ends_the_search() -> None:
    steps, best = find_max(
        deployment(capacity=100, broken_at=150), start=50, factor=4, steps=5, refine=3
    )
    # 50 kept, 200 missed and broken: no refinement after a broken step
    assert [s["rate"] for s in steps] == [50, 200]
    assert best is not None and best["rate"] == 50
    steps, best = find_max(
        deployment(capacity=150, broken_at=110), start=50, factor=4, steps=5, refine=3
    )
    # 200 missed (broken too); no refinement
    assert [s["rate"] for s in steps] == [50, 200]


@given(
    capacity=st.floats(1, 1e5),
    start=st.floats(1, 1e4),
    factor=st.floats(1.1, 4),
    refine=st.integers(0, 6),
)
def test_the_best_is_the_fastest_kept_and_the_bracket_narrows(
    capacity: float, start: float, factor: float, refine: int
) -> None:
    steps, best = find_max(
        deployment(capacity), start=start, factor=factor, steps=40, refine=refine
    )
    kept = [s["rate"] for s in steps if s["ok"]]
    missed = [s["rate"] for s in steps if not s["ok"]]
    assert best == (max((s for s in steps if s["ok"]), key=lambda s: s["rate"]) if kept else None)
    assert all(r <= capacity for r in kept) and all(r > capacity for r in missed)
    if kept and missed:
        # each refinement halves the log of the ratio between the bracket's ends
        assert min(missed) / max(kept) <= factor ** (0.5**refine) * (1 + 1e-9)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="factor > 1"):
        find_max(deployment(10), start=1, factor=1, steps=1, refine=0)
