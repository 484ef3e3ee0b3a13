"""The co-editor in headless Chromium: people drawing together, a viewer, offline and
reload, undo, history, a rejected edit. Each test fails on any console error
(conftest.py ``users``)."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
import time
from collections import Counter
from typing import Any

from tests.browser.conftest import ROOT, Server, User, elements, zigzag


def assert_converged(server: Server, doc: str, *people: User) -> dict[str, Any]:
    """Every page settled on the same state, equal to the server's, painted alike."""
    v = max(p.settled()["v"] for p in people)
    states = [p.settled(v) for p in people]
    served = server.state(doc, v)
    assert served["v"] == v
    for person, state in zip(people, states, strict=True):
        assert state == served["state"], f"{person.name}'s canvas differs from the server's"
    hashes = {p.js("window.atelier.documentHash(800, 600)") for p in people}
    assert len(hashes) == 1, "the canvases are painted differently"
    return states[0]


def test_two_people_draw_at_once_and_converge(users: Any, server: Server) -> None:
    doc = server.create_doc("alice", "Poster", bob="editor", carol="viewer")
    alice, bob, carol = users("alice"), users("bob"), users("carol")
    alice.open(doc)
    bob.open(doc)
    carol.open(doc)
    bob.page.fill("#color", "#e11d48")
    ox_a, oy_a = alice.origin()
    ox_b, oy_b = bob.origin()

    # Interleaved gestures, nobody waiting for an answer: strokes, then shapes.
    for round_ in range(3):
        a_pts = zigzag(60, 60 + 90 * round_)
        b_pts = zigzag(420, 60 + 90 * round_)
        alice.page.mouse.move(ox_a + a_pts[0][0], oy_a + a_pts[0][1])
        bob.page.mouse.move(ox_b + b_pts[0][0], oy_b + b_pts[0][1])
        alice.page.mouse.down()
        bob.page.mouse.down()
        for (ax, ay), (bx, by) in zip(a_pts[1:], b_pts[1:], strict=True):
            alice.page.mouse.move(ox_a + ax, oy_a + ay, steps=2)
            bob.page.mouse.move(ox_b + bx, oy_b + by, steps=2)
        if round_ == 0:
            # Bob's stroke is not stored yet, but Alice sees it grow (presence).
            alice.wait(
                "window.atelier.peers().some(p => p.user === 'bob' && p.state.draft"
                " && p.state.draft.props.points.length >= 3)"
            )
            assert not [e for e in server.events(doc) if e["actor"] == "bob"]
        alice.page.mouse.up()
        bob.page.mouse.up()
    alice.tool("rect")
    bob.tool("ellipse")
    bob.page.fill("#fill", "#fde68a")
    alice.drag(100, 420, 220, 520)
    bob.drag(460, 420, 600, 500)
    alice.tool("line")
    alice.drag(250, 420, 380, 560)

    state = assert_converged(server, doc, alice, bob, carol)
    assert len(state["layers"]) == 1  # both started on an empty document: one first layer
    shapes = Counter(e["shape"] for e in elements(state).values())
    assert shapes == {"stroke": 6, "rect": 1, "ellipse": 1, "line": 1}

    # The others' cursors, with names, for the screenshots (and docs/img/editor.png).
    alice.tool("select")
    bob.tool("pen")
    alice.hover(330, 300)
    bob.hover(560, 250)
    carol.hover(700, 420)
    alice.wait("window.atelier.peers().filter(p => p.state.cursor).length === 2")
    bob.wait("window.atelier.peers().filter(p => p.state.cursor).length === 2")
    time.sleep(0.2)  # the last presence frame painted
    # Within a second (the bar): a cursor that moves, a stroke that ends.
    started = time.monotonic()
    carol.hover(640, 380)
    alice.wait("window.atelier.peers().some(p => p.user === 'carol' && p.state.cursor[0] === 640)")
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    bob.stroke(zigzag(700, 120, n=3))
    alice.wait("window.atelier.state().layers[0].elements.length === 10")
    assert time.monotonic() - started < 1.0
    carol.hover(700, 420)
    alice.wait("window.atelier.peers().some(p => p.user === 'carol' && p.state.cursor[0] === 700)")
    # Bob in the middle of a stroke: Alice sees it grow under his cursor.
    ox_b, oy_b = bob.origin()
    bob.page.mouse.move(ox_b + 660, oy_b + 300)
    bob.page.mouse.down()
    for i in range(1, 9):
        bob.page.mouse.move(ox_b + 660 + 22 * i, oy_b + 300 + (i % 3) * 25 + 4 * i, steps=2)
    alice.wait(
        "window.atelier.peers().some(p => p.user === 'bob' && p.state.draft"
        " && p.state.draft.props.points.length >= 8)"
    )
    time.sleep(0.2)
    shot = alice.screenshot("two-users-alice.png")
    bob.screenshot("two-users-bob.png")
    bob.page.mouse.up()
    assert_converged(server, doc, alice, bob, carol)
    if os.environ.get("ATELIER_WRITE_DOCS") == "1":  # refresh docs/img/editor.png
        shutil.copyfile(shot, ROOT / "docs" / "img" / "editor.png")


