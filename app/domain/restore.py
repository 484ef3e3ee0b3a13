"""``decide_restore``: the event that brings the document back to an earlier state.

The event is ``{"kind": "restore", "to": v, "ops": [...]}`` (PROTOCOL.md section 3),
where ``ops`` are primitive ops that turn the current state into the target, computed
in this order so that each is valid against the state it lands on:

1. the title (``doc.rename``);
2. unlock each locked layer whose elements must change (it is locked again in step 9);
3. remove the elements the target does not have (or has with another shape), except
   in layers that go away with step 7 anyway;
4. add the layers the target has and the state lacks (unlocked, on top for now);
5. for each target layer bottom to top, put its elements in order: an element that is
   not at its position is moved there (from wherever it is) or added;
6. set the props that differ (``null`` for props the target lacks);
7. remove the layers the target does not have;
8. move the layers into the target's order;
9. set the layer fields that differ (name, visible, locked, opacity).

A restore is not undoable; its effect is ``{}``.
"""

from __future__ import annotations

from app.domain import changes
from app.domain.access import Role
from app.domain.decision import Decision, check_writer
from app.domain.model import Document, Element, element_layers, find_element, layer_positions
from app.domain.writemodel import WriteModel
from app.errors import Invalid

__all__ = ["decide_restore", "transform"]

_LAYER_FIELDS = ("name", "visible", "locked", "opacity")


def decide_restore(
    model: WriteModel, target: Document, to_v: int, actor: str, role: Role
) -> Decision:
    """The ``restore`` event that turns ``model.doc`` into ``target`` (the state at
    ``to_v``). ``ops`` may be empty when nothing differs."""
    check_writer(model, role)
    if not 1 <= to_v <= model.v:
        raise Invalid(f"invalid restore: version {to_v} is not in 1..{model.v}")
    ops = transform(model.doc, target)
    return Decision("restore", {"kind": "restore", "to": to_v, "ops": ops}, {})


def transform(doc: Document, target: Document) -> list[dict[str, object]]:  # noqa: C901
    """Primitive ops that turn ``doc`` into ``target`` (ignoring ``v`` and ``id``)."""
    b = changes.Builder(doc)
    t_layers = {layer.id: layer for layer in target.layers}
    t_elements: dict[str, Element] = {e.id: e for layer in target.layers for e in layer.elements}

    if doc.title != target.title:
        b.emit(changes.rename(b.doc, target.title))

    for li, layer in enumerate(doc.layers):
        if not layer.locked:
            continue
        kept = t_layers.get(layer.id)
        if kept is None:
            must = any(e.id in t_elements for e in layer.elements)
        else:
            must = layer.elements != kept.elements
        if must:
            b.emit(changes.update_layer(b.doc, li, {"locked": False}))

    for layer in b.doc.layers:
        if layer.locked:
            continue
        for e in layer.elements:
            te = t_elements.get(e.id)
            if te is None or te.shape != e.shape:
                loc = find_element(b.doc, e.id)
                assert loc is not None
                b.emit(changes.remove_element(b.doc, *loc))

    for tl in target.layers:
        if tl.id not in layer_positions(b.doc):
            b.emit(changes.add_layer(b.doc, tl.id, tl.name, tl.visible, False, tl.opacity, None))

    for tl in target.layers:
        lj = layer_positions(b.doc)[tl.id]
        for j, te in enumerate(tl.elements):
            current = b.doc.layers[lj].elements
            if j < len(current) and current[j].id == te.id:
                continue
            loc = find_element(b.doc, te.id)
            if loc is None:
                b.emit(changes.add_element(b.doc, te.id, lj, te.shape, te.props, j))
            else:
                b.emit(changes.move_element(b.doc, *loc, lj, j))

    for tl in target.layers:
        lj = layer_positions(b.doc)[tl.id]
        for pos, (e, te) in enumerate(zip(b.doc.layers[lj].elements, tl.elements, strict=True)):
            if e is te or e.props == te.props:
                continue
            keys = list(te.props) + [k for k in e.props if k not in te.props]
            values = {k: te.props.get(k) for k in keys if e.props.get(k) != te.props.get(k)}
            b.emit(changes.update_element(b.doc, lj, pos, values))

    for layer in doc.layers:
        if layer.id not in t_layers:
            b.emit(changes.remove_layer(b.doc, layer_positions(b.doc)[layer.id]))

    for j, tl in enumerate(target.layers):
        if b.doc.layers[j].id != tl.id:
            b.emit(changes.move_layer(b.doc, layer_positions(b.doc)[tl.id], j))

    for li, tl in enumerate(target.layers):
        layer = b.doc.layers[li]
        values = {f: getattr(tl, f) for f in _LAYER_FIELDS if getattr(layer, f) != getattr(tl, f)}
        if values:
            b.emit(changes.update_layer(b.doc, li, values))

    assert len(element_layers(b.doc)) == len(t_elements)
    return list(b.ops)
