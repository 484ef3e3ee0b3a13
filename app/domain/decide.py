"""``decide``: check an op against the write model and compute its event.

Order of checks: role (``Forbidden``), the document exists (``NotFound``), then per
op the PROTOCOL.md section 3 conflicts (``Conflict``, saying why) and the one schema
check that needs the state, props that do not fit the element's shape (``Invalid``).
A ``batch`` decides each op against the state after the previous ones; the first
failure fails the whole batch, its message prefixed with ``ops[i]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from msgspec import UNSET

from app.domain import changes
from app.domain.access import Role
from app.domain.decision import Decision, check_writer
from app.domain.model import Document, element_layers, find_element, layer_positions
from app.domain.parse import props_dict
from app.domain.schema import (
    REQUIRED_PROPS,
    SHAPE_PROPS,
    Batch,
    DocRename,
    ElementAdd,
    ElementMove,
    ElementRemove,
    ElementUpdate,
    LayerAdd,
    LayerMove,
    LayerRemove,
    LayerUpdate,
    Op,
    Redo,
    Undo,
)
from app.domain.undo import decide_redo, decide_undo
from app.domain.writemodel import WriteModel
from app.errors import Conflict, Invalid

__all__ = ["decide"]


def decide(model: WriteModel, op: Op, actor: str, role: Role) -> Decision:
    """The event for ``op`` by ``actor`` at ``model.v + 1``, or raise ``Forbidden``,
    ``NotFound``, ``Conflict`` or ``Invalid``. ``op`` comes from ``parse_op``."""
    check_writer(model, role)
    kind = type(op)
    if kind is Undo:
        return decide_undo(model, actor)
    if kind is Redo:
        return decide_redo(model, actor)
    if isinstance(op, Batch):
        return _batch(model.doc, op)
    event, record = _HANDLERS[kind](model.doc, op)
    return Decision(event["kind"], event, {"records": [record]})


def _batch(doc: Document, op: Batch) -> Decision:
    b = changes.Builder(doc)
    last = len(op.ops) - 1
    for i, sub in enumerate(op.ops):
        try:
            change = _HANDLERS[type(sub)](b.doc, sub)
        except (Conflict, Invalid) as exc:
            raise type(exc)(f"ops[{i}]: {exc.message}") from None
        b.emit(change, advance=i < last)
    return Decision("batch", {"kind": "batch", "ops": b.ops}, {"records": b.records})


# --- lookups that raise Conflict ----------------------------------------------------


def _layer(doc: Document, layer_id: str) -> int:
    li = layer_positions(doc).get(layer_id)
    if li is None:
        raise Conflict(f"layer {layer_id!r} does not exist")
    return li


def _unlocked(doc: Document, li: int) -> int:
    if doc.layers[li].locked:
        raise Conflict(f"layer {doc.layers[li].id!r} is locked")
    return li


def _element(doc: Document, element_id: str) -> tuple[int, int]:
    loc = find_element(doc, element_id)
    if loc is None:
        raise Conflict(f"element {element_id!r} does not exist")
    return loc


# --- one handler per primitive op -----------------------------------------------------


def _doc_rename(doc: Document, op: Any) -> changes.Change:
    return changes.rename(doc, op.title)


def _layer_add(doc: Document, op: Any) -> changes.Change:
    if op.layer in layer_positions(doc):
        raise Conflict(f"layer id {op.layer!r} is already in use")
    index = None if op.index is UNSET else op.index
    return changes.add_layer(doc, op.layer, op.name, op.visible, op.locked, op.opacity, index)


def _layer_update(doc: Document, op: Any) -> changes.Change:
    return changes.update_layer(doc, _layer(doc, op.layer), props_dict(op.set))


def _layer_move(doc: Document, op: Any) -> changes.Change:
    return changes.move_layer(doc, _layer(doc, op.layer), op.index)


def _layer_remove(doc: Document, op: Any) -> changes.Change:
    return changes.remove_layer(doc, _layer(doc, op.layer))


def _element_add(doc: Document, op: Any) -> changes.Change:
    if op.element in element_layers(doc):
        raise Conflict(f"element id {op.element!r} is already in use")
    li = _unlocked(doc, _layer(doc, op.layer))
    index = None if op.index is UNSET else op.index
    return changes.add_element(doc, op.element, li, op.shape, op.props, index)


def _element_update(doc: Document, op: Any) -> changes.Change:
    li, pos = _element(doc, op.element)
    shape = doc.layers[li].elements[pos].shape
    allowed = SHAPE_PROPS[shape]
    for name, value in op.set.items():
        if name not in allowed:
            raise Invalid(
                f"invalid op: prop `{name}` is not valid for shape {shape!r}"
                f" (element {op.element!r}) - at `$.set.{name}`"
            )
        if value is None and name in REQUIRED_PROPS:  # parse_op already refuses this
            raise Invalid(f"invalid op: `{name}` is required and cannot be removed")
    _unlocked(doc, li)
    return changes.update_element(doc, li, pos, op.set)


def _element_move(doc: Document, op: Any) -> changes.Change:
    li, pos = _element(doc, op.element)
    _unlocked(doc, li)
    lj = li if op.layer is UNSET else _unlocked(doc, _layer(doc, op.layer))
    index = None if op.index is UNSET else op.index
    return changes.move_element(doc, li, pos, lj, index)


def _element_remove(doc: Document, op: Any) -> changes.Change:
    li, pos = _element(doc, op.element)
    _unlocked(doc, li)
    return changes.remove_element(doc, li, pos)


_HANDLERS: dict[type[Any], Callable[[Document, Any], changes.Change]] = {
    DocRename: _doc_rename,
    LayerAdd: _layer_add,
    LayerUpdate: _layer_update,
    LayerMove: _layer_move,
    LayerRemove: _layer_remove,
    ElementAdd: _element_add,
    ElementUpdate: _element_update,
    ElementMove: _element_move,
    ElementRemove: _element_remove,
}