def test_viewer_sees_edits_live_and_cannot_edit(users: Any, server: Server) -> None:
    doc = server.create_doc("alice", "Show", carol="viewer")
    alice, carol = users("alice"), users("carol")
    alice.open(doc)
    carol.open(doc)
    assert carol.js("window.atelier.role()") == "viewer"
    assert carol.page.locator("#view-only").is_visible()
    assert carol.page.locator("#view-only-mark").is_visible()
    for tool in ("pen", "rect", "ellipse", "line", "text", "select"):
        if tool != "select":
            assert not carol.page.locator(f"[data-tool={tool}]").is_visible()
    assert not carol.page.locator("#layer-add").is_visible()

    alice.stroke(zigzag(100, 100))
    v = alice.settled()["v"]
    carol.wait("window.atelier.state().v >= arg", v)
    assert carol.state() == alice.state()

    # Carol's attempts change nothing: the pointer pans, the keys do nothing.
    carol.stroke(zigzag(200, 200))
    carol.page.keyboard.press("Control+z")
    carol.page.keyboard.press("Delete")
    assert carol.pending() == []
    time.sleep(0.3)
    assert server.state(doc, v)["v"] == v
    assert_converged(server, doc, alice, carol)


def test_offline_edits_are_delivered_exactly_once(users: Any, server: Server) -> None:
    doc = server.create_doc("alice", "Train", bob="editor")
    alice, bob = users("alice"), users("bob")
    alice.open(doc)
    bob.open(doc)
    alice.stroke(zigzag(60, 60))
    alice.settled()

    alice.context.set_offline(True)
    alice.wait("window.atelier.status() === 'offline'")
    alice.stroke(zigzag(60, 160))
    alice.tool("rect")
    alice.drag(300, 100, 400, 180)
    alice.tool("pen")
    alice.stroke(zigzag(60, 260))
    queued = alice.pending()
    assert len(queued) == 3
    assert "3 queued" in alice.page.inner_text("#conn")
    assert len(elements(alice.state())) == 4  # applied locally, pending
    bob.stroke(zigzag(500, 300))  # meanwhile, online
    bob.settled()

    alice.context.set_offline(False)
    state = assert_converged(server, doc, alice, bob)
    assert len(elements(state)) == 5
    ids = Counter(e["id"] for e in server.events(doc) if e["actor"] == "alice")
    for op in queued:
        assert ids[op["id"]] == 1, f"offline op {op['id']} was applied {ids[op['id']]} times"
    added = Counter(
        e["op"].get("element") for e in server.events(doc) if e["op"]["kind"] == "element.add"
    )
    assert set(added.values()) == {1}


