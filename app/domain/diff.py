"""``diff(a, b)`` for ``GET /api/documents/{id}/diff`` (PROTOCOL.md section 5).

``changed`` maps an element id to ``{prop: [old, new]}``, ``None`` standing for an
absent prop. Besides real props, three pseudo-props describe an element that is in
both versions but not in the same place or form: ``shape`` (removed and re-added
under the same id with another shape), ``layer`` (it is in another layer) and
``index`` (``[old position, new position]``: it moved within its layer). Layers get
the same treatment in ``layers.changed`` (fields ``name``, ``visible``, ``locked``,
``opacity`` and the pseudo-field ``index``).

Only items that actually moved get ``index``: items that kept their relative order
but shifted because others were added or removed below them do not. The moved ones
are those outside a longest increasing subsequence of old positions (``bisect``,
O(n log n)); ties resolve the same way every time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from app.domain.model import Document, Element

__all__ = ["diff"]

_LAYER_FIELDS = ("name", "visible", "locked", "opacity")


def diff(a: Document, b: Document) -> dict[str, Any]:
    a_where = {e.id: (layer.id, i, e) for layer in a.layers for i, e in enumerate(layer.elements)}
    b_where = {e.id: (layer.id, i, e) for layer in b.layers for i, e in enumerate(layer.elements)}
    changed: dict[str, dict[str, list[Any]]] = {}
    for eid, (b_layer, _, e_new) in b_where.items():
        old = a_where.get(eid)
        if old is None:
            continue
        a_layer, _, e_old = old
        delta = _props_delta(e_old, e_new)
        if a_layer != b_layer:
            delta["layer"] = [a_layer, b_layer]
        if delta:
            changed[eid] = delta
    a_layers = {layer.id: layer for layer in a.layers}
    for layer in b.layers:
        old_layer = a_layers.get(layer.id)
        if old_layer is None or old_layer.elements is layer.elements:
            continue
        same = [e.id for e in layer.elements if a_where.get(e.id, ("",))[0] == layer.id]
        for eid in _moved(same, [a_where[i][1] for i in same]):
            changed.setdefault(eid, {})["index"] = [a_where[eid][1], b_where[eid][1]]

    layers_changed: dict[str, dict[str, list[Any]]] = {}
    for layer in b.layers:
        old_layer = a_layers.get(layer.id)
        if old_layer is None:
            continue
        fields = {
            f: [getattr(old_layer, f), getattr(layer, f)]
            for f in _LAYER_FIELDS
            if getattr(old_layer, f) != getattr(layer, f)
        }
        if fields:
            layers_changed[layer.id] = fields
    a_index = {layer.id: i for i, layer in enumerate(a.layers)}
    common = [layer.id for layer in b.layers if layer.id in a_index]
    b_index = {layer.id: i for i, layer in enumerate(b.layers)}
    for lid in _moved(common, [a_index[i] for i in common]):
        layers_changed.setdefault(lid, {})["index"] = [a_index[lid], b_index[lid]]

    b_layer_ids = {layer.id for layer in b.layers}
    return {
        "from": a.v,
        "to": b.v,
        "added": [eid for eid in b_where if eid not in a_where],
        "removed": [eid for eid in a_where if eid not in b_where],
        "changed": changed,
        "layers": {
            "added": [layer.id for layer in b.layers if layer.id not in a_index],
            "removed": [layer.id for layer in a.layers if layer.id not in b_layer_ids],
            "changed": layers_changed,
        },
    }


def _props_delta(old: Element, new: Element) -> dict[str, list[Any]]:
    delta: dict[str, list[Any]] = {}
    if old is new:
        return delta
    if old.shape != new.shape:
        delta["shape"] = [old.shape, new.shape]
    if old.props != new.props:
        for k, v in new.props.items():
            was = old.props.get(k)
            if was != v:
                delta[k] = [was, v]
        for k, was in old.props.items():
            if k not in new.props:
                delta[k] = [was, None]
    return delta


def _moved(ids: Sequence[str], old_positions: Sequence[int]) -> list[str]:
    """Ids (in ``ids`` order) outside a longest increasing run of ``old_positions``."""
    if len(ids) < 2:
        return []
    tails: list[int] = []  # tails[k]: old position ending the best run of length k+1
    tail_at: list[int] = []  # index in ids of that element
    parent = [-1] * len(ids)
    for i, p in enumerate(old_positions):
        k = bisect_left(tails, p)
        if k == len(tails):
            tails.append(p)
            tail_at.append(i)
        else:
            tails[k] = p
            tail_at[k] = i
        parent[i] = tail_at[k - 1] if k > 0 else -1
    stay = set()
    i = tail_at[-1]
    while i >= 0:
        stay.add(i)
        i = parent[i]
    return [eid for i, eid in enumerate(ids) if i not in stay]
