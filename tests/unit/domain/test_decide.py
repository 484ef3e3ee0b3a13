"""decide: normalized event ops, the PROTOCOL.md section 3 conflict table, roles,
index semantics, last writer wins, batches all or none."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain import WriteModel, decide, parse_op
from app.errors import Conflict, Forbidden, Invalid, NotFound
from tests.unit.domain.support import Session, check_indexes, layer_add, rect


@pytest.fixture
def s() -> Session:
    s = Session()
    s.op("alice", layer_add("L1", "Background"))
    s.op("alice", rect("e1", "L1", x=0, y=0, w=800, h=600, fill="#ffffff"))
    return s


def conflict(s: Session, raw: Any, *fragments: str, actor: str = "alice") -> None:
    with pytest.raises(Conflict) as info:
        s.decide(actor, raw)
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message


# --- roles and existence --------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "admin", None, ""])
def test_only_owners_and_editors_write(s: Session, role: Any) -> None:
    for raw in [{"kind": "doc.rename", "title": "x"}, {"kind": "undo"}, {"kind": "redo"}]:
        with pytest.raises(Forbidden):
            s.decide("alice", raw, role=role)


@pytest.mark.parametrize("role", ["owner", "editor"])
def test_writers(s: Session, role: str) -> None:
    s.op("alice", {"kind": "doc.rename", "title": "x"}, role=role)


def test_forbidden_comes_before_conflict(s: Session) -> None:
    with pytest.raises(Forbidden):
        s.decide("alice", {"kind": "layer.remove", "layer": "nope"}, role="viewer")


def test_before_doc_create_the_document_does_not_exist() -> None:
    with pytest.raises(NotFound):
        decide(WriteModel.new("d9"), parse_op({"kind": "doc.rename", "title": "x"}), "a", "owner")


# --- each kind's event op -------------------------------------------------------------


def test_doc_rename(s: Session) -> None:
    d = s.op("bob", {"kind": "doc.rename", "title": "New"})
    assert d.kind == "doc.rename"
    assert d.op == {"kind": "doc.rename", "title": "New"}
    assert s.doc.title == "New"


def test_layer_add_is_normalized_with_defaults_and_index(s: Session) -> None:
    d = s.op("alice", layer_add("L2", "Top"))
    assert d.op == {
        "kind": "layer.add",
        "layer": "L2",
        "name": "Top",
        "index": 1,
        "visible": True,
        "locked": False,
        "opacity": 1.0,
    }
    d = s.op("alice", layer_add("L0", "Bottom", index=0, visible=False, locked=True, opacity=0.5))
    assert d.op["index"] == 0
    assert s.layer_ids() == ["L0", "L1", "L2"]
    layer = s.layer("L0")
    assert (layer.visible, layer.locked, layer.opacity, layer.elements) == (False, True, 0.5, ())


def test_layer_add_conflicts_when_the_id_exists(s: Session) -> None:
    conflict(s, layer_add("L1"), "'L1'", "in use")


def test_layer_update(s: Session) -> None:
    d = s.op(
        "alice", {"kind": "layer.update", "layer": "L1", "set": {"name": "BG", "opacity": 0.5}}
    )
    assert d.op == {"kind": "layer.update", "layer": "L1", "set": {"name": "BG", "opacity": 0.5}}
    layer = s.layer("L1")
    assert (layer.name, layer.opacity, layer.visible) == ("BG", 0.5, True)
    assert [e.id for e in layer.elements] == ["e1"]


def test_layer_ops_conflict_when_the_layer_is_gone(s: Session) -> None:
    for raw in [
        {"kind": "layer.update", "layer": "L9", "set": {"visible": False}},
        {"kind": "layer.move", "layer": "L9", "index": 0},
        {"kind": "layer.remove", "layer": "L9"},
    ]:
        conflict(s, raw, "'L9'", "does not exist")


def test_locks_do_not_block_layer_ops(s: Session) -> None:
    s.op("alice", {"kind": "layer.update", "layer": "L1", "set": {"locked": True}})
    s.op("bob", {"kind": "layer.update", "layer": "L1", "set": {"name": "still"}})
    s.op("bob", layer_add("L2"))
    s.op("bob", {"kind": "layer.move", "layer": "L1", "index": 5})
    s.op("bob", {"kind": "layer.remove", "layer": "L1"})
    assert s.layer_ids() == ["L2"]
    assert not s.has("e1")


def test_layer_remove_removes_its_elements(s: Session) -> None:
    s.op("alice", rect("e2", "L1"))
    d = s.op("alice", {"kind": "layer.remove", "layer": "L1"})
    assert d.op == {"kind": "layer.remove", "layer": "L1"}
    assert s.doc.layers == ()
    s.op("alice", layer_add("L1"))
    s.op("alice", rect("e1", "L1"))  # the ids are free again
    check_indexes(s.doc)


def test_element_add_event(s: Session) -> None:
    d = s.op("bob", rect("e2", "L1", x=1))
    assert d.op == {
        "kind": "element.add",
        "element": "e2",
        "layer": "L1",
        "shape": "rect",
        "props": {"x": 1.0},
        "index": 1,
    }
    assert s.element_ids("L1") == ["e1", "e2"]


def test_element_add_conflicts(s: Session) -> None:
    s.op("alice", layer_add("L2"))
    conflict(s, rect("e1", "L2"), "'e1'", "in use")  # ids are unique across layers
    conflict(s, rect("e2", "L9"), "'L9'", "does not exist")
    s.op("alice", {"kind": "layer.update", "layer": "L2", "set": {"locked": True}})
    conflict(s, rect("e2", "L2"), "'L2'", "locked")


def test_element_update_sets_and_removes_props(s: Session) -> None:
    d = s.op("bob", {"kind": "element.update", "element": "e1", "set": {"x": 5, "fill": None}})
    assert d.op == {"kind": "element.update", "element": "e1", "set": {"x": 5.0, "fill": None}}
    assert s.props("e1") == {"x": 5.0, "y": 0.0, "w": 800.0, "h": 600.0}
    s.op(
        "bob", {"kind": "element.update", "element": "e1", "set": {"color": None}}
    )  # absent: no-op
    assert s.props("e1") == {"x": 5.0, "y": 0.0, "w": 800.0, "h": 600.0}


def test_element_update_checks_props_against_the_shape(s: Session) -> None:
    for prop, value in [("text", "hi"), ("x2", 1), ("size", 12), ("points", [[0, 0, 0]])]:
        with pytest.raises(Invalid) as info:
            s.decide("alice", {"kind": "element.update", "element": "e1", "set": {prop: value}})
        assert f"`{prop}`" in info.value.message and "'rect'" in info.value.message
    s.op("alice", {"kind": "element.add", "element": "t1", "layer": "L1", "shape": "text",
                   "props": {"text": "a"}})  # fmt: skip
    s.op("alice", {"kind": "element.update", "element": "t1", "set": {"text": "b", "size": 20}})
    with pytest.raises(Invalid):
        s.decide("alice", {"kind": "element.update", "element": "t1", "set": {"w": 1}})


def test_element_ops_conflict_when_gone_or_locked(s: Session) -> None:
    for raw in [
        {"kind": "element.update", "element": "e9", "set": {"x": 1}},
        {"kind": "element.move", "element": "e9"},
        {"kind": "element.remove", "element": "e9"},
    ]:
        conflict(s, raw, "'e9'", "does not exist")
    s.op("alice", {"kind": "layer.update", "layer": "L1", "set": {"locked": True}})
    for raw in [
        {"kind": "element.update", "element": "e1", "set": {"x": 1}},
        {"kind": "element.move", "element": "e1", "index": 0},
        {"kind": "element.remove", "element": "e1"},
    ]:
        conflict(s, raw, "'L1'", "locked")


def test_element_move_target_gone_or_locked(s: Session) -> None:
    conflict(s, {"kind": "element.move", "element": "e1", "layer": "L9"}, "'L9'", "does not exist")
    s.op("alice", layer_add("L2", locked=True))
    conflict(s, {"kind": "element.move", "element": "e1", "layer": "L2"}, "'L2'", "locked")


def test_element_move_event(s: Session) -> None:
    s.op("alice", layer_add("L2"))
    s.op("alice", rect("f1", "L2"))
    d = s.op("bob", {"kind": "element.move", "element": "e1", "layer": "L2", "index": 0})
    assert d.op == {"kind": "element.move", "element": "e1", "layer": "L2", "index": 0}
    assert s.element_ids("L1") == [] and s.element_ids("L2") == ["e1", "f1"]
    d = s.op("bob", {"kind": "element.move", "element": "e1"})  # default: own layer, top
    assert d.op == {"kind": "element.move", "element": "e1", "layer": "L2", "index": 1}
    assert s.element_ids("L2") == ["f1", "e1"]
    check_indexes(s.doc)


def test_element_remove_event(s: Session) -> None:
    d = s.op("bob", {"kind": "element.remove", "element": "e1"})
    assert d.op == {"kind": "element.remove", "element": "e1"}
    assert not s.has("e1")
    conflict(s, {"kind": "element.remove", "element": "e1"}, "does not exist")


# --- index semantics --------------------------------------------------------------------


def test_element_index_semantics(s: Session) -> None:
    for eid in ["a", "b", "c"]:
        s.op("alice", rect(eid, "L1"))
    assert s.element_ids("L1") == ["e1", "a", "b", "c"]
    d = s.op("alice", {**rect("z", "L1"), "index": 0})
    assert d.op["index"] == 0 and s.element_ids("L1") == ["z", "e1", "a", "b", "c"]
    d = s.op("alice", {**rect("y", "L1"), "index": 99})  # beyond the end means the end
    assert d.op["index"] == 5 and s.element_ids("L1")[-1] == "y"
    d = s.op("alice", {**rect("m", "L1"), "index": 2})
    assert s.element_ids("L1") == ["z", "e1", "m", "a", "b", "c", "y"]
    # a move counts positions in the list without the moved item
    d = s.op("alice", {"kind": "element.move", "element": "z", "index": 2})
    assert s.element_ids("L1") == ["e1", "m", "z", "a", "b", "c", "y"]
    assert d.op["index"] == 2
    d = s.op("alice", {"kind": "element.move", "element": "e1", "index": 6})
    assert s.element_ids("L1") == ["m", "z", "a", "b", "c", "y", "e1"]
    assert d.op["index"] == 6
    d = s.op("alice", {"kind": "element.move", "element": "e1", "index": 7})
    assert d.op["index"] == 6  # beyond the end (of the list without it) is the end
    d = s.op("alice", {"kind": "element.move", "element": "y", "index": 0})
    assert s.element_ids("L1") == ["y", "m", "z", "a", "b", "c", "e1"]
    check_indexes(s.doc)


def test_element_move_between_layers_index(s: Session) -> None:
    s.op("alice", layer_add("L2"))
    for eid in ["a", "b"]:
        s.op("alice", rect(eid, "L2"))
    d = s.op("alice", {"kind": "element.move", "element": "e1", "layer": "L2", "index": 2})
    assert d.op["index"] == 2 and s.element_ids("L2") == ["a", "b", "e1"]
    d = s.op("alice", {"kind": "element.move", "element": "a", "layer": "L1", "index": 9})
    assert d.op["index"] == 0 and s.element_ids("L1") == ["a"]


def test_layer_index_semantics(s: Session) -> None:
    s.op("alice", layer_add("L2"))
    s.op("alice", layer_add("L3"))
    d = s.op("alice", layer_add("L0", index=0))
    assert d.op["index"] == 0 and s.layer_ids() == ["L0", "L1", "L2", "L3"]
    d = s.op("alice", layer_add("L9", index=50))
    assert d.op["index"] == 4 and s.layer_ids()[-1] == "L9"
    d = s.op("alice", {"kind": "layer.move", "layer": "L0", "index": 2})
    assert d.op["index"] == 2 and s.layer_ids() == ["L1", "L2", "L0", "L3", "L9"]
    d = s.op("alice", {"kind": "layer.move", "layer": "L1", "index": 50})
    assert d.op["index"] == 4 and s.layer_ids() == ["L2", "L0", "L3", "L9", "L1"]
    d = s.op("alice", {"kind": "layer.move", "layer": "L9", "index": 0})
    assert s.layer_ids() == ["L9", "L2", "L0", "L3", "L1"]
    d = s.op("alice", {"kind": "layer.move", "layer": "L3", "index": 3})  # stays in place
    assert s.layer_ids() == ["L9", "L2", "L0", "L3", "L1"]


# --- last writer wins -------------------------------------------------------------------


def test_last_writer_wins_per_property(s: Session) -> None:
    s.op("alice", {"kind": "element.update", "element": "e1", "set": {"x": 1, "y": 1}})
    s.op("bob", {"kind": "element.update", "element": "e1", "set": {"x": 2}})
    assert s.props("e1")["x"] == 2.0 and s.props("e1")["y"] == 1.0
    s.op("alice", {"kind": "element.update", "element": "e1", "set": {"x": 3}})
    assert s.props("e1")["x"] == 3.0


# --- batches ------------------------------------------------------------------------------


def test_batch_decides_each_op_against_the_previous_ones(s: Session) -> None:
    d = s.op(
        "alice",
        {
            "kind": "batch",
            "ops": [
                layer_add("L2"),
                rect("e2", "L2", x=1),
                {"kind": "element.update", "element": "e2", "set": {"x": 2}},
                {"kind": "element.move", "element": "e1", "layer": "L2", "index": 0},
                {"kind": "layer.update", "layer": "L2", "set": {"locked": True}},
            ],
        },
    )
    assert d.kind == "batch"
    assert [op["kind"] for op in d.op["ops"]] == [
        "layer.add",
        "element.add",
        "element.update",
        "element.move",
        "layer.update",
    ]
    assert len(d.effect["records"]) == 5
    assert s.element_ids("L2") == ["e1", "e2"]
    assert s.props("e2") == {"x": 2.0}
    assert s.layer("L2").locked


def test_batch_is_all_or_none(s: Session) -> None:
    before = s.model
    raw = {
        "kind": "batch",
        "ops": [
            rect("e2", "L1"),
            {"kind": "layer.update", "layer": "L1", "set": {"locked": True}},
            {"kind": "element.update", "element": "e2", "set": {"x": 1}},
        ],
    }
    with pytest.raises(Conflict) as info:
        s.decide("alice", raw)
    assert info.value.message.startswith("ops[2]: ")
    assert "locked" in info.value.message
    assert s.model is before and not s.has("e2")


def test_batch_invalid_prop_for_shape_fails_the_batch(s: Session) -> None:
    raw = {
        "kind": "batch",
        "ops": [
            rect("e2", "L1"),
            {"kind": "element.update", "element": "e2", "set": {"text": "t"}},
        ],
    }
    with pytest.raises(Invalid, match=r"^ops\[1\]: "):
        s.decide("alice", raw)


def test_batch_sees_its_own_removals(s: Session) -> None:
    raw = {
        "kind": "batch",
        "ops": [{"kind": "element.remove", "element": "e1"}, rect("e1", "L1", x=9)],
    }
    s.op("alice", raw)
    assert s.props("e1") == {"x": 9.0}
    with pytest.raises(Conflict, match=r"^ops\[1\]: "):
        s.decide(
            "alice",
            {"kind": "batch", "ops": [{"kind": "element.remove", "element": "e1"}] * 2},
        )


def test_decide_is_pure(s: Session) -> None:
    before = s.model
    op = parse_op(rect("e2", "L1", x=1))
    first = decide(before, op, "alice", "editor")
    second = decide(before, op, "alice", "editor")
    assert first == second
    assert s.model is before and not s.has("e2")