def test_a_reload_keeps_the_queued_edits(users: Any, server: Server) -> None:
    doc = server.create_doc("alice", "Reload")
    alice = users("alice")
    # The websocket goes through a switch: off, the page's socket opens and hears
    # nothing (as behind a dead proxy), so its edits stay queued while the page reloads.
    through = {"on": True}

    def route(ws: Any) -> None:
        if through["on"]:
            ws.connect_to_server()

    alice.page.route_web_socket(re.compile(r".*/ws/documents/.*"), route)
    alice.open(doc)
    alice.stroke(zigzag(60, 60))
    v = alice.settled()["v"]

    alice.context.set_offline(True)
    alice.wait("window.atelier.status() === 'offline'")
    alice.stroke(zigzag(60, 160))
    alice.stroke(zigzag(60, 260))
    queued = [op["id"] for op in alice.pending()]
    assert len(queued) == 2
    through["on"] = False
    alice.context.set_offline(False)

    alice.page.reload()
    alice.wait("window.atelier && window.atelier.state() !== null")
    assert [op["id"] for op in alice.pending()] == queued
    assert len(elements(alice.state())) == 3  # the last state, with the queue on top
    assert alice.js("window.atelier.status()") != "live"
    assert server.state(doc, v)["v"] == v  # nothing was sent

    through["on"] = True
    alice.page.reload()
    state = alice.settled(v + 2)
    assert len(elements(state)) == 3
    ids = Counter(e["id"] for e in server.events(doc))
    assert all(ids[i] == 1 for i in queued)
    assert_converged(server, doc, alice)


def test_undo_leaves_the_other_persons_edits(users: Any, server: Server) -> None:
    doc = server.create_doc("alice", "Undo", bob="editor")
    alice, bob = users("alice"), users("bob")
    alice.open(doc)
    bob.open(doc)
    alice.stroke(zigzag(60, 60))
    a1 = set(elements(alice.settled()))
    bob.wait("window.atelier.state().v >= arg", alice.state()["v"])
    bob.stroke(zigzag(60, 200))
    b1 = set(elements(bob.settled())) - a1
    alice.wait("window.atelier.state().v >= arg", bob.state()["v"])
    alice.tool("rect")
    alice.drag(300, 60, 400, 160)
    a2 = set(elements(alice.settled())) - a1 - b1
    assert len(a1) == len(b1) == len(a2) == 1

    alice.page.locator("#canvas").click(position={"x": 700, "y": 500})  # focus the page
    alice.page.keyboard.press("Control+z")
    alice.wait(
        "window.atelier.pending().length === 0 && window.atelier.state().layers"
        ".every(l => l.elements.every(e => e.shape !== 'rect'))"
    )
    assert set(elements(assert_converged(server, doc, alice, bob))) == a1 | b1
    alice.page.keyboard.press("Control+z")
    alice.wait("window.atelier.pending().length === 0")
    assert set(elements(assert_converged(server, doc, alice, bob))) == b1
    alice.page.keyboard.press("Control+Shift+z")
    alice.wait("window.atelier.pending().length === 0")
    assert set(elements(assert_converged(server, doc, alice, bob))) == a1 | b1


def test_the_history_slider_shows_an_earlier_state(users: Any, server: Server) -> None:
    doc = server.create_doc("alice", "History", bob="editor")
    alice, bob = users("alice"), users("bob")
    alice.open(doc)
    bob.open(doc)
    alice.stroke(zigzag(60, 60))
    first = alice.settled()
    alice.stroke(zigzag(60, 160))
    alice.stroke(zigzag(60, 260))
    live = alice.settled()
    assert len(elements(live)) == 3

    alice.page.click("#history-btn")
    alice.page.fill("#version-name", "three strokes")
    alice.page.click("#version-form button[type=submit]")
    alice.page.wait_for_selector("#version-list li:has-text('three strokes')")
    alice.page.locator("#history-slider").fill(str(first["v"]))
    alice.wait("window.atelier.preview() && window.atelier.preview().v === arg", first["v"])
    assert alice.js("window.atelier.preview()") == first
    assert alice.page.locator("#preview-banner").is_visible()
    # The live session goes on underneath: Bob's edit arrives while Alice looks back.
    bob.stroke(zigzag(400, 60))
    now = bob.settled()
    alice.wait("window.atelier.state().v >= arg", now["v"])
    assert len(elements(alice.state())) == 4
    assert alice.js("window.atelier.preview().v") == first["v"]
    if server.worker:
        alice.page.wait_for_selector("#activity-list li")

    alice.page.click("#preview-restore")
    alice.wait("window.atelier.preview() === null")
    restored = assert_converged(server, doc, alice, bob)
    assert set(elements(restored)) == set(elements(first))


