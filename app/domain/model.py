"""The document model (PROTOCOL.md section 2): frozen, slotted, structurally shared.

A new ``Document`` shares every layer an op did not touch, and a new ``Layer`` shares
every element. Two private indexes make lookups O(1) without copying the document:

- ``Document._where``: element id -> layer id (a ``PMap``, so an add or remove copies
  one small bucket, not the whole index);
- ``Layer._pos``: element id -> position in ``elements`` (also a ``PMap``; appends and
  in-place replacements keep it, inserts and removals near the top patch it, other
  reorderings drop it and it is rebuilt on the next lookup).

Both are caches: they are excluded from equality and ``repr``, built lazily when
missing (for values made by ``state_from_json`` or by hand), and filled in through
``object.__setattr__`` on otherwise frozen instances. Filling a cache never changes an
observable value, so the model stays pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.domain._pmap import PMap

__all__ = [
    "Document",
    "Element",
    "Layer",
    "element_layers",
    "element_positions",
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
    _pos: PMap[int] | None = field(default=None, compare=False, repr=False)


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


def element_positions(layer: Layer) -> PMap[int]:
    """Element id -> position in ``layer.elements`` (cached on ``layer``)."""
    m = layer._pos
    if m is None:
        m = PMap.build((e.id, i) for i, e in enumerate(layer.elements))
        object.__setattr__(layer, "_pos", m)
    return m


def find_element(doc: Document, element_id: str) -> tuple[int, int] | None:
    """(layer index, position in that layer) of an element, or None when it is gone."""
    layer_id = element_layers(doc).get(element_id)
    if layer_id is None:
        return None
    li = layer_positions(doc)[layer_id]
    pos = element_positions(doc.layers[li]).get(element_id)
    # The two indexes are maintained together: an element listed in _where is in its layer.
    assert pos is not None, "element index out of sync"
    return li, pos
