"""decide_restore: the ops that bring the state back to an earlier version."""

from __future__ import annotations

import pytest

from app.domain import WriteModel, decide_restore, replay
from app.errors import Conflict, Forbidden, Invalid, NotFound
from tests.unit.domain.support import (
    Session,
    assert_ops_valid,
    check_indexes,
    layer_add,
    rect,
    same_state,
)


def state_at(s: Session, v: int) -> WriteModel:
    return replay("d1", s.events[:v])


def restore(s: Session, to_v: int, actor: str = "owner") -> list[dict[str, object]]:
    target = state_at(s, to_v).doc
    d = decide_restore(s.model, target, to_v, actor, "owner")
    assert d.kind == "restore"
    assert d.op["kind"] == "restore" and d.op["to"] == to_v
    assert d.effect == {}
    end = assert_ops_valid(s.doc, d.op["ops"])
    s.commit(actor, d)
    assert same_state(s.doc, target)
    assert same_state(end, target)
    check_indexes(s.doc)
    return d.op["ops"]  # type: ignore[no-any-return]


def test_restore_to_the_current_state_is_empty() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    assert restore(s, s.v) == []


def test_restore_undoes_everything_since() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    s.op("a", layer_add("L2"))
    s.op("a", rect("e1", "L1", x=1, fill="#ffffff"))
    s.op("a", rect("e2", "L1"))
    s.op("a", rect("e3", "L2"))
    s.op("a", {"kind": "layer.update", "layer": "L2", "set": {"locked": True, "name": "Top"}})
    v = s.v
    s.op("b", {"kind": "doc.rename", "title": "Changed"})
    s.op("b", {"kind": "element.update", "element": "e1", "set": {"x": 5, "fill": None, "w": 3}})
    s.op("b", {"kind": "element.move", "element": "e2", "index": 0})
    s.op("b", {"kind": "element.remove", "element": "e1"})
    s.op("b", {"kind": "element.add", "element": "e1", "layer": "L1", "shape": "text",
               "props": {"text": "now text"}})  # fmt: skip
    s.op("b", {"kind": "layer.update", "layer": "L2", "set": {"locked": False}})
    s.op("b", {"kind": "element.move", "element": "e3", "layer": "L1", "index": 0})
    s.op("b", layer_add("L3", index=0))
    s.op("b", rect("n1", "L3"))
    s.op("b", {"kind": "layer.move", "layer": "L1", "index": 2})
    s.op("b", {"kind": "layer.remove", "layer": "L2"})
    restore(s, v)


def test_restore_moves_elements_out_of_a_locked_layer_that_goes_away() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    s.op("a", rect("e1", "L1"))
    v = s.v
    s.op("a", layer_add("L2"))
    s.op("a", {"kind": "element.move", "element": "e1", "layer": "L2"})
    s.op("a", rect("e2", "L2"))
    s.op("a", {"kind": "layer.update", "layer": "L2", "set": {"locked": True}})
    s.op("a", {"kind": "layer.update", "layer": "L1", "set": {"locked": True}})
    restore(s, v)


def test_restore_to_version_1_empties_the_document() -> None:
    s = Session()
    s.op("a", layer_add("L1", locked=True))
    s.op("a", {"kind": "doc.rename", "title": "Other"})
    ops = restore(s, 1)
    assert s.doc.layers == () and s.doc.title == "Poster"
    assert [op["kind"] for op in ops] == ["doc.rename", "layer.remove"]


def test_restore_is_not_undoable_but_keeps_stacks() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    s.op("b", rect("e1", "L1", x=1))
    s.op("b", {"kind": "element.update", "element": "e1", "set": {"x": 2}})
    restore(s, 3, actor="b")
    assert [e.v for e in s.model.history("b").undo] == [3, 4]  # the restore is no entry
    with pytest.raises(Conflict):  # b's update was reverted by the restore: nothing applies
        s.decide("b", {"kind": "undo"})
    s.op("b", {"kind": "doc.rename", "title": "T2"})
    s.op("b", {"kind": "undo"})
    assert s.doc.title == "Poster"


def test_restore_checks() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    for bad in (0, -1, s.v + 1):
        with pytest.raises(Invalid):
            decide_restore(s.model, s.doc, bad, "a", "owner")
    with pytest.raises(Forbidden):
        decide_restore(s.model, s.doc, 1, "a", "viewer")
    with pytest.raises(NotFound):
        decide_restore(WriteModel.new("x"), s.doc, 1, "a", "owner")