def test_a_rejected_edit_rolls_back_with_a_message(users: Any, server: Server) -> None:
    doc = server.create_doc("alice", "Clash", bob="editor")
    alice, bob = users("alice"), users("bob")
    alice.open(doc)
    bob.open(doc)
    alice.tool("rect")
    alice.drag(100, 100, 200, 200)
    (rect,) = elements(alice.settled())
    bob.wait("window.atelier.state().v >= arg", alice.state()["v"])

    # Alice moves the rectangle while offline; meanwhile Bob deletes it.
    alice.context.set_offline(True)
    alice.wait("window.atelier.status() === 'offline'")
    alice.tool("select")
    alice.drag(150, 150, 350, 250)
    moved = elements(alice.state())[rect]["props"]
    assert (moved["x"], moved["y"]) == (300, 200)
    assert len(alice.pending()) == 1
    bob.tool("select")
    bob.page.locator("#canvas").click(position={"x": 150, "y": 150})
    bob.page.keyboard.press("Delete")
    bob.settled()

    alice.context.set_offline(False)
    alice.page.wait_for_selector("#notice:not(.hidden)")
    notice = alice.page.inner_text("#notice")
    assert "element.update" in notice and "conflict" in notice, notice
    state = assert_converged(server, doc, alice, bob)
    assert elements(state) == {}


def test_documents_are_created_listed_shared_and_opened(users: Any, server: Server) -> None:
    alice = users("alice")
    alice.page.fill("#new-title", "Shared poster")
    alice.page.click("#create-doc button[type=submit]")
    alice.wait("window.atelier.status() === 'live'")
    doc = alice.page.evaluate("() => location.hash").removeprefix("#/d/")
    assert alice.js("window.atelier.role()") == "owner"
    alice.stroke(zigzag(80, 80))
    alice.settled()
    alice.page.click("#share-btn")
    alice.page.fill("#share-user", "dave")
    alice.page.select_option("#share-role", "viewer")
    alice.page.click("#share-form button[type=submit]")
    alice.page.wait_for_selector("#share-result:has-text('dave is now a viewer')")

    dave = users("dave")
    if server.worker:
        # The catalog is the read worker's view: it lists the document once projected.
        row = dave.page.locator(f"tr[data-doc='{doc}']")
        deadline = time.monotonic() + 10
        while not row.count() and time.monotonic() < deadline:
            time.sleep(0.3)
            dave.page.reload()
            dave.page.wait_for_selector("#documents:not(.hidden)")
        assert "Shared poster" in row.inner_text()
        row.click()
    else:  # no read worker in this tree: the catalog stays empty; open by id
        dave.page.fill("#open-id", doc)
        dave.page.click("#open-doc button[type=submit]")
    dave.wait("window.atelier.status() === 'live'")
    assert dave.js("window.atelier.role()") == "viewer"
    assert dave.page.locator("#view-only").is_visible()
    assert dave.state() == alice.state()


def test_a_token_in_the_fragment_signs_in(browser: Any, server: Server) -> None:
    doc = server.create_doc("alice", "Linked", erin="editor")
    context = browser.new_context()
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}/#/d/{doc}?token={server.token('erin', 'Erin')}")
        page.wait_for_function("() => window.atelier.status() === 'live'")
        assert page.evaluate("() => location.hash") == f"#/d/{doc}"  # the token left the URL
        assert page.inner_text("#me") == "Erin (erin)"
        assert page.evaluate("() => window.atelier.role()") == "editor"
    finally:
        context.close()
    assert not errors


