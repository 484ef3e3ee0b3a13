"""Property tests over random histories from several users (hypothesis).

(1) decide/evolve/apply are deterministic; (2) replay of the recorded events (also after
an orjson round trip of every op and effect) equals the step-by-step model, and the
clients' view (apply over the event ops) equals the server's state; (3) undo reverts
exactly the undoing user's op where it still applies and nothing of anyone else's;
(4) restore to any version gives that version's state.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from app.domain import (
    Document,
    decide,
    decide_restore,
    evolve,
    model_from_json,
    model_to_json,
    parse_op,
    replay,
)
from app.domain.model import find_element, layer_positions
from app.errors import Conflict
from tests.unit.domain.strategies import INTERLEAVED_KINDS, PRIMITIVE_KINDS, Driver
from tests.unit.domain.support import (
    assert_ops_valid,
    check_indexes,
    fold_apply,
    json_events,
    roundtrip,
    same_state,
)

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(st.data())
def test_histories_are_deterministic_and_replay_exactly(data: st.DataObject) -> None:
    d = Driver(data)
    d.run(data.draw(st.integers(1, 40)))
    s = d.session
    # (1) the same inputs give equal outputs
    for step in d.steps:
        again = decide(step.before, parse_op(step.raw), step.actor, "editor")
        assert again == step.decision
        v = step.before.v + 1
        assert evolve(step.before, v, step.actor, again.op, again.effect) == step.after
    # (2) replay, also after JSON, and the clients' view
    assert replay("d1", s.events) == s.model
    assert replay("d1", json_events(s.events)) == s.model
    assert same_state(fold_apply(s.events), s.doc)
    assert same_state(fold_apply(json_events(s.events)), s.doc)
    assert model_from_json(roundtrip(model_to_json(s.model))) == s.model
    check_indexes(s.doc)
    # every primitive op inside an undo or redo is a valid op where it lands
    for step in d.steps:
        if step.decision.kind in ("undo", "redo"):
            assert step.decision.op["ops"]
            assert_ops_valid(step.before.doc, step.decision.op["ops"])
    for v, doc in d.states.items():
        assert doc.v == v


def _element_view(doc: Document) -> dict[str, tuple[str, dict[str, Any]]]:
    return {e.id: (layer.id, dict(e.props)) for layer in doc.layers for e in layer.elements}


def _layer_view(doc: Document) -> dict[str, tuple[Any, ...]]:
    return {ly.id: (ly.name, ly.visible, ly.locked, ly.opacity) for ly in doc.layers}


def _touched(records: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(element ids, layer ids) that effect records mention."""
    elements: set[str] = set()
    layers: set[str] = set()
    for r in records:
        t = r["t"]
        if t.startswith("element."):
            el = r["element"]
            elements.add(el["id"] if isinstance(el, dict) else el)
            if "layer" in r:
                layers.add(r["layer"])
            if t == "element.move":
                layers.update({r["from"][0], r["to"][0]})
        elif t == "layer.remove":
            layers.add(r["layer"]["id"])
            elements.update(e["id"] for e in r["layer"]["elements"])
        elif t.startswith("layer."):
            layers.add(r["layer"])
    return elements, layers


def _sets_by(events: list[tuple[int, str, dict[str, Any], dict[str, Any]]]) -> dict[Any, Any]:
    """The last value each (element, prop), (layer, field) or title was set to by events."""
    out: dict[Any, Any] = {}

    def walk(op: dict[str, Any]) -> None:
        kind = op["kind"]
        if kind in ("batch", "undo", "redo", "restore"):
            for sub in op["ops"]:
                walk(sub)
        elif kind == "element.update":
            for k, v in op["set"].items():
                out[("e", op["element"], k)] = v
        elif kind == "layer.update":
            for k, v in op["set"].items():
                out[("l", op["layer"], k)] = v
        elif kind == "doc.rename":
            out[("title",)] = op["title"]
        elif kind in ("element.move", "element.add"):
            out[("in", op["element"])] = op["layer"]

    for _, _, op, _ in events:
        walk(op)
    return out


