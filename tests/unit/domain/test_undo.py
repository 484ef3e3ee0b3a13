"""Per-user undo and redo (PROTOCOL.md section 3)."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain import decide_restore
from app.errors import Conflict
from tests.unit.domain.support import Session, check_indexes, layer_add, rect, same_state

UNDO = {"kind": "undo"}
REDO = {"kind": "redo"}


def upd(eid: str, **values: Any) -> dict[str, Any]:
    return {"kind": "element.update", "element": eid, "set": values}


def lupd(lid: str, **values: Any) -> dict[str, Any]:
    return {"kind": "layer.update", "layer": lid, "set": values}


@pytest.fixture
def s() -> Session:
    s = Session()
    s.op("owner", layer_add("L1"))
    s.op("owner", rect("e1", "L1", x=0, y=0, w=10, h=10))
    s.op("owner", rect("e2", "L1", x=5))
    return s


def refused(s: Session, actor: str, raw: Any, fragment: str) -> None:
    before = s.model
    with pytest.raises(Conflict) as info:
        s.decide(actor, raw)
    assert fragment in info.value.message, info.value.message
    assert s.model is before


# --- empty stacks -------------------------------------------------------------------


def test_nothing_to_undo_or_redo(s: Session) -> None:
    refused(s, "alice", UNDO, "nothing to undo")
    refused(s, "alice", REDO, "nothing to redo")


def test_doc_create_and_restore_are_not_undoable() -> None:
    s = Session()
    refused(s, "owner", UNDO, "nothing to undo")
    s.op("owner", layer_add("L1"))
    s.op("owner", UNDO)
    d = decide_restore(s.model, s.model.doc, 1, "owner", "owner")
    s.commit("owner", d)
    refused(s, "owner", UNDO, "nothing to undo")
    s.op("owner", REDO)  # the restore does not clear the redo stack
    assert s.layer_ids() == ["L1"]


# --- properties ---------------------------------------------------------------------


def test_undo_element_update(s: Session) -> None:
    before = s.doc
    d = s.op("alice", upd("e1", x=7, w=None, fill="#000000"))
    v = s.v
    u = s.op("alice", UNDO)
    assert u.kind == "undo"
    assert u.op == {
        "kind": "undo",
        "of": v,
        "ops": [upd("e1", x=0.0, w=10.0, fill=None)],
    }
    assert same_state(s.doc, before)
    assert d.op["set"] == {"x": 7.0, "w": None, "fill": "#000000"}


def test_undo_skips_what_another_user_changed_since(s: Session) -> None:
    s.op("alice", upd("e1", x=7, y=7))
    s.op("bob", upd("e1", x=8))
    u = s.op("alice", UNDO)
    assert u.op["ops"] == [upd("e1", y=0.0)]
    assert s.props("e1")["x"] == 8.0 and s.props("e1")["y"] == 0.0


def test_undo_fails_when_nothing_still_applies(s: Session) -> None:
    s.op("alice", upd("e1", x=7))
    v = s.v
    s.op("bob", upd("e1", x=8))
    refused(s, "alice", UNDO, f"v{v}")
    # the entry stays: the user is told, nothing was stored
    assert s.model.history("alice").undo[-1].v == v


def test_undo_restores_a_value_someone_set_back(s: Session) -> None:
    s.op("alice", upd("e1", x=7))
    s.op("bob", upd("e1", x=8))
    s.op("carol", upd("e1", x=7))  # holds the value alice's op gave it again
    s.op("alice", UNDO)
    assert s.props("e1")["x"] == 0.0


def test_undo_doc_rename_and_layer_update(s: Session) -> None:
    s.op("alice", {"kind": "doc.rename", "title": "New"})
    s.op("alice", lupd("L1", name="Renamed", opacity=0.5))
    s.op("bob", lupd("L1", opacity=0.25))
    u = s.op("alice", UNDO)
    assert u.op["ops"] == [lupd("L1", name="L1")]
    assert (s.layer("L1").name, s.layer("L1").opacity) == ("L1", 0.25)
    s.op("alice", UNDO)
    assert s.doc.title == "Poster"
    s.op("bob", {"kind": "doc.rename", "title": "Bob's"})
    refused(s, "alice", REDO, "nothing to redo")  # bob overrode the title alice restored
    assert s.doc.title == "Bob's"


# --- adds and removes ---------------------------------------------------------------


def test_undo_element_add_removes_it_if_still_there(s: Session) -> None:
    before = s.doc
    s.op("alice", rect("a1", "L1", x=1))
    s.op("bob", upd("a1", y=3))
    u = s.op("alice", UNDO)
    assert u.op["ops"] == [{"kind": "element.remove", "element": "a1"}]
    assert same_state(s.doc, before)
    s.op("alice", rect("a2", "L1"))
    s.op("bob", {"kind": "element.remove", "element": "a2"})
    refused(s, "alice", UNDO, "nothing to undo")


def test_undo_element_remove_recreates_at_its_index(s: Session) -> None:
    s.op("owner", rect("e3", "L1"))
    before = s.doc
    s.op("alice", {"kind": "element.remove", "element": "e2"})
    u = s.op("alice", UNDO)
    assert u.op["ops"] == [
        {
            "kind": "element.add",
            "element": "e2",
            "layer": "L1",
            "shape": "rect",
            "props": {"x": 5.0},
            "index": 1,
        }
    ]
    assert same_state(s.doc, before)
    assert s.element_ids("L1") == ["e1", "e2", "e3"]


def test_undo_element_remove_skipped_when_the_id_is_reused(s: Session) -> None:
    s.op("alice", {"kind": "element.remove", "element": "e2"})
    s.op("bob", rect("e2", "L1", x=99))
    refused(s, "alice", UNDO, "nothing to undo")
    assert s.props("e2") == {"x": 99.0}


def test_undo_layer_remove_recreates_layer_with_its_elements(s: Session) -> None:
    s.op("owner", layer_add("L2"))
    s.op("owner", lupd("L1", name="Base", visible=False, opacity=0.5))
    before = s.doc
    s.op("alice", {"kind": "layer.remove", "layer": "L1"})
    assert s.layer_ids() == ["L2"]
    u = s.op("alice", UNDO)
    assert [op["kind"] for op in u.op["ops"]] == ["layer.add", "element.add", "element.add"]
    assert u.op["ops"][0] == {
        "kind": "layer.add",
        "layer": "L1",
        "name": "Base",
        "index": 0,
        "visible": False,
        "locked": False,
        "opacity": 0.5,
    }
    assert same_state(s.doc, before)
    check_indexes(s.doc)


def test_undo_layer_remove_skips_ids_reused_meanwhile(s: Session) -> None:
    s.op("owner", layer_add("L2"))
    s.op("alice", {"kind": "layer.remove", "layer": "L1"})
    s.op("bob", rect("e1", "L2", x=42))
    s.op("alice", UNDO)
    assert s.layer_ids() == ["L1", "L2"]
    assert s.element_ids("L1") == ["e2"]
    assert s.element_ids("L2") == ["e1"] and s.props("e1") == {"x": 42.0}


def test_undo_layer_remove_of_a_locked_layer_locks_it_again(s: Session) -> None:
    s.op("owner", lupd("L1", locked=True))
    before = s.doc
    s.op("alice", {"kind": "layer.remove", "layer": "L1"})
    u = s.op("alice", UNDO)
    kinds = [op["kind"] for op in u.op["ops"]]
    assert kinds == ["layer.add", "element.add", "element.add", "layer.update"]
    assert u.op["ops"][0]["locked"] is False
    assert u.op["ops"][-1] == lupd("L1", locked=True)
    assert same_state(s.doc, before)
    # redo removes it again
    s.op("alice", REDO)
    assert s.layer_ids() == []


def test_undo_layer_remove_skipped_when_the_layer_id_is_back(s: Session) -> None:
    s.op("alice", {"kind": "layer.remove", "layer": "L1"})
    s.op("bob", layer_add("L1", "Bob's"))
    refused(s, "alice", UNDO, "nothing to undo")


def test_undo_layer_add_removes_it_only_when_empty(s: Session) -> None:
    before = s.doc
    s.op("alice", layer_add("L2"))
    s.op("bob", rect("b1", "L2"))
    refused(s, "alice", UNDO, "nothing to undo")  # bob's element is never removed with it
    s.op("bob", {"kind": "element.remove", "element": "b1"})
    s.op("alice", UNDO)
    assert same_state(s.doc, before)


def test_undo_of_a_batch_reverts_it_all_in_reverse(s: Session) -> None:
    before = s.doc
    d = s.op(
        "alice",
        {
            "kind": "batch",
            "ops": [
                layer_add("L2"),
                rect("a1", "L2", x=1),
                upd("a1", x=2),
                upd("e1", x=3),
                {"kind": "element.move", "element": "e2", "layer": "L2", "index": 0},
                lupd("L2", locked=True),
                {"kind": "doc.rename", "title": "B"},
            ],
        },
    )
    u = s.op("alice", UNDO)
    assert u.op["of"] == s.v - 1
    assert [op["kind"] for op in u.op["ops"]] == [
        "doc.rename",
        "layer.update",
        "element.move",
        "element.update",
        "element.update",
        "element.remove",
        "layer.remove",
    ]
    assert same_state(s.doc, before)
    r = s.op("alice", REDO)
    assert [op["kind"] for op in r.op["ops"]] == [op["kind"] for op in d.op["ops"]]
    assert r.op["ops"] == d.op["ops"]


def test_undo_of_a_batch_partially(s: Session) -> None:
    s.op("alice", {"kind": "batch", "ops": [upd("e1", x=1), upd("e2", x=1)]})
    s.op("bob", upd("e2", x=2))
    u = s.op("alice", UNDO)
    assert u.op["ops"] == [upd("e1", x=0.0)]
    assert s.props("e2")["x"] == 2.0


# --- moves --------------------------------------------------------------------------


def test_undo_element_move(s: Session) -> None:
    s.op("owner", layer_add("L2"))
    s.op("owner", rect("f1", "L2"))
    before = s.doc
    s.op("alice", {"kind": "element.move", "element": "e1", "layer": "L2", "index": 1})
    s.op("bob", rect("f2", "L2", x=1))
    u = s.op("alice", UNDO)
    assert u.op["ops"] == [{"kind": "element.move", "element": "e1", "layer": "L1", "index": 0}]
    assert s.element_ids("L1") == ["e1", "e2"]
    assert s.element_ids("L2") == ["f1", "f2"]
    s.op("bob", {"kind": "element.remove", "element": "f2"})
    assert same_state(s.doc, before)


def test_undo_element_move_skipped_when_someone_moved_it_elsewhere(s: Session) -> None:
    s.op("owner", layer_add("L2"))
    s.op("owner", layer_add("L3"))
    s.op("alice", {"kind": "element.move", "element": "e1", "layer": "L2"})
    s.op("bob", {"kind": "element.move", "element": "e1", "layer": "L3"})
    refused(s, "alice", UNDO, "nothing to undo")


def test_undo_element_move_skipped_when_a_layer_is_locked_or_gone(s: Session) -> None:
    s.op("owner", layer_add("L2"))
    s.op("alice", {"kind": "element.move", "element": "e1", "layer": "L2"})
    s.op("bob", lupd("L1", locked=True))
    refused(s, "alice", UNDO, "locked its layer")
    s.op("bob", lupd("L1", locked=False))
    s.op("bob", lupd("L2", locked=True))
    refused(s, "alice", UNDO, "nothing to undo")
    s.op("bob", lupd("L2", locked=False))
    s.op("bob", {"kind": "layer.remove", "layer": "L1"})
    refused(s, "alice", UNDO, "nothing to undo")


def test_undo_layer_move(s: Session) -> None:
    s.op("owner", layer_add("L2"))
    s.op("owner", layer_add("L3"))
    before = s.doc
    s.op("alice", {"kind": "layer.move", "layer": "L1", "index": 2})
    assert s.layer_ids() == ["L2", "L3", "L1"]
    u = s.op("alice", UNDO)
    assert u.op["ops"] == [{"kind": "layer.move", "layer": "L1", "index": 0}]
    assert same_state(s.doc, before)
    s.op("alice", REDO)
    s.op("bob", {"kind": "layer.move", "layer": "L1", "index": 0})
    refused(s, "alice", UNDO, "nothing to undo")  # bob moved it since


# --- locks ----------------------------------------------------------------------------


def test_undo_skips_element_parts_in_locked_layers(s: Session) -> None:
    s.op("owner", layer_add("L2"))
    s.op("owner", rect("f1", "L2"))
    s.op("alice", {"kind": "batch", "ops": [upd("e1", x=1), upd("f1", x=1)]})
    s.op("bob", lupd("L1", locked=True))
    u = s.op("alice", UNDO)
    assert u.op["ops"] == [upd("f1", x=None)]
    assert s.props("e1")["x"] == 1.0


def test_own_lock_is_undone_before_the_edits_it_covers(s: Session) -> None:
    before = s.doc
    s.op("alice", {"kind": "batch", "ops": [upd("e1", x=1), lupd("L1", locked=True)]})
    s.op("alice", UNDO)
    assert same_state(s.doc, before)


# --- per user, redo -------------------------------------------------------------------


def test_undo_is_per_user(s: Session) -> None:
    s.op("alice", upd("e1", x=1))
    s.op("bob", upd("e2", x=2))
    s.op("alice", UNDO)
    assert s.props("e1")["x"] == 0.0 and s.props("e2")["x"] == 2.0
    s.op("bob", UNDO)
    assert s.props("e2")["x"] == 5.0
    refused(s, "alice", UNDO, "nothing to undo")
    refused(s, "bob", UNDO, "nothing to undo")


def test_undo_walks_back_and_redo_forward(s: Session) -> None:
    states = [s.doc]
    versions = []
    for x in (1, 2, 3):
        s.op("alice", upd("e1", x=x))
        states.append(s.doc)
        versions.append(s.v)
    for i in (2, 1, 0):
        u = s.op("alice", UNDO)
        assert u.op["of"] == versions[i]
        assert same_state(s.doc, states[i])
    refused(s, "alice", UNDO, "nothing to undo")
    for i in (1, 2, 3):
        r = s.op("alice", REDO)
        assert r.op["of"] == versions[i - 1]
        assert same_state(s.doc, states[i])
    refused(s, "alice", REDO, "nothing to redo")


def test_redo_event_and_op_undoable_again(s: Session) -> None:
    s.op("alice", upd("e1", x=1))
    v = s.v
    s.op("alice", UNDO)
    r = s.op("alice", REDO)
    assert r.kind == "redo"
    assert r.op == {"kind": "redo", "of": v, "ops": [upd("e1", x=1.0)]}
    u = s.op("alice", UNDO)
    assert u.op["of"] == v
    assert s.props("e1")["x"] == 0.0


def test_redo_refused_after_a_new_op(s: Session) -> None:
    s.op("alice", upd("e1", x=1))
    s.op("alice", UNDO)
    s.op("alice", upd("e2", x=9))
    refused(s, "alice", REDO, "nothing to redo")


def test_other_users_ops_do_not_clear_redo(s: Session) -> None:
    s.op("alice", upd("e1", x=1))
    s.op("alice", UNDO)
    s.op("bob", upd("e2", x=9))
    s.op("alice", REDO)
    assert s.props("e1")["x"] == 1.0


def test_redo_skips_what_changed_since_the_undo(s: Session) -> None:
    s.op("alice", upd("e1", x=1, y=1))
    s.op("alice", UNDO)
    s.op("bob", upd("e1", x=5))
    r = s.op("alice", REDO)
    assert r.op["ops"] == [upd("e1", y=1.0)]
    assert s.props("e1")["x"] == 5.0


def test_redo_of_an_undone_add_and_remove(s: Session) -> None:
    s.op("alice", rect("a1", "L1", x=1))
    s.op("alice", UNDO)
    assert not s.has("a1")
    s.op("alice", REDO)
    assert s.props("a1") == {"x": 1.0}
    s.op("alice", {"kind": "element.remove", "element": "e1"})
    s.op("alice", UNDO)
    assert s.has("e1")
    s.op("bob", upd("e1", x=4))
    s.op("alice", REDO)  # re-removes what the undo re-created, whatever its props now
    assert not s.has("e1")


def test_undo_depth_bounds_the_stack() -> None:
    s = Session(undo_depth=3)
    s.op("alice", layer_add("L1"))
    for i in range(5):
        s.op("alice", rect(f"a{i}", "L1"))
    assert [e.v for e in s.model.history("alice").undo] == [s.v - 2, s.v - 1, s.v]
    for _ in range(3):
        s.op("alice", UNDO)
    refused(s, "alice", UNDO, "nothing to undo")
    assert s.element_ids("L1") == ["a0", "a1"]
    assert len(s.model.history("alice").redo) == 3