def test_shapes_text_selection_layers_zoom_and_pan(users: Any, server: Server) -> None:
    doc = server.create_doc("alice", "Tools")
    alice = users("alice")
    alice.open(doc)
    page = alice.page
    alice.tool("rect")
    alice.drag(100, 100, 200, 180)
    alice.tool("text")
    page.locator("#canvas").click(position={"x": 300, "y": 100})
    page.keyboard.type("Hello")
    page.keyboard.press("Enter")
    state = alice.settled()
    by_shape = {e["shape"]: e for e in elements(state).values()}
    assert by_shape["text"]["props"]["text"] == "Hello"
    rect = by_shape["rect"]["id"]

    # Select, resize by the handle, move, recolour.
    alice.tool("select")
    page.locator("#canvas").click(position={"x": 150, "y": 140})
    alice.drag(204, 184, 254, 234)  # the handle sits 4 px out of the box's corner
    props = elements(alice.settled())[rect]["props"]
    assert (props["w"], props["h"]) == (150, 130)
    alice.drag(150, 140, 170, 150)
    page.fill("#color", "#16a34a")
    props = elements(alice.settled())[rect]["props"]
    assert (props["x"], props["y"], props["color"]) == (120, 110, "#16a34a")

    # Layers: add, rename, hide, lock, opacity, reorder; then delete the rectangle.
    page.click("#layer-add")
    alice.settled()
    top = page.locator("#layer-list li").first
    top.locator(".name").dblclick()
    page.keyboard.press("Control+a")
    page.keyboard.type("Sketch")
    page.keyboard.press("Enter")
    alice.wait("window.atelier.state().layers.at(-1).name === 'Sketch'")
    top = page.locator("#layer-list li").first
    top.locator(".vis").click()
    alice.wait("window.atelier.state().layers.at(-1).visible === false")
    page.locator("#layer-list li").first.locator(".lock").click()
    alice.wait("window.atelier.state().layers.at(-1).locked === true")
    page.locator("#layer-list li").first.locator(".opacity").fill("0.5")
    alice.wait("window.atelier.state().layers.at(-1).opacity === 0.5")
    page.locator("#layer-list li").first.locator(".down").click()
    alice.wait("window.atelier.state().layers[0].name === 'Sketch'")
    page.locator("#canvas").click(position={"x": 200, "y": 200})
    page.keyboard.press("Delete")
    alice.wait("!window.atelier.state().layers.some(l => l.elements.some(e => e.id === arg))", rect)
    assert_converged(server, doc, alice)

    # The title, renamed in place.
    page.dblclick("#doc-title")
    page.keyboard.press("Control+a")
    page.keyboard.type("Tools, renamed")
    page.keyboard.press("Enter")
    alice.wait("window.atelier.state().title === 'Tools, renamed'")
    page.wait_for_selector("#doc-title:has-text('Tools, renamed')")
    assert_converged(server, doc, alice)

    # Zoom and pan change the view, not the document.
    v = alice.state()["v"]
    page.click("#zoom-in")
    assert alice.js("window.atelier.view().zoom") == 1.25
    alice.tool("hand")
    alice.drag(400, 400, 300, 350)
    view = alice.js("window.atelier.view()")
    assert view["x"] != 0 and view["y"] != 0
    assert alice.state()["v"] == v


def test_an_edit_on_a_layer_locked_meanwhile_rolls_back(users: Any, server: Server) -> None:
    doc = server.create_doc("alice", "Locked", bob="editor")
    alice, bob = users("alice"), users("bob")
    alice.open(doc)
    bob.open(doc)
    alice.stroke(zigzag(60, 60))
    v = alice.settled()["v"]
    bob.wait("window.atelier.state().v >= arg", v)

    alice.context.set_offline(True)
    alice.wait("window.atelier.status() === 'offline'")
    alice.stroke(zigzag(60, 200))
    assert len(elements(alice.state())) == 2
    bob.page.locator("#layer-list li").first.locator(".lock").click()
    bob.wait("window.atelier.state().layers[0].locked === true")
    bob.settled()

    alice.context.set_offline(False)
    alice.page.wait_for_selector("#notice:not(.hidden)")
    notice = alice.page.inner_text("#notice")
    assert "element.add" in notice and "locked" in notice, notice
    state = assert_converged(server, doc, alice, bob)
    assert len(elements(state)) == 1
    assert state["layers"][0]["locked"] is True


