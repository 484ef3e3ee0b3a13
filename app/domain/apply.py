"""Applying event ops to a state: the clients' view (PROTOCOL.md section 3).

``apply_op`` is mechanical and deterministic (DESIGN.md I6): it trusts that the op was
decided against this state (the ids exist, the indexes are resolved) and does no
conflict checks; ``decide`` did them. It never bumps ``v``: ``evolve`` does. A
``batch``, ``undo``, ``redo`` or ``restore`` applies its ``ops`` in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.domain import _edit
from app.domain.model import Document, Element, Layer, find_element, layer_positions

__all__ = ["apply", "apply_event", "apply_op"]

_Apply = Callable[[Document, Mapping[str, Any]], Document]


def apply(doc: Document, op: Mapping[str, Any]) -> Document:
    """Apply one event op (as stored and sent to clients) to ``doc``."""
    return apply_op(doc, op)


def apply_event(doc: Document, v: int, op: Mapping[str, Any]) -> Document:
    """Apply event ``v`` of the stream to ``doc`` (at ``v - 1``) and move it to ``v``:
    the fold that the read side's views and time travel use. Raises ``ValueError``
    when the event cannot follow ``doc`` (a broken stream, not bad input)."""
    if v != doc.v + 1:
        raise ValueError(f"event v{v} cannot follow v{doc.v}")
    if (op.get("kind") == "doc.create") != (v == 1):
        raise ValueError(f"event v{v} is {op.get('kind')!r}: v1 and only v1 is 'doc.create'")
    return _edit.with_version(apply_op(doc, op), v)


def apply_op(doc: Document, op: Mapping[str, Any]) -> Document:
    try:
        fn = _APPLY[op["kind"]]
    except KeyError:
        raise ValueError(f"unknown event op kind {op.get('kind')!r}") from None
    return fn(doc, op)


def _title(doc: Document, op: Mapping[str, Any]) -> Document:
    return _edit.with_title(doc, op["title"])


def _layer_add(doc: Document, op: Mapping[str, Any]) -> Document:
    layer = Layer(op["layer"], op["name"], op["visible"], op["locked"], op["opacity"], ())
    index = op.get("index")
    return _edit.insert_layer(doc, layer, len(doc.layers) if index is None else index)


def _layer_update(doc: Document, op: Mapping[str, Any]) -> Document:
    li = layer_positions(doc)[op["layer"]]
    old = doc.layers[li]
    values = op["set"]
    layer = Layer(
        old.id,
        values.get("name", old.name),
        values.get("visible", old.visible),
        values.get("locked", old.locked),
        values.get("opacity", old.opacity),
        old.elements,
        old._order,
    )
    return _edit.replace_layer(doc, li, layer)


def _layer_move(doc: Document, op: Mapping[str, Any]) -> Document:
    return _edit.move_layer(doc, layer_positions(doc)[op["layer"]], op["index"])


def _layer_remove(doc: Document, op: Mapping[str, Any]) -> Document:
    return _edit.remove_layer(doc, layer_positions(doc)[op["layer"]])


def _element_add(doc: Document, op: Mapping[str, Any]) -> Document:
    li = layer_positions(doc)[op["layer"]]
    element = Element(op["element"], op["shape"], dict(op["props"]))
    index = op.get("index")
    return _edit.insert_element(
        doc, li, element, len(doc.layers[li].elements) if index is None else index
    )


def _locate(doc: Document, element_id: str) -> tuple[int, int]:
    loc = find_element(doc, element_id)
    if loc is None:
        raise ValueError(f"event op names element {element_id!r}, which does not exist")
    return loc


def _element_update(doc: Document, op: Mapping[str, Any]) -> Document:
    li, pos = _locate(doc, op["element"])
    old = doc.layers[li].elements[pos]
    props = dict(old.props)
    for k, v in op["set"].items():
        if v is None:
            props.pop(k, None)
        else:
            props[k] = v
    return _edit.replace_element(doc, li, pos, Element(old.id, old.shape, props))


def _element_move(doc: Document, op: Mapping[str, Any]) -> Document:
    li, pos = _locate(doc, op["element"])
    target = op.get("layer")
    lj = li if target is None else layer_positions(doc)[target]
    index = op.get("index")
    return _edit.move_element(
        doc, li, pos, lj, len(doc.layers[lj].elements) if index is None else index
    )


def _element_remove(doc: Document, op: Mapping[str, Any]) -> Document:
    li, pos = _locate(doc, op["element"])
    return _edit.remove_element(doc, li, pos)


def _composite(doc: Document, op: Mapping[str, Any]) -> Document:
    for sub in op["ops"]:
        doc = apply_op(doc, sub)
    return doc


_APPLY: dict[str, _Apply] = {
    "doc.create": _title,
    "doc.rename": _title,
    "layer.add": _layer_add,
    "layer.update": _layer_update,
    "layer.move": _layer_move,
    "layer.remove": _layer_remove,
    "element.add": _element_add,
    "element.update": _element_update,
    "element.move": _element_move,
    "element.remove": _element_remove,
    "batch": _composite,
    "undo": _composite,
    "redo": _composite,
    "restore": _composite,
}
