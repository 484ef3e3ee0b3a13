"""The read schema's names (migration 0004_read, docs/readside.md)."""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "HISTORY_EVERY",
    "HISTORY_MAX_STRIDE",
    "HISTORY_STRIDE_ELEMENTS",
    "VIEWS",
    "View",
    "history_stride",
    "table",
    "view",
]

View = Literal["doc_state", "catalog", "activity", "history"]

# Every view, in the order a worker writes them in one batch transaction.
VIEWS: Final[tuple[View, ...]] = ("doc_state", "catalog", "activity", "history")

# read.history keeps the state at versions that are multiples of this: every one for a
# document of fewer than HISTORY_STRIDE_ELEMENTS elements, so ``?at=v`` replays at most
# HISTORY_EVERY - 1 events; a larger document keeps one in history_stride(elements)
# (app/views/project.py keeps_history), so ``?at=`` replays at most
# HISTORY_EVERY * HISTORY_MAX_STRIDE - 1 events, whatever the document.
HISTORY_EVERY: Final = 256
HISTORY_STRIDE_ELEMENTS: Final = 1000
HISTORY_MAX_STRIDE: Final = 8


def history_stride(elements: int) -> int:
    """1 under 1,000 elements, 2 under 2,000, 4 under 4,000, else 8. Why: a history row
    is a whole state, so its cost grows with the document; with the stride growing
    too, the history's bytes per event stay about the same. Powers of two, so that a
    multiple of ``HISTORY_EVERY * HISTORY_MAX_STRIDE`` keeps a row whatever the count
    was: the gap between two rows is bounded even when the count goes up and down."""
    stride = 1
    while stride < HISTORY_MAX_STRIDE and elements >= stride * HISTORY_STRIDE_ELEMENTS:
        stride *= 2
    return stride


def view(name: View) -> str:
    """The PostgreSQL view that workers write and queries read: ``read.<name>``."""
    return f"read.{name}"


def table(name: View, generation: int) -> str:
    """The table of one generation of a view: ``read.<name>_g<generation>``."""
    if generation < 1:
        raise ValueError(f"generation must be at least 1, not {generation}")
    return f"read.{name}_g{generation}"
