"""The scenarios: which documents, what each holds at the start, which clients do what.

A scenario is pure planning: ``build`` turns the command line's knobs into a ``Setup``
(documents, their first ops, members and the ``ClientSpec`` of every connection). The
runner creates the documents over HTTP and hands the clients to the processes.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from app.loadtest.client import ClientSpec

__all__ = ["SCENARIOS", "Identities", "Setup", "build"]

SCENARIOS = ("hot-doc", "many-docs", "join-storm", "presence", "reconnect", "soak")
SAMPLED_DOCS = 20  # documents whose first and last client fold and compare the elements


class Identities:
    """Tokens for the run's users: minted from the secret, or taken from a list whose
    first token is the owner's (the others are dealt to the clients round-robin)."""

    def __init__(
        self, mint: Callable[[str], str] | None, tokens: list[str], users: Callable[[str], str]
    ) -> None:
        self.mint = mint
        self.tokens = tokens
        self.user_of = users

    def owner(self) -> tuple[str, str]:
        token = self.mint("lt-owner") if self.mint else self.tokens[0]
        return self.user_of(token), token

    def client(self, kind: str, cid: int) -> tuple[str, str]:
        if self.mint:
            token = self.mint(f"lt-{kind}{cid}")
        else:
            pool = self.tokens[1:] or self.tokens
            token = pool[cid % len(pool)]
        return self.user_of(token), token


@dataclass
class Setup:
    scenario: str
    docs: list[str]
    ops: dict[str, list[dict[str, Any]]]  # per document, posted in order before the run
    members: dict[str, dict[str, str]]  # per document: user -> role
    clients: list[ClientSpec] = field(default_factory=list)
    knobs: dict[str, Any] = field(default_factory=dict)


def rect(element: str, i: int) -> dict[str, Any]:
    return {
        "kind": "element.add",
        "element": element,
        "layer": "L",
        "shape": "rect",
        "props": {
            "x": 10 * (i % 80),
            "y": 10 * (i // 80 % 60),
            "w": 40,
            "h": 30,
            "fill": "#993366",
        },
    }


LAYER = {"kind": "layer.add", "layer": "L", "name": "load"}


class _Builder:
    def __init__(self, name: str, ids: Identities, seed: int) -> None:
        self.tag = secrets.token_hex(3)
        self.setup = Setup(name, [], {}, {})
        self.ids = ids
        self.rng = random.Random(seed)
        self.cid = 0

    def doc(self) -> str:
        doc = f"lt-{self.tag}-{len(self.setup.docs)}"
        self.setup.docs.append(doc)
        self.setup.ops[doc] = [LAYER]
        self.setup.members[doc] = {}
        return doc

    def client(self, doc: str, role: str, **spec: Any) -> ClientSpec:
        kind = "e" if role == "editor" else "v"
        user, token = self.ids.client(kind, self.cid)
        members = self.setup.members[doc]
        if members.get(user) != "editor":
            members[user] = role
        made = ClientSpec(cid=self.cid, doc=doc, token=token, role=role, **spec)
        self.cid += 1
        self.setup.clients.append(made)
        if role == "editor":
            self.setup.ops[doc].append(rect(made.element, made.cid))
        return made

    def editors(self, doc: str, count: int, rate: float, staggered: bool, **extra: Any) -> None:
        """``count`` editors at ``rate`` ops/s each; staggered: evenly over one period."""
        for i in range(count):
            phase = i / (rate * count) if staggered else self.rng.uniform(0, 1 / rate)
            element = f"r{self.cid}"
            self.client(doc, "editor", rate=rate, phase=phase, element=element, **extra)


def _sampled(setup: Setup) -> list[ClientSpec]:
    """The first and last client of each of the first SAMPLED_DOCS documents fold."""
    chosen: set[int] = set()
    for doc in setup.docs[:SAMPLED_DOCS]:
        mine = [c.cid for c in setup.clients if c.doc == doc]
        chosen.update({mine[0], mine[-1]} if mine else set())
    return [replace(c, sample=c.cid in chosen) for c in setup.clients]


def _soak(b: _Builder, knobs: dict[str, Any]) -> None:
    """Per document: editors at ``rate`` each; viewers, of which the first moves a cursor
    at ``hz`` and the second drops and resumes every ``drop_every`` seconds."""
    hz, every = knobs["hz"], knobs["drop_every"]
    for _ in range(knobs["docs"]):
        doc = b.doc()
        b.editors(doc, knobs["editors"], knobs["rate"], staggered=False)
        for i in range(knobs["viewers"]):
            if i == 0:
                b.client(doc, "viewer", presence_hz=hz, phase=b.rng.uniform(0, 1 / hz))
            elif i == 1:
                b.client(doc, "viewer", drop_every=every, phase=b.rng.uniform(0, every))
            else:
                b.client(doc, "viewer")


def build(name: str, knobs: dict[str, Any], ids: Identities, seed: int = 1) -> Setup:
    """The setup of scenario ``name`` with its knobs (see ``app.loadtest.cli``)."""
    b = _Builder(name, ids, seed)
    if name == "hot-doc":
        doc = b.doc()
        b.editors(doc, knobs["editors"], knobs["rate"] / knobs["editors"], staggered=True)
        for _ in range(knobs["viewers"]):
            b.client(doc, "viewer")
    elif name == "many-docs":
        for _ in range(knobs["docs"]):
            doc = b.doc()
            b.editors(doc, knobs["editors"], knobs["rate"], staggered=False)
            for _ in range(knobs["viewers"]):
                b.client(doc, "viewer")
    elif name == "join-storm":
        doc = b.doc()
        elements = [rect(f"s{i}", i) for i in range(knobs["elements"])]
        b.setup.ops[doc] += [
            {"kind": "batch", "ops": elements[i : i + 100]} for i in range(0, len(elements), 100)
        ]
        for _ in range(knobs["clients"]):
            b.client(doc, "viewer", late=True)
    elif name == "presence":
        doc = b.doc()
        hz = knobs["hz"]
        for _ in range(knobs["clients"]):
            b.client(doc, "viewer", presence_hz=hz, phase=b.rng.uniform(0, 1 / hz))
    elif name == "reconnect":
        doc = b.doc()
        every = knobs["drop_every"]
        rate = knobs["rate"] / knobs["editors"]
        b.editors(doc, knobs["editors"], rate, staggered=True, drop_every=every)
        for _ in range(knobs["viewers"]):
            b.client(doc, "viewer", drop_every=every, phase=b.rng.uniform(0, every))
    elif name == "soak":
        _soak(b, knobs)
    else:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    b.setup.clients = _sampled(b.setup)
    b.setup.knobs = dict(knobs)
    return b.setup
