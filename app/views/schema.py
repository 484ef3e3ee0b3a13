"""The read schema's names (migration 0004_read, docs/readside.md)."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["HISTORY_EVERY", "VIEWS", "View", "table", "view"]

View = Literal["doc_state", "catalog", "activity", "history"]

# Every view, in the order a worker writes them in one batch transaction.
VIEWS: Final[tuple[View, ...]] = ("doc_state", "catalog", "activity", "history")

# read.history keeps the state at every version that is a multiple of this, so
# ``?at=v`` replays at most HISTORY_EVERY - 1 events.
HISTORY_EVERY: Final = 256


def view(name: View) -> str:
    """The PostgreSQL view that workers write and queries read: ``read.<name>``."""
    return f"read.{name}"


def table(name: View, generation: int) -> str:
    """The table of one generation of a view: ``read.<name>_g<generation>``."""
    if generation < 1:
        raise ValueError(f"generation must be at least 1, not {generation}")
    return f"read.{name}_g{generation}"
