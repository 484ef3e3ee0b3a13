"""Change constructors: an intent checked against a state -> (event op, effect record).

``decide`` (after its conflict checks), undo/redo (after their "still applies" checks)
and restore all build events from these, so every primitive op in every event has the
same normalized form, and every one comes with the record undo needs:

    {"t": "doc.rename", "old": title, "new": title}
    {"t": "layer.add", "layer": id}
    {"t": "layer.update", "layer": id, "old": {field: value}, "new": {field: value}}
    {"t": "layer.move", "layer": id, "from": index, "to": index}
    {"t": "layer.remove", "layer": <layer JSON with its elements>, "index": index}
    {"t": "element.add", "element": id}
    {"t": "element.update", "element": id, "old": {prop: value}, "new": {prop: value}}
    {"t": "element.move", "element": id, "from": [layer id, index], "to": [layer id, index]}
    {"t": "element.remove", "element": <element JSON>, "layer": id, "index": index}

In element.update records ``None`` means "absent" (no prop is ever null). Indexes are
the resolved positions (PROTOCOL.md section 3: counted without the moved item, clamped
to the end). ``Builder`` applies changes one after another for composite events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.domain.apply import apply_op
from app.domain.codec import element_to_json, layer_to_json
from app.domain.model import Document

__all__ = [
    "Builder",
    "Change",
    "add_element",
    "add_layer",
    "move_element",
    "move_layer",
    "remove_element",
    "remove_layer",
    "rename",
    "update_element",
    "update_layer",
]

Change = tuple[dict[str, Any], dict[str, Any]]


def rename(doc: Document, title: str) -> Change:
    return (
        {"kind": "doc.rename", "title": title},
        {"t": "doc.rename", "old": doc.title, "new": title},
    )


def add_layer(
    doc: Document,
    layer_id: str,
    name: str,
    visible: bool,
    locked: bool,
    opacity: float,
    index: int | None,
) -> Change:
    n = len(doc.layers)
    op = {
        "kind": "layer.add",
        "layer": layer_id,
        "name": name,
        "index": n if index is None else min(index, n),
        "visible": visible,
        "locked": locked,
        "opacity": opacity,
    }
    return op, {"t": "layer.add", "layer": layer_id}


def update_layer(doc: Document, li: int, values: Mapping[str, Any]) -> Change:
    layer = doc.layers[li]
    values = dict(values)
    old = {k: getattr(layer, k) for k in values}
    return (
        {"kind": "layer.update", "layer": layer.id, "set": values},
        {"t": "layer.update", "layer": layer.id, "old": old, "new": dict(values)},
    )


def move_layer(doc: Document, li: int, index: int) -> Change:
    layer_id = doc.layers[li].id
    to = min(index, len(doc.layers) - 1)
    return (
        {"kind": "layer.move", "layer": layer_id, "index": to},
        {"t": "layer.move", "layer": layer_id, "from": li, "to": to},
    )


def remove_layer(doc: Document, li: int) -> Change:
    layer = doc.layers[li]
    return (
        {"kind": "layer.remove", "layer": layer.id},
        {"t": "layer.remove", "layer": layer_to_json(layer), "index": li},
    )


def add_element(
    doc: Document,
    element_id: str,
    li: int,
    shape: str,
    props: Mapping[str, Any],
    index: int | None,
) -> Change:
    layer = doc.layers[li]
    n = len(layer.elements)
    op = {
        "kind": "element.add",
        "element": element_id,
        "layer": layer.id,
        "shape": shape,
        "props": dict(props),
        "index": n if index is None else min(index, n),
    }
    return op, {"t": "element.add", "element": element_id}


def update_element(doc: Document, li: int, pos: int, values: Mapping[str, Any]) -> Change:
    element = doc.layers[li].elements[pos]
    current = element.props
    old = {k: current.get(k) for k in values}
    return (
        {"kind": "element.update", "element": element.id, "set": dict(values)},
        {"t": "element.update", "element": element.id, "old": old, "new": dict(values)},
    )


def move_element(doc: Document, li: int, pos: int, lj: int, index: int | None) -> Change:
    source = doc.layers[li]
    target = doc.layers[lj]
    # Counted in the target list as it is without the element (section 3).
    n = len(target.elements) - (1 if li == lj else 0)
    to = n if index is None else min(index, n)
    element_id = source.elements[pos].id
    return (
        {"kind": "element.move", "element": element_id, "layer": target.id, "index": to},
        {
            "t": "element.move",
            "element": element_id,
            "from": [source.id, pos],
            "to": [target.id, to],
        },
    )


def remove_element(doc: Document, li: int, pos: int) -> Change:
    layer = doc.layers[li]
    element = layer.elements[pos]
    return (
        {"kind": "element.remove", "element": element.id},
        {
            "t": "element.remove",
            "element": element_to_json(element),
            "layer": layer.id,
            "index": pos,
        },
    )


class Builder:
    """Accumulates the changes of one composite event, applying each to ``doc`` so the
    next is computed against the state it will land on."""

    __slots__ = ("doc", "ops", "records")

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.ops: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []

    def emit(self, change: Change, *, advance: bool = True) -> None:
        op, record = change
        self.ops.append(op)
        self.records.append(record)
        if advance:
            self.doc = apply_op(self.doc, op)
