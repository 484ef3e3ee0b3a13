"""Write-model snapshots: the state plus every user's undo/redo stacks, as JSON.

``model_from_json(model_to_json(m)) == m``, also after an orjson round trip. A
snapshot whose ``schema`` is not ``MODEL_SCHEMA`` raises ``ValueError``: the caller
then rebuilds the model from the events (``replay``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from app.domain.codec import state_from_json, state_to_json
from app.domain.writemodel import Entry, History, WriteModel

__all__ = ["MODEL_SCHEMA", "model_from_json", "model_to_json"]

# Bump when the snapshot format or the effect record format changes.
MODEL_SCHEMA: Final = 1


def model_to_json(model: WriteModel) -> dict[str, Any]:
    return {
        "schema": MODEL_SCHEMA,
        "state": state_to_json(model.doc),
        "undo_depth": model.undo_depth,
        "histories": {
            actor: {
                "undo": [_entry_to_json(e) for e in hist.undo],
                "redo": [_entry_to_json(e) for e in hist.redo],
            }
            for actor, hist in model.histories.items()
        },
    }


def model_from_json(data: Mapping[str, Any]) -> WriteModel:
    schema = data.get("schema")
    if schema != MODEL_SCHEMA:
        raise ValueError(f"snapshot schema {schema!r} is not {MODEL_SCHEMA}")
    histories = {
        actor: History(
            tuple(_entry_from_json(e) for e in hist["undo"]),
            tuple(_entry_from_json(e) for e in hist["redo"]),
        )
        for actor, hist in data["histories"].items()
    }
    return WriteModel(state_from_json(data["state"]), int(data["undo_depth"]), histories)


def _entry_to_json(entry: Entry) -> list[Any]:
    return [entry.v, list(entry.records)]


def _entry_from_json(data: Any) -> Entry:
    v, records = data
    return Entry(int(v), tuple(records))
