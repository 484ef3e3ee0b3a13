"""Rows to records: the one place that knows the column lists of the store's reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from app.store.ports import StoredEvent

__all__ = ["EVENT_COLUMNS", "to_event"]

# Every read of events selects exactly these, so every reader builds StoredEvent the
# same way; ts leaves the database as epoch milliseconds (atelier_ms, 0001).
EVENT_COLUMNS: Final = "position, doc_id, v, kind, op, effect, actor, op_id, atelier_ms(ts) AS ts"


def to_event(row: Mapping[str, Any]) -> StoredEvent:
    return StoredEvent(
        position=row["position"],
        doc_id=row["doc_id"],
        v=row["v"],
        kind=row["kind"],
        op=row["op"],
        effect=row["effect"],
        actor=row["actor"],
        op_id=row["op_id"],
        ts=row["ts"],
    )
