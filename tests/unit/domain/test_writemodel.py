"""WriteModel, evolve, replay, apply, the JSON codecs and snapshots."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.domain import (
    MODEL_SCHEMA,
    Document,
    Element,
    Layer,
    WriteModel,
    apply,
    create_op,
    evolve,
    model_from_json,
    model_to_json,
    replay,
    state_from_json,
    state_to_json,
)
from tests.unit.domain.support import (
    Session,
    check_indexes,
    fold_apply,
    json_events,
    layer_add,
    rect,
    roundtrip,
    same_state,
)

PROTOCOL_EXAMPLE = {
    "id": "d1",
    "title": "Poster",
    "v": 4,
    "layers": [
        {
            "id": "L1",
            "name": "Background",
            "visible": True,
            "locked": False,
            "opacity": 1.0,
            "elements": [
                {
                    "id": "e1",
                    "shape": "rect",
                    "props": {"x": 0, "y": 0, "w": 800, "h": 600, "fill": "#ffffff"},
                },
                {
                    "id": "e2",
                    "shape": "stroke",
                    "props": {
                        "points": [[10.5, 20.0, 0.5], [11.0, 21.5, 0.6]],
                        "color": "#112233",
                        "width": 3,
                    },
                },
            ],
        }
    ],
}


def busy_session() -> Session:
    s = Session()
    s.op("alice", layer_add("L1", "Background"))
    s.op("alice", rect("e1", "L1", x=0, y=0, w=800, h=600, fill="#ffffff"))
    s.op("bob", layer_add("L2", locked=True))
    s.op("bob", {"kind": "element.update", "element": "e1", "set": {"x": 3}})
    s.op("bob", {"kind": "undo"})
    s.op("bob", {"kind": "redo"})
    s.op("alice", rect("s1", "L1", x=2))
    s.op("alice", {"kind": "undo"})
    s.op("alice", {"kind": "layer.remove", "layer": "L1"})
    s.op("alice", {"kind": "undo"})
    s.op("alice", {"kind": "redo"})
    s.op("carol", {"kind": "batch", "ops": [layer_add("L3"), rect("c1", "L3", x=1)]})
    return s


def is_json(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


# --- the state shape ------------------------------------------------------------------


def test_state_to_json_is_the_protocol_shape() -> None:
    s = Session()
    s.op("a", layer_add("L1", "Background"))
    s.op("a", rect("e1", "L1", x=0, y=0, w=800, h=600, fill="#ffffff"))
    s.op("a", {"kind": "element.add", "element": "e2", "layer": "L1", "shape": "stroke",
               "props": {"points": [[10.5, 20.0, 0.5], [11.0, 21.5, 0.6]],
                         "color": "#112233", "width": 3}})  # fmt: skip
    state = state_to_json(s.doc)
    assert state == PROTOCOL_EXAMPLE
    assert is_json(state)
    assert state_from_json(roundtrip(state)) == s.doc
    assert state_from_json(PROTOCOL_EXAMPLE) == s.doc


def test_state_from_json_builds_its_indexes_lazily() -> None:
    doc = state_from_json(PROTOCOL_EXAMPLE)
    check_indexes(doc)
    s = Session()
    s.model = WriteModel(doc)
    s.op("a", {"kind": "element.update", "element": "e2", "set": {"width": 4}})
    assert s.props("e2")["width"] == 4.0


# --- evolve and replay ------------------------------------------------------------------


def test_new_model() -> None:
    m = WriteModel.new("d7", undo_depth=5)
    assert m.v == 0 and m.doc == Document("d7") and m.undo_depth == 5
    m = evolve(m, 1, "owner", create_op("T"), {})
    assert m.v == 1 and m.doc.title == "T" and m.doc.layers == ()
    assert m.histories == {}


def test_evolve_refuses_a_broken_stream() -> None:
    m = WriteModel.new("d")
    with pytest.raises(ValueError, match="v2"):
        evolve(m, 2, "a", create_op("T"), {})
    with pytest.raises(ValueError):
        evolve(m, 1, "a", {"kind": "doc.rename", "title": "x"}, {"records": []})
    m = evolve(m, 1, "a", create_op("T"), {})
    with pytest.raises(ValueError):
        evolve(m, 2, "a", create_op("T"), {})
    with pytest.raises(ValueError):
        evolve(m, 1, "a", {"kind": "doc.rename", "title": "x"}, {"records": []})
    with pytest.raises(ValueError, match="stack"):
        evolve(m, 2, "a", {"kind": "undo", "of": 1, "ops": []}, {"records": []})
    with pytest.raises(ValueError, match="unknown"):
        evolve(m, 2, "a", {"kind": "paint"}, {})


def test_replay_equals_step_by_step_also_after_json() -> None:
    s = busy_session()
    assert replay("d1", s.events) == s.model
    assert replay("d1", json_events(s.events)) == s.model
    check_indexes(s.doc)


def test_decisions_are_json() -> None:
    s = busy_session()
    for _, _, op, effect in s.events:
        assert is_json(op) and is_json(effect)
        assert roundtrip(op) == op and roundtrip(effect) == effect


def test_clients_view_equals_the_write_model() -> None:
    s = busy_session()
    doc = fold_apply(s.events)
    assert doc.v == 0  # apply never bumps v
    assert same_state(doc, s.doc)
    assert same_state(fold_apply(json_events(s.events)), s.doc)


def test_apply_is_deterministic_and_pure() -> None:
    s = busy_session()
    doc = s.doc
    op = {"kind": "element.update", "element": "c1", "set": {"x": 9.0}}
    a, b = apply(doc, op), apply(doc, op)
    assert a == b and a is not b
    assert s.props("c1") == {"x": 1.0}


def test_structural_sharing() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    s.op("a", layer_add("L2"))
    for i in range(20):
        s.op("a", rect(f"a{i}", "L1"))
        s.op("a", rect(f"b{i}", "L2"))
    before = s.doc
    s.op("a", {"kind": "element.update", "element": "a5", "set": {"x": 1}})
    after = s.doc
    assert after.layers[1] is before.layers[1]
    old, new = before.layers[0].elements, after.layers[0].elements
    assert all(o is n for i, (o, n) in enumerate(zip(old, new, strict=True)) if i != 5)
    assert old[5] is not new[5]
    s.op("a", rect("a_new", "L1"))
    assert s.doc.layers[1] is before.layers[1]


def test_equality_ignores_the_private_indexes() -> None:
    e = Element("e1", "rect", {"x": 1.0})
    layer = Layer("L1", "n", True, False, 1.0, (e,))
    doc = Document("d", "T", 3, (layer,))
    check_indexes(doc)  # fills the caches
    assert doc == Document("d", "T", 3, (Layer("L1", "n", True, False, 1.0, (e,)),))
    assert "_where" not in repr(doc)


# --- snapshots --------------------------------------------------------------------------


def test_model_snapshot_round_trip() -> None:
    s = busy_session()
    data = model_to_json(s.model)
    assert data["schema"] == MODEL_SCHEMA
    assert is_json(data)
    assert model_from_json(data) == s.model
    restored = model_from_json(orjson.loads(orjson.dumps(data)))
    assert restored == s.model
    assert model_to_json(restored) == roundtrip(data)
    # a model restored from a snapshot goes on exactly like the original
    follow = Session()
    follow.model = restored
    for raw, actor in [({"kind": "undo"}, "carol"), ({"kind": "undo"}, "alice")]:
        follow.op(actor, raw)
        s.op(actor, raw)
    assert follow.model == s.model


def test_snapshot_of_another_schema_is_refused() -> None:
    data = model_to_json(busy_session().model)
    with pytest.raises(ValueError, match="schema"):
        model_from_json({**data, "schema": MODEL_SCHEMA + 1})
    with pytest.raises(ValueError):
        model_from_json({k: v for k, v in data.items() if k != "schema"})


def test_empty_model_snapshot() -> None:
    m = WriteModel.new("d")
    assert model_from_json(roundtrip(model_to_json(m))) == m


def test_many_inserts_at_one_spot_exhaust_and_rebuild_the_order_keys() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    s.op("a", rect("bottom", "L1"))
    s.op("a", rect("top", "L1"))
    for i in range(80):  # each halves the gap above "bottom": keys run out after ~32
        s.op("a", {**rect(f"m{i}", "L1"), "index": 1})
        check_indexes(s.doc)
    ids = s.element_ids("L1")
    assert ids[0] == "bottom" and ids[1] == "m79" and ids[-2:] == ["m0", "top"]
    for i in range(0, 80, 7):
        s.op("a", {"kind": "element.move", "element": f"m{i}", "index": 0})
        s.op("a", {"kind": "element.remove", "element": f"m{i + 1}"})
        check_indexes(s.doc)
    assert replay("d1", json_events(s.events)) == s.model