def _layer_op(rng: random.Random, kind: str, layers: list[str], n: int) -> dict[str, Any]:
    if kind == "layer.add":
        op: dict[str, Any] = {"kind": kind, "layer": f"L{n}", "name": f"layer {n}"}
        if rng.random() < 0.5:
            op["index"] = rng.randrange(len(layers) + 2)
        return op
    layer = rng.choice(layers)
    if kind == "layer.update":
        key, value = rng.choice(
            [
                ("name", f"n{n}"),
                ("visible", rng.random() < 0.5),
                ("locked", rng.random() < 0.2),
                ("opacity", rng.choice([0.25, 0.5, 1.0])),
            ]
        )
        return {"kind": kind, "layer": layer, "set": {key: value}}
    if kind == "layer.move":
        return {"kind": kind, "layer": layer, "index": rng.randrange(len(layers) + 1)}
    return {"kind": kind, "layer": layer}


_PROPS: dict[str, dict[str, Any]] = {
    "rect": {"w": 40, "h": 30, "fill": "#a5b4fc"},
    "ellipse": {"w": 50, "h": 20, "color": "#e11d48"},
    "line": {"x2": 300, "y2": 200},
    "text": {"text": "t", "size": 14},
    "stroke": {"points": [[0, 0, 0.5], [10, 12.345, 0.7], [20, 0, 1]], "width": 3},
}


def _element_op(
    rng: random.Random, kind: str, layers: list[str], els: list[str], n: int
) -> dict[str, Any]:
    if kind == "element.add":
        shape = rng.choice(list(_PROPS))
        props = {"x": rng.randrange(600), "y": rng.randrange(400), **_PROPS[shape]}
        op: dict[str, Any] = {"kind": kind, "element": f"e{n}", "layer": rng.choice(layers)}
        op |= {"shape": shape, "props": props}
        if rng.random() < 0.3:
            op["index"] = rng.randrange(4)
        return op
    element = rng.choice(els)
    if kind == "element.update":
        choices: list[tuple[str, Any]] = [("x", rng.randrange(600)), ("y", rng.randrange(400))]
        choices += [("opacity", 0.5), ("color", "#16a34a"), ("width", 2), ("fill", None)]
        key, value = rng.choice(choices)
        return {"kind": kind, "element": element, "set": {key: value}}
    if kind == "element.move":
        op = {"kind": kind, "element": element, "index": rng.randrange(4)}
        if rng.random() < 0.6:
            op["layer"] = rng.choice(layers)
        return op
    return {"kind": kind, "element": element}


_PRIMITIVE = (
    ["element.add"] * 5
    + ["element.update"] * 4
    + ["element.move"] * 2
    + ["element.remove", "layer.add", "layer.update", "layer.move", "layer.remove"]
    + ["doc.rename"]
)


def random_op(
    rng: random.Random, state: dict[str, Any], n: int, primitive: bool = False
) -> dict[str, Any]:
    """A random op of any kind against ``state`` (mostly valid; some conflict)."""
    layers = [layer["id"] for layer in state["layers"]]
    els = list(elements(state))
    kind = rng.choice(_PRIMITIVE if primitive else [*_PRIMITIVE, "batch", "undo", "undo", "redo"])
    if not layers or (kind.startswith("element") and kind != "element.add" and not els):
        kind = "layer.add" if not layers else "element.add"
    if kind.startswith("layer."):
        return _layer_op(rng, kind, layers, n)
    if kind.startswith("element."):
        return _element_op(rng, kind, layers, els, n)
    if kind == "batch":
        count = rng.randrange(1, 4)
        return {
            "kind": kind,
            "ops": [random_op(rng, state, n * 10 + i, True) for i in range(count)],
        }
    if kind == "doc.rename":
        return {"kind": kind, "title": f"title {n}"}
    return {"kind": kind}  # undo, redo