@SETTINGS
@given(st.data())
def test_undo_reverts_only_the_users_own_op(data: st.DataObject) -> None:
    d = Driver(data)
    d.run(data.draw(st.integers(0, 25)))
    s = d.session
    # alice's op X, of a kind drawn up front so every kind gets its share
    x_kind = data.draw(st.sampled_from([*sorted(set(PRIMITIVE_KINDS)), "batch"]))
    before_x = s.doc
    x = None
    for _ in range(10):
        x = d.random_step(("alice",), [x_kind])
        if x is not None:
            break
    assume(x is not None)
    assert x is not None
    x_event = s.events[-1]
    x_elements, x_layers = _touched(x.decision.effect["records"])
    # other users' ops in between, mostly on what X touched
    d.focus_elements, d.focus_layers = sorted(x_elements), sorted(x_layers)
    d.focus_props = sorted({key[2] for key in _sets_by([x_event]) if key[0] == "e"})
    first_other = len(s.events)
    others_kinds = INTERLEAVED_KINDS + ([x_kind] * 8 if x_kind != "batch" else [])
    d.run(data.draw(st.integers(0, 8)), ("bob", "carol"), others_kinds)
    others = s.events[first_other:]
    before_undo = s.doc
    if not others:
        event("undo with no interleaving")
        s.op("alice", {"kind": "undo"})  # nobody else did anything: always applies, exactly
        assert same_state(s.doc, before_x)
        return
    try:
        u = s.op("alice", {"kind": "undo"})
    except Conflict:
        event("undo after others: nothing applied")
        return  # nothing applied; nothing was stored
    event("undo after others: applied")
    assert u.op["of"] == x.after.v
    _check_others_spared(before_undo, s.doc, x_event, (x_elements, x_layers), others)


def _check_others_spared(
    before: Document,
    after: Document,
    x_event: Any,
    x_touched: tuple[set[str], set[str]],
    others: list[Any],
) -> None:
    """After alice's undo of X: what X did not touch is as it was; what others set since
    X stays, unless it holds the value X gave it; what others added is still there."""
    x_elements, x_layers = x_touched
    old_e, new_e = _element_view(before), _element_view(after)
    for eid, view in old_e.items():
        if eid not in x_elements:
            assert new_e.get(eid) == view, eid
    old_l, new_l = _layer_view(before), _layer_view(after)
    for lid, lview in old_l.items():
        if lid not in x_layers:
            assert new_l.get(lid) == lview, lid
    x_sets = _sets_by([x_event])
    for key, value in _sets_by(others).items():
        if x_sets.get(key, object()) == value:
            continue
        what, item = key[0], key[-1] if key[0] == "title" else key[1]
        if what == "title":
            assert after.title == before.title
        elif what == "l" and item in old_l and item in new_l:
            i = ("name", "visible", "locked", "opacity").index(key[2])
            assert new_l[item][i] == old_l[item][i]
        elif what == "e" and item in old_e and item in new_e:
            assert new_e[item][1].get(key[2]) == old_e[item][1].get(key[2])
        elif what == "in" and item in old_e and item in new_e:
            assert new_e[item][0] == old_e[item][0]  # still in the layer others put it
    for eid in _added_by(others):
        if eid in old_e:
            assert eid in new_e or eid in x_elements


def _added_by(events: list[Any]) -> list[str]:
    ops = [sub for _, _, op, _ in events for sub in op.get("ops", [op])]
    return [op["element"] for op in ops if op["kind"] == "element.add"]


@SETTINGS
@given(st.data())
def test_restore_gives_the_state_at_that_version(data: st.DataObject) -> None:
    d = Driver(data)
    d.run(data.draw(st.integers(1, 35)))
    s = d.session
    to_v = data.draw(st.integers(1, s.v))
    target = d.states[to_v]
    decision = decide_restore(s.model, target, to_v, "bob", "owner")
    end = assert_ops_valid(s.doc, decision.op["ops"])
    assert same_state(end, target)
    s.commit("bob", decision)
    assert same_state(s.doc, target)
    check_indexes(s.doc)
    assert replay("d1", json_events(s.events)) == s.model
    # and life goes on: more edits and undos after the restore replay too
    d.run(data.draw(st.integers(0, 10)))
    assert replay("d1", json_events(s.events)) == s.model
    for layer in s.doc.layers:
        assert layer_positions(s.doc)[layer.id] is not None
        for e in layer.elements:
            assert find_element(s.doc, e.id) is not None
