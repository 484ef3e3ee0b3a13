"""Per-user undo and redo (PROTOCOL.md section 3).

Undo reverts the effect records of the user's latest undoable op, newest record first,
each only "where it still applies" to the current state:

- a property (title, layer field, element prop) is restored only where it still holds
  the value this user's op gave it (``None``: absent);
- what the op removed is re-created at its old index (clamped), with its props; a
  removed layer comes back with the elements it had, except those whose ids are in
  use again; nothing is re-created under an id that exists again;
- what the op added is removed if it is still there; a layer only when it is empty,
  so elements that others (or later ops) put in it are never removed with it;
- a move is undone only if the item is still where the op put it: an element still in
  the layer the op moved it to, a layer still at the index the op moved it to;
- element parts that touch a locked layer (the element's, or the one it would go back
  to) are skipped: locks block element edits for everyone, undo included.

Undo fails with ``Conflict`` when the stack is empty ("nothing to undo") or when no
part applies. Redo is the same procedure over the records of the undo event, so it
re-applies the op "the same way": props are set back where they still hold what the
undo restored, what the undo removed is re-added, what it re-created is removed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.domain import changes
from app.domain.decision import Decision
from app.domain.model import Document, element_layers, find_element, layer_positions
from app.domain.schema import REQUIRED_PROPS, SHAPE_PROPS
from app.domain.writemodel import Entry, WriteModel
from app.errors import Conflict

__all__ = ["decide_redo", "decide_undo", "revert"]

_Record = Mapping[str, Any]


def decide_undo(model: WriteModel, actor: str) -> Decision:
    stack = model.history(actor).undo
    if not stack:
        raise Conflict("nothing to undo")
    return _decide("undo", model.doc, stack[-1])


def decide_redo(model: WriteModel, actor: str) -> Decision:
    stack = model.history(actor).redo
    if not stack:
        raise Conflict("nothing to redo")
    return _decide("redo", model.doc, stack[-1])


def _decide(kind: str, doc: Document, entry: Entry) -> Decision:
    ops, records = revert(doc, entry.records)
    if not ops:
        raise Conflict(
            f"nothing to {kind}: none of your edit of v{entry.v} still applies"
            " (later edits changed, moved or removed all it touched, or locked its layer)"
        )
    return Decision(kind, {"kind": kind, "of": entry.v, "ops": ops}, {"records": records})


def revert(
    doc: Document, records: Sequence[_Record]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ops that revert ``records`` where they still apply, and their own records."""
    b = changes.Builder(doc)
    for record in reversed(records):
        _REVERT[record["t"]](b, record)
    return b.ops, b.records


def _rename(b: changes.Builder, r: _Record) -> None:
    if b.doc.title == r["new"]:
        b.emit(changes.rename(b.doc, r["old"]))


def _layer_add(b: changes.Builder, r: _Record) -> None:
    li = layer_positions(b.doc).get(r["layer"])
    if li is not None and not b.doc.layers[li].elements:
        b.emit(changes.remove_layer(b.doc, li))


def _layer_update(b: changes.Builder, r: _Record) -> None:
    li = layer_positions(b.doc).get(r["layer"])
    if li is None:
        return
    layer = b.doc.layers[li]
    new = r["new"]
    values = {k: old for k, old in r["old"].items() if getattr(layer, k) == new[k]}
    if values:
        b.emit(changes.update_layer(b.doc, li, values))


def _layer_move(b: changes.Builder, r: _Record) -> None:
    li = layer_positions(b.doc).get(r["layer"])
    if li is not None and li == r["to"]:
        b.emit(changes.move_layer(b.doc, li, r["from"]))


def _layer_remove(b: changes.Builder, r: _Record) -> None:
    data = r["layer"]
    layer_id = data["id"]
    if layer_id in layer_positions(b.doc):
        return
    # Re-create it unlocked, put its elements back, then lock it again: every op in the
    # event is then valid against the state it lands on.
    b.emit(
        changes.add_layer(
            b.doc, layer_id, data["name"], data["visible"], False, data["opacity"], r["index"]
        )
    )
    li = layer_positions(b.doc)[layer_id]
    for e in data["elements"]:
        if e["id"] not in element_layers(b.doc):
            b.emit(changes.add_element(b.doc, e["id"], li, e["shape"], e["props"], None))
    if data["locked"]:
        b.emit(changes.update_layer(b.doc, li, {"locked": True}))


def _element_add(b: changes.Builder, r: _Record) -> None:
    loc = find_element(b.doc, r["element"])
    if loc is not None and not b.doc.layers[loc[0]].locked:
        b.emit(changes.remove_element(b.doc, *loc))


def _element_update(b: changes.Builder, r: _Record) -> None:
    loc = find_element(b.doc, r["element"])
    if loc is None or b.doc.layers[loc[0]].locked:
        return
    element = b.doc.layers[loc[0]].elements[loc[1]]
    props = element.props
    allowed = SHAPE_PROPS[element.shape]
    new = r["new"]
    values = {
        k: old
        for k, old in r["old"].items()
        if k in allowed and props.get(k) == new[k] and not (old is None and k in REQUIRED_PROPS)
    }
    if values:
        b.emit(changes.update_element(b.doc, *loc, values))


def _element_move(b: changes.Builder, r: _Record) -> None:
    loc = find_element(b.doc, r["element"])
    if loc is None:
        return
    li, pos = loc
    current = b.doc.layers[li]
    if current.id != r["to"][0] or current.locked:
        return
    back_to, index = r["from"]
    lj = layer_positions(b.doc).get(back_to)
    if lj is None or b.doc.layers[lj].locked:
        return
    b.emit(changes.move_element(b.doc, li, pos, lj, index))


def _element_remove(b: changes.Builder, r: _Record) -> None:
    data = r["element"]
    if data["id"] in element_layers(b.doc):
        return
    li = layer_positions(b.doc).get(r["layer"])
    if li is None or b.doc.layers[li].locked:
        return
    b.emit(changes.add_element(b.doc, data["id"], li, data["shape"], data["props"], r["index"]))


_REVERT: dict[str, Callable[[changes.Builder, _Record], None]] = {
    "doc.rename": _rename,
    "layer.add": _layer_add,
    "layer.update": _layer_update,
    "layer.move": _layer_move,
    "layer.remove": _layer_remove,
    "element.add": _element_add,
    "element.update": _element_update,
    "element.move": _element_move,
    "element.remove": _element_remove,
}