def test_the_page_applies_every_kind_of_event_as_the_server(users: Any, server: Server) -> None:
    """model.js applyEvent against app/domain: a few hundred random ops of every kind
    (batches, moves with indexes, undo, redo, a restore) by two people over HTTP, while
    the page follows them live, event by event."""
    doc = server.create_doc("alice", "Fold", bob="editor", carol="viewer")
    carol = users("carol")
    carol.open(doc)
    rng = random.Random(20261126)
    clients = {who: server.http(who) for who in ("alice", "bob")}
    state = server.state(doc)["state"]
    applied = 0
    try:
        undid = None
        for n in range(240):
            if undid and rng.random() < 0.5:
                who, op = undid, {"kind": "redo"}
            else:
                who, op = rng.choice(["alice", "bob"]), random_op(rng, state, n)
            r = clients[who].post(f"/api/documents/{doc}/ops", json={"id": f"f{n}", "op": op})
            assert r.status_code in (200, 409), r.text
            undid = who if op["kind"] == "undo" and r.status_code == 200 else None
            if r.status_code == 200:
                applied += 1
                if applied % 3 == 0:  # ids a little stale at times: some ops conflict
                    state = server.state(doc)["state"]
            if n == 200:
                r = clients["alice"].post(f"/api/documents/{doc}/restore", json={"v": 40})
                assert r.status_code == 200, r.text
                state = server.state(doc)["state"]
    finally:
        for client in clients.values():
            client.close()
    assert applied > 120
    events = server.events(doc)
    kinds = Counter(e["op"]["kind"] for e in events)
    assert {"batch", "undo", "redo", "restore", "element.move", "layer.move"} <= set(kinds)
    served = server.state(doc, events[-1]["v"])
    assert served["v"] == events[-1]["v"]
    carol.wait("window.atelier.state().v >= arg", served["v"])
    assert carol.state() == served["state"]


def test_a_dropped_connection_resumes_with_backoff_and_since(users: Any, server: Server) -> None:
    doc = server.create_doc("alice", "Restart")
    alice = users("alice")
    through = {"on": True}
    attempts: list[float] = []
    hellos: list[dict[str, Any]] = []
    pages: list[Any] = []

    def route(ws: Any) -> None:
        attempts.append(time.monotonic())
        if not through["on"]:
            ws.close(code=1012, reason="restarting")  # as a gateway that restarts
            return
        upstream = ws.connect_to_server()
        pages.append(ws)

        def from_page(message: str | bytes) -> None:
            if isinstance(message, str) and '"hello"' in message:
                hellos.append(json.loads(message))
            upstream.send(message)

        ws.on_message(from_page)

    alice.page.route_web_socket(re.compile(r".*/ws/documents/.*"), route)
    alice.open(doc)
    alice.stroke(zigzag(60, 60))
    v = alice.settled()["v"]

    through["on"] = False
    dropped = len(attempts)
    pages[-1].close(code=1012, reason="restarting")
    alice.wait("window.atelier.status() === 'reconnecting'")
    alice.stroke(zigzag(60, 160))
    alice.stroke(zigzag(60, 260))
    queued = [op["id"] for op in alice.pending()]
    assert len(queued) == 2
    assert "2 queued" in alice.page.inner_text("#conn")
    # Three refused attempts, each after a longer wait (0.25 s, 0.5 s, 1 s, +-25 %).
    deadline = time.monotonic() + 10
    while len(attempts) < dropped + 3 and time.monotonic() < deadline:
        alice.page.wait_for_timeout(50)
    tries = attempts[dropped:]
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert len(gaps) >= 2 and gaps[1] > gaps[0] * 1.1, f"no backoff: {gaps}"

    through["on"] = True
    state = alice.settled(v + 2)
    assert hellos[-1]["since"] == v  # resumed from what it had, not from scratch
    ids = Counter(e["id"] for e in server.events(doc))
    assert all(ids[i] == 1 for i in queued)
    assert len(elements(state)) == 3
    assert_converged(server, doc, alice)
