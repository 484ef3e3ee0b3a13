"""diff(a, b) (PROTOCOL.md section 5)."""

from __future__ import annotations

from app.domain import diff, replay
from tests.unit.domain.support import Session, layer_add, rect, roundtrip


def test_diff_of_a_version_with_itself_is_empty() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    s.op("a", rect("e1", "L1"))
    d = diff(s.doc, s.doc)
    assert d == {
        "from": s.v,
        "to": s.v,
        "added": [],
        "removed": [],
        "changed": {},
        "layers": {"added": [], "removed": [], "changed": {}},
    }


def test_diff_elements_and_layers() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    s.op("a", layer_add("L2"))
    s.op("a", rect("e1", "L1", x=1, fill="#ffffff"))
    s.op("a", rect("e2", "L1"))
    s.op("a", rect("e3", "L1"))
    s.op("a", rect("gone", "L2"))
    before = s.doc
    s.op("b", {"kind": "element.update", "element": "e1", "set": {"x": 2, "fill": None, "w": 4}})
    s.op("b", {"kind": "element.remove", "element": "gone"})
    s.op("b", rect("new", "L1"))
    s.op("b", {"kind": "element.move", "element": "e3", "layer": "L2"})
    s.op("b", {"kind": "layer.update", "layer": "L1", "set": {"name": "Base", "opacity": 0.5}})
    s.op("b", layer_add("L3", index=0))
    d = diff(before, s.doc)
    assert d["from"] == before.v and d["to"] == s.v
    assert d["added"] == ["new"]
    assert d["removed"] == ["gone"]
    assert d["changed"] == {
        "e1": {"x": [1.0, 2.0], "w": [None, 4.0], "fill": ["#ffffff", None]},
        "e3": {"layer": ["L1", "L2"]},
    }
    assert d["layers"] == {
        "added": ["L3"],
        "removed": [],
        "changed": {"L1": {"name": ["L1", "Base"], "opacity": [1.0, 0.5]}},
    }
    assert roundtrip(d) == d


def test_diff_reports_real_moves_not_shifts() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    for eid in "abcdef":
        s.op("a", rect(eid, "L1"))
    before = s.doc
    s.op("a", {"kind": "element.remove", "element": "a"})  # everything above shifts down
    s.op("a", {"kind": "element.move", "element": "f", "index": 0})
    d = diff(before, s.doc)
    assert d["removed"] == ["a"]
    assert d["changed"] == {"f": {"index": [5, 0]}}


def test_diff_layer_moves_and_removal() -> None:
    s = Session()
    for lid in ["L1", "L2", "L3", "L4"]:
        s.op("a", layer_add(lid))
    before = s.doc
    s.op("a", {"kind": "layer.move", "layer": "L4", "index": 0})
    s.op("a", {"kind": "layer.remove", "layer": "L2"})
    d = diff(before, s.doc)
    assert d["layers"] == {"added": [], "removed": ["L2"], "changed": {"L4": {"index": [3, 0]}}}


def test_diff_shape_change_under_the_same_id() -> None:
    s = Session()
    s.op("a", layer_add("L1"))
    s.op("a", rect("e1", "L1", x=1))
    v = s.v
    s.op("a", {"kind": "element.remove", "element": "e1"})
    s.op("a", {"kind": "element.add", "element": "e1", "layer": "L1", "shape": "text",
               "props": {"text": "t", "x": 1}})  # fmt: skip
    d = diff(replay("d1", s.events[:v]).doc, s.doc)
    assert d["changed"] == {"e1": {"shape": ["rect", "text"], "text": [None, "t"]}}
