"""Micro-benchmark of the domain hot path (not a test; pytest does not collect it).

    .venv/bin/python -m tests.unit.domain.bench_domain

Prints the best of 5 runs, in µs per op, of parse_op alone and of decide + evolve on
documents of a few thousand elements, plus a chained mixed workload and stroke
normalization. Figures are quoted in docs/domain.md.
"""

from __future__ import annotations

import math
import random
import timeit
from collections.abc import Callable
from typing import Any

from app.domain import WriteModel, create_op, decide, evolve, parse_op
from app.domain.stroke import normalize_points

__all__: list[str] = []


def build(n_layers: int, per_layer: int) -> WriteModel:
    m = evolve(WriteModel.new("d"), 1, "u0", create_op("T"), {})
    for li in range(n_layers):
        raws: list[dict[str, Any]] = [{"kind": "layer.add", "layer": f"L{li}", "name": "n"}]
        raws += [
            {"kind": "element.add", "element": f"e{li}_{i}", "layer": f"L{li}", "shape": "rect",
             "props": {"x": i, "y": i, "w": 10, "h": 10, "fill": "#aabbcc"}}
            for i in range(per_layer)
        ]  # fmt: skip
        for i, raw in enumerate(raws):
            actor = f"u{i % 7}"
            d = decide(m, parse_op(raw), actor, "editor")
            m = evolve(m, m.v + 1, actor, d.op, d.effect)
    return m


def best(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def step_cost(m: WriteModel, raws: list[dict[str, Any]]) -> float:
    """decide + evolve of each op against the same model (the document does not grow)."""
    ops = [parse_op(r) for r in raws]
    it = iter(range(10**9))

    def one() -> None:
        op = ops[next(it) % len(ops)]
        d = decide(m, op, "alice", "editor")
        evolve(m, m.v + 1, "alice", d.op, d.effect)

    return best(one, 2000)


def chained(m: WriteModel, n_ops: int, seed: int = 1) -> float:
    """A mixed stream from several users, each op decided on the previous one's model."""
    rng = random.Random(seed)
    ids = [e.id for layer in m.doc.layers for e in layer.elements]
    layers = [layer.id for layer in m.doc.layers]
    raws: list[tuple[str, dict[str, Any]]] = []
    for i in range(n_ops):
        r = rng.random()
        actor = f"u{rng.randrange(8)}"
        if r < 0.70:
            raw = {"kind": "element.update", "element": rng.choice(ids),
                   "set": {"x": rng.randrange(1000), "y": rng.randrange(1000)}}  # fmt: skip
        elif r < 0.90:
            eid = f"n{i}"
            ids.append(eid)
            raw = {"kind": "element.add", "element": eid, "layer": rng.choice(layers),
                   "shape": "rect", "props": {"x": 1, "y": 2, "w": 3, "h": 4}}  # fmt: skip
        elif r < 0.95:
            raw = {"kind": "element.move", "element": rng.choice(ids), "layer": rng.choice(layers)}
        else:
            raw = {"kind": "element.remove", "element": ids.pop(rng.randrange(len(ids)))}
        raws.append((actor, raw))
    ops = [(actor, parse_op(raw)) for actor, raw in raws]

    def run() -> None:
        model = m
        for actor, op in ops:
            d = decide(model, op, actor, "editor")
            model = evolve(model, model.v + 1, actor, d.op, d.effect)

    return min(timeit.repeat(run, number=1, repeat=5)) / n_ops * 1e6


def main() -> None:
    update = {"kind": "element.update", "element": "e0_300", "set": {"x": 12.5, "y": 3}}
    add = {"kind": "element.add", "element": "new", "layer": "L0", "shape": "rect",
           "props": {"x": 1, "y": 2, "w": 3, "h": 4}}  # fmt: skip
    print(f"parse_op element.update: {best(lambda: parse_op(update), 20000):.1f} µs")
    print(f"parse_op element.add:    {best(lambda: parse_op(add), 20000):.1f} µs")
    for n_layers, per_layer in [(5, 600), (1, 3000), (20, 250)]:
        m = build(n_layers, per_layer)
        mid = f"e0_{per_layer // 2}"
        figures = {
            "element.add": step_cost(m, [add]),
            "element.update": step_cost(m, [{**update, "element": mid}]),
            "element.move": step_cost(m, [{"kind": "element.move", "element": mid, "index": 0}]),
            "element.remove": step_cost(m, [{"kind": "element.remove", "element": mid}]),
            "chained mix": chained(m, 5000),
        }
        line = ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
        print(f"{n_layers * per_layer} elements in {n_layers} layer(s): {line} µs/op")
    for n in (200, 10_000):
        pts = [[100 + 300 * math.cos(i * 0.003) + (i % 3) * 0.01, 200 + 250 * math.sin(i * 0.004),
                0.5] for i in range(n)]  # fmt: skip
        ms = min(timeit.repeat(lambda p=pts: normalize_points(p), number=3, repeat=5)) / 3 * 1e3
        print(f"normalize_points, {n} points: {ms:.2f} ms")


if __name__ == "__main__":
    main()
