"""JSON shapes of elements, layers and states (PROTOCOL.md section 2).

Everything returned is JSON-able (dict, list, str, int, float, bool, None) and
round-trips through orjson to an equal value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.domain.model import Document, Element, Layer

__all__ = [
    "element_from_json",
    "element_to_json",
    "layer_from_json",
    "layer_to_json",
    "state_from_json",
    "state_to_json",
]


def element_to_json(e: Element) -> dict[str, Any]:
    return {"id": e.id, "shape": e.shape, "props": dict(e.props)}


def element_from_json(data: Mapping[str, Any]) -> Element:
    return Element(data["id"], data["shape"], dict(data["props"]))


def layer_to_json(layer: Layer) -> dict[str, Any]:
    return {
        "id": layer.id,
        "name": layer.name,
        "visible": layer.visible,
        "locked": layer.locked,
        "opacity": layer.opacity,
        "elements": [element_to_json(e) for e in layer.elements],
    }


def layer_from_json(data: Mapping[str, Any]) -> Layer:
    return Layer(
        data["id"],
        data["name"],
        bool(data["visible"]),
        bool(data["locked"]),
        float(data["opacity"]),
        tuple(element_from_json(e) for e in data["elements"]),
    )


def state_to_json(doc: Document) -> dict[str, Any]:
    """The state object of PROTOCOL.md section 2: ``{"id", "title", "v", "layers"}``."""
    return {
        "id": doc.id,
        "title": doc.title,
        "v": doc.v,
        "layers": [layer_to_json(layer) for layer in doc.layers],
    }


def state_from_json(data: Mapping[str, Any]) -> Document:
    return Document(
        data["id"],
        data["title"],
        int(data["v"]),
        tuple(layer_from_json(layer) for layer in data["layers"]),
    )
