"""Helpers shared by the domain unit tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from app.domain import (
    Decision,
    Document,
    WriteModel,
    apply,
    create_op,
    decide,
    evolve,
    parse_op,
)
from app.domain.model import element_layers, element_order, find_element, layer_positions

Event = tuple[int, str, dict[str, Any], dict[str, Any]]


class Session:
    """One document driven through parse_op -> decide -> evolve, keeping the events."""

    def __init__(self, title: str = "Poster", undo_depth: int = 100, doc_id: str = "d1") -> None:
        op = create_op(title)
        self.model = evolve(WriteModel.new(doc_id, undo_depth), 1, "owner", op, {})
        self.events: list[Event] = [(1, "owner", op, {})]

    @property
    def doc(self) -> Document:
        return self.model.doc

    @property
    def v(self) -> int:
        return self.model.v

    def decide(self, actor: str, raw: Any, role: str = "editor") -> Decision:
        return decide(self.model, parse_op(raw), actor, role)  # type: ignore[arg-type]

    def op(self, actor: str, raw: Any, role: str = "editor") -> Decision:
        d = self.decide(actor, raw, role)
        self.commit(actor, d)
        return d

    def commit(self, actor: str, d: Decision) -> None:
        v = self.model.v + 1
        self.model = evolve(self.model, v, actor, d.op, d.effect)
        self.events.append((v, actor, d.op, d.effect))

    # --- convenience views -------------------------------------------------------

    def layer_ids(self) -> list[str]:
        return [layer.id for layer in self.doc.layers]

    def element_ids(self, layer_id: str) -> list[str]:
        li = layer_positions(self.doc)[layer_id]
        return [e.id for e in self.doc.layers[li].elements]

    def props(self, element_id: str) -> dict[str, Any]:
        loc = find_element(self.doc, element_id)
        assert loc is not None, element_id
        return dict(self.doc.layers[loc[0]].elements[loc[1]].props)

    def layer(self, layer_id: str) -> Any:
        return self.doc.layers[layer_positions(self.doc)[layer_id]]

    def has(self, element_id: str) -> bool:
        return find_element(self.doc, element_id) is not None


def rect(eid: str, layer: str, **props: Any) -> dict[str, Any]:
    return {"kind": "element.add", "element": eid, "layer": layer, "shape": "rect", "props": props}


def layer_add(lid: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"kind": "layer.add", "layer": lid, "name": name or lid, **extra}


def roundtrip(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


def same_state(a: Document, b: Document) -> bool:
    """Equal as documents, ignoring the version."""
    return a.id == b.id and a.title == b.title and a.layers == b.layers


def check_indexes(doc: Document) -> None:
    """The private indexes agree with the public fields."""
    where = element_layers(doc)
    count = 0
    seen: set[str] = set()
    for li, layer in enumerate(doc.layers):
        assert layer_positions(doc)[layer.id] == li
        order = element_order(layer)
        for i, e in enumerate(layer.elements):
            assert e.id not in seen, f"duplicate element id {e.id}"
            seen.add(e.id)
            assert where.get(e.id) == layer.id
            assert order.position(e.id) == i
            count += 1
        assert len(order.index) == len(order.keys) == len(layer.elements)
        assert list(order.keys) == sorted(set(order.keys))
    assert len(where) == count
    assert len(layer_positions(doc)) == len(doc.layers)


def fold_apply(events: list[Event], doc_id: str = "d1") -> Document:
    """The clients' view: apply every event op in order to an empty document."""
    doc = Document(doc_id)
    for _, _, op, _ in events:
        doc = apply(doc, op)
    return doc


def json_events(events: list[Event]) -> list[tuple[int, str, Mapping[str, Any], Mapping[str, Any]]]:
    return [(v, a, roundtrip(op), roundtrip(effect)) for v, a, op, effect in events]


def assert_ops_valid(doc: Document, ops: list[dict[str, Any]]) -> Document:
    """Each primitive op of a composite event is a valid client op against the state it
    lands on, and deciding it again gives exactly the same event op."""
    for sub in ops:
        model = WriteModel(doc)
        again = decide(model, parse_op(sub), "checker", "editor")
        assert again.op == sub, (again.op, sub)
        doc = apply(doc, sub)
    return doc
