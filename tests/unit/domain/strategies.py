"""Hypothesis strategies: random valid ops from several users against the evolving state.

Ops reference existing ids most of the time (so they mostly succeed and interact), and
sometimes missing ones (so conflicts are exercised too). Values come from small pools,
so users often set the same value, the edge of the undo rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from app.domain import Decision, Document, WriteModel, parse_op
from app.domain.schema import REQUIRED_PROPS, SHAPE_PROPS
from app.errors import Conflict, Invalid
from tests.unit.domain.support import Session

USERS = ("alice", "bob", "carol")
ASSET = "ab" * 32

NUMBERS = [0.0, 1.0, -2.5, 10.0]
VALUES: dict[str, list[Any]] = {
    "x": NUMBERS,
    "y": NUMBERS,
    "rotation": [0.0, 90.0],
    "x2": NUMBERS,
    "y2": NUMBERS,
    "opacity": [0.0, 0.25, 0.5, 1.0],
    "color": ["#000000", "#aabbcc80"],
    "fill": ["#ffffff", "#000000"],
    "width": [0.0, 2.0, 1000.0],
    "w": [0.0, 5.0],
    "h": [0.0, 5.0],
    "size": [1.0, 12.0],
    "text": ["", "hi", "hello"],
    "points": [[[0, 0, 0.5]], [[0, 0, 0.5], [1, 1, 0.5], [2, 0, 1]], [[5.555, 1, 0.1234]]],
    "asset": [ASSET, "cd" * 32],
}

TITLES = ["A", "B", "C", "D", "Poster"]

KINDS = (
    ["element.add"] * 6
    + ["element.update"] * 6
    + ["element.move"] * 2
    + ["element.remove"] * 2
    + ["layer.add"] * 3
    + ["layer.update"] * 3
    + ["layer.move", "layer.remove", "doc.rename"]
    + ["batch"] * 2
    + ["undo"] * 3
    + ["redo"]
)
PRIMITIVE_KINDS = [k for k in KINDS if k not in ("batch", "undo", "redo")]
# What other users do between an op and its undo: mostly edits of the same things.
INTERLEAVED_KINDS = (
    ["element.update"] * 8
    + ["layer.update"] * 3
    + ["doc.rename"] * 2
    + ["element.move", "element.remove", "element.add", "layer.move", "layer.add", "batch"]
    + ["undo", "redo"]
)


@dataclass
class Step:
    """A committed op: what was decided, against which model, and what came out."""

    actor: str
    raw: dict[str, Any]
    before: WriteModel
    decision: Decision
    after: WriteModel


@dataclass
class Driver:
    data: st.DataObject
    session: Session = field(default_factory=Session)
    counter: int = 0
    steps: list[Step] = field(default_factory=list)
    states: dict[int, Document] = field(default_factory=dict)
    rejected: int = 0
    # ids to prefer when picking (to make users collide on the same things)
    focus_elements: list[str] = field(default_factory=list)
    focus_layers: list[str] = field(default_factory=list)
    focus_props: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.states[self.session.v] = self.session.doc

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(strategy)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # --- picking ids -------------------------------------------------------------------

    def pick_layer(self, doc: Document) -> str:
        ids = [layer.id for layer in doc.layers]
        focus = [i for i in self.focus_layers if i in ids]
        if focus and self.draw(st.integers(0, 9)) < 8:
            return str(self.draw(st.sampled_from(focus)))
        if ids and self.draw(st.integers(0, 9)) < 9:
            return str(self.draw(st.sampled_from(ids)))
        return "Lghost"

    def pick_element(self, doc: Document) -> tuple[str, str]:
        items = [(e.id, e.shape) for layer in doc.layers for e in layer.elements]
        focus = [item for item in items if item[0] in self.focus_elements]
        if focus and self.draw(st.integers(0, 9)) < 8:
            eid, shape = self.draw(st.sampled_from(focus))
            return str(eid), str(shape)
        if items and self.draw(st.integers(0, 9)) < 9:
            eid, shape = self.draw(st.sampled_from(items))
            return str(eid), str(shape)
        return "eghost", "rect"

    def index(self) -> dict[str, int]:
        i = self.draw(st.one_of(st.none(), st.integers(0, 5)))
        return {} if i is None else {"index": i}

    def values(self, names: list[str], *, removable: bool) -> dict[str, Any]:
        focus = [n for n in self.focus_props if n in names]
        if focus and self.draw(st.integers(0, 9)) < 8:
            names = focus
        chosen = self.draw(
            st.lists(st.sampled_from(sorted(names)), min_size=1, max_size=3, unique=True)
        )
        out: dict[str, Any] = {}
        for name in chosen:
            if removable and name not in REQUIRED_PROPS and self.draw(st.integers(0, 4)) == 0:
                out[name] = None
            else:
                out[name] = self.draw(st.sampled_from(VALUES[name]))
        return out

    # --- ops -----------------------------------------------------------------------------

    def choose_kind(self, doc: Document, actor: str, kinds: list[str] | None) -> str:
        """A kind that has a fair chance to succeed in this state."""
        pool = kinds or KINDS
        if not doc.layers and "layer.add" in pool and self.draw(st.integers(0, 4)):
            return "layer.add"
        empty = not any(layer.elements for layer in doc.layers)
        if empty and "element.add" in pool and self.draw(st.integers(0, 2)):
            return "element.add"
        can_redo = bool(self.session.model.history(actor).redo)
        if can_redo and "redo" in pool and self.draw(st.integers(0, 2)) == 0:
            return "redo"
        return str(self.draw(st.sampled_from(pool)))

    def raw_op(
        self, doc: Document, kinds: list[str] | None = None, actor: str = "alice"
    ) -> dict[str, Any]:
        kind = self.choose_kind(doc, actor, kinds)
        if kind in ("undo", "redo"):
            return {"kind": kind}
        if kind == "batch":
            n = self.draw(st.integers(1, 4))
            return {"kind": "batch", "ops": [self.raw_op(doc, PRIMITIVE_KINDS) for _ in range(n)]}
        if kind == "doc.rename":
            return {"kind": kind, "title": self.draw(st.sampled_from(TITLES))}
        if kind == "layer.add":
            extra = self.draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "visible": st.booleans(),
                        "locked": st.sampled_from([False] * 5 + [True]),
                        "opacity": st.sampled_from([0.5, 1.0]),
                    },
                )
            )
            return {"kind": kind, "layer": self.fresh("L"), "name": "n", **self.index(), **extra}
        if kind == "layer.update":
            names = ["name", "visible", "locked", "opacity", "opacity", "name"]
            chosen = self.draw(
                st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)
            )
            pools: dict[str, list[Any]] = {
                "name": ["n", "m", "k"],
                "visible": [True, False],
                "locked": [False, False, False, True],
                "opacity": [0.25, 0.5, 0.75, 1.0],
            }
            values = {k: self.draw(st.sampled_from(pools[k])) for k in chosen}
            return {"kind": kind, "layer": self.pick_layer(doc), "set": values}
        if kind == "layer.move":
            return {
                "kind": kind,
                "layer": self.pick_layer(doc),
                "index": self.draw(st.integers(0, 4)),
            }
        if kind == "layer.remove":
            return {"kind": kind, "layer": self.pick_layer(doc)}
        if kind == "element.add":
            shape = self.draw(st.sampled_from(sorted(SHAPE_PROPS)))
            optional = sorted(SHAPE_PROPS[shape] - REQUIRED_PROPS)
            props = {k: VALUES[k][0] for k in SHAPE_PROPS[shape] & REQUIRED_PROPS}
            if self.draw(st.booleans()):
                props.update(self.values(optional, removable=False))
            eid = self.fresh("e") if self.draw(st.integers(0, 19)) else self.pick_element(doc)[0]
            layer = self.pick_layer(doc)
            return {"kind": kind, "element": eid, "layer": layer, "shape": shape, "props": props,
                    **self.index()}  # fmt: skip
        if kind == "element.update":
            eid, shape = self.pick_element(doc)
            names = sorted(SHAPE_PROPS[shape])
            if self.draw(st.integers(0, 19)) == 0:
                names = ["text" if shape != "text" else "w"]  # not a prop of this shape
            return {"kind": kind, "element": eid, "set": self.values(names, removable=True)}
        if kind == "element.move":
            eid, _ = self.pick_element(doc)
            layer = {"layer": self.pick_layer(doc)} if self.draw(st.booleans()) else {}
            return {"kind": kind, "element": eid, **layer, **self.index()}
        assert kind == "element.remove"
        return {"kind": kind, "element": self.pick_element(doc)[0]}

    # --- driving -------------------------------------------------------------------------

    def attempt(self, actor: str, raw: dict[str, Any]) -> Step | None:
        """Decide and commit ``raw``; None when the state refuses it (conflict/invalid)."""
        s = self.session
        op = parse_op(raw)  # the generator only makes well-formed ops
        before = s.model
        try:
            d = s.decide(actor, raw)
        except (Conflict, Invalid):
            self.rejected += 1
            assert s.model is before
            return None
        s.commit(actor, d)
        step = Step(actor, raw, before, d, s.model)
        self.steps.append(step)
        self.states[s.v] = s.doc
        assert op is not None
        return step

    def random_step(
        self, actors: tuple[str, ...] = USERS, kinds: list[str] | None = None
    ) -> Step | None:
        actor = self.draw(st.sampled_from(actors))
        return self.attempt(actor, self.raw_op(self.session.doc, kinds, actor))

    def run(self, n: int, actors: tuple[str, ...] = USERS, kinds: list[str] | None = None) -> None:
        for _ in range(n):
            self.random_step(actors, kinds)
