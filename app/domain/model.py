"""The document model (PROTOCOL.md section 2): frozen, slotted, structurally shared.

A new ``Document`` shares every layer an op did not touch, and a new ``Layer`` shares
every element. Two private indexes make lookups O(1) without copying the document:

- ``Document._where``: element id -> layer id (a ``PMap``, so an add or remove copies
  one small bucket, not the whole index);
- ``Layer._order``: element id -> position in ``elements``, as order keys kept in a
  sorted tuple beside ``elements`` (see ``_order``), so inserts and removals anywhere
  cost one tuple copy, like ``elements`` itself, and a lookup is a binary search.

Both are caches: they are excluded from equality and ``repr``, built lazily when
missing (for values made by ``state_from_json`` or by hand), and filled in through
``object.__setattr__`` on otherwise frozen instances. Filling a cache never changes an
observable value, so the model stays pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.domain._order import Order
from app.domain._pmap import PMap

__all__ = [
    "Document",
    "Element",
    "Layer",
    "element_layers",
    "element_order",
    "element_position",
    "find_element",
    "layer_positions",
]


@dataclass(frozen=True, slots=True)
class Element:
    """One shape on a layer. ``props`` is never mutated once the element exists."""

    id: str
    shape: str
    props: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Layer:
    id: str
    name: str
    visible: bool
    locked: bool
    opacity: float
    elements: tuple[Element, ...] = ()
    _order: Order | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Document:
    """A document's state at version ``v`` (``v == 0``: not created yet)."""

    id: str
    title: str = ""
    v: int = 0
    layers: tuple[Layer, ...] = ()
    _where: PMap[str] | None = field(default=None, compare=False, repr=False)
    _lidx: Mapping[str, int] | None = field(default=None, compare=False, repr=False)


def layer_positions(doc: Document) -> Mapping[str, int]:
    """Layer id -> index in ``doc.layers`` (cached on ``doc``)."""
    m = doc._lidx
    if m is None:
        m = {layer.id: i for i, layer in enumerate(doc.layers)}
        object.__setattr__(doc, "_lidx", m)
    return m


def element_layers(doc: Document) -> PMap[str]:
    """Element id -> id of the layer holding it (cached on ``doc``)."""
    m = doc._where
    if m is None:
        m = PMap.build((e.id, layer.id) for layer in doc.layers for e in layer.elements)
        object.__setattr__(doc, "_where", m)
    return m


def element_order(layer: Layer) -> Order:
    """The order keys of ``layer`` (cached on ``layer``)."""
    order = layer._order
    if order is None:
        order = Order.build(layer.elements)
        object.__setattr__(layer, "_order", order)
    return order


def element_position(layer: Layer, element_id: str) -> int | None:
    """Position of ``element_id`` in ``layer.elements``, or None when not there."""
    return element_order(layer).position(element_id)


def find_element(doc: Document, element_id: str) -> tuple[int, int] | None:
    """(layer index, position in that layer) of an element, or None when it is gone."""
    layer_id = element_layers(doc).get(element_id)
    if layer_id is None:
        return None
    li = layer_positions(doc)[layer_id]
    layer = doc.layers[li]
    pos = element_position(layer, element_id)
    # The indexes are maintained together: an element listed in _where is in its layer.
    assert pos is not None and layer.elements[pos].id == element_id, "index out of sync"
    return li, pos
