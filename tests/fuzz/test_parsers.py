"""Fuzzing the websocket message parser (app.protocol) and the op validator and
decide/apply (app.domain): random JSON, deep nesting, huge and tiny numbers, NaN and
Infinity text, unicode with surrogates and NUL, ids at every length 0..70 and of every
character class. Only the project's own errors ever come out; ids are accepted exactly
when the protocol says; a rejected op leaves the model as it was."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain import WriteModel, apply, decide, evolve, parse_op, state_to_json
from app.errors import AppError, Conflict, Forbidden, Invalid, NotFound
from app.protocol.messages import Hello, SubmitOp, parse_message
from tests.fuzz.budget import examples

FUZZ = settings(
    max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
any_char = st.characters(codec=None, categories=None)  # surrogates and NUL included
numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([5e-324, -5e-324, 1e308, -1e308, 1e7, 1e7 + 1e-9, -0.0, 2**53 + 1]),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(any_char, max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=16,
)
number_text = st.sampled_from(
    [
        "NaN",
        "-NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        "1e-400",
        "0x10",
        "01",
        "1.",
        ".5",
        "+1",
        "1e",
        "123456789012345678901234567890",
        "-0",
    ]
)


def deep(depth: int, kind: str) -> str:
    opening, closing = ("[", "]") if kind == "list" else ('{"a":', "}")
    return opening * depth + "1" + closing * depth


frames = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["hello", "op", "presence", "ping"])},
        optional={
            "token": json_values,
            "since": numbers,
            "id": json_values,
            "op": json_values,
            "state": json_values,
            "t": json_values,
        },
    ).map(json.dumps),
    st.builds(
        lambda t, n: f'{{"type":"{t}","t":{n},"since":{n},"op":{n}}}',
        st.sampled_from(["ping", "hello", "op"]),
        number_text,
    ),
    st.builds(deep, st.integers(0, 3000), st.sampled_from(["list", "dict"])).map(
        lambda s: '{"type":"ping","t":' + s + "}"
    ),
    st.text(any_char, max_size=80),
    st.text(any_char, max_size=40).map(lambda s: '{"type":"ping","t":"' + s + '"}'),
    st.binary(max_size=60),
)


@FUZZ
@given(frames)
def test_the_message_parser_raises_only_our_errors(frame: str | bytes) -> None:
    try:
        parse_message(frame)
    except AppError as exc:
        assert exc.code in {"bad_message", "invalid", "too_large"}
        assert exc.message


id_chars = st.one_of(
    st.sampled_from("abcXYZ059_-"),  # allowed
    st.sampled_from(" ./\\:@%+'\"\x00\n\t#?&;,=~*"),  # ASCII outside the class
    st.sampled_from("é\u0430ß\u200b\u202e\ufeff\U0001f3a8\ud800\udfff"),  # non-ASCII
)


@settings(max_examples=examples(600), deadline=None)
@given(st.integers(0, 70).flatmap(lambda n: st.text(id_chars, min_size=n, max_size=n)))
def test_op_ids_are_accepted_exactly_when_valid(op_id: str) -> None:
    frame = json.dumps({"type": "op", "id": op_id, "op": {"kind": "undo"}})
    valid = ID.fullmatch(op_id) is not None
    try:
        message = parse_message(frame)
    except AppError as exc:
        assert not valid, (op_id, exc)
        assert exc.code == "invalid" or max(op_id, default="a") >= "\ud800"
    else:
        assert valid and isinstance(message, SubmitOp) and message.id == op_id
    # and the same id as a layer id in an op, through the domain's validator
    try:
        parse_op({"kind": "layer.add", "layer": op_id, "name": "n"})
    except Invalid:
        assert not valid
    else:
        assert valid


@FUZZ
@given(st.integers(0, 70).flatmap(lambda n: st.text(any_char, min_size=n, max_size=n)))
def test_tokens_of_any_length_and_character(token: str) -> None:
    try:
        message = parse_message(json.dumps({"type": "hello", "token": token}))
    except AppError as exc:
        assert exc.code in {"invalid", "bad_message"}
        assert token == "" or any("\ud800" <= c <= "\udfff" for c in token)
    else:
        assert isinstance(message, Hello) and message.token == token


KINDS = [
    "doc.rename",
    "layer.add",
    "layer.update",
    "layer.move",
    "layer.remove",
    "element.add",
    "element.update",
    "element.move",
    "element.remove",
    "batch",
    "undo",
    "redo",
]
FIELDS = [
    "title",
    "layer",
    "name",
    "index",
    "visible",
    "locked",
    "opacity",
    "set",
    "element",
    "shape",
    "props",
    "ops",
]
near_values = st.one_of(
    json_values,
    st.sampled_from(["L1", "L2", "e1", "e2", "rect", "text", "stroke", "image", "#ffffff"]),
    st.dictionaries(
        st.sampled_from(
            [
                "x",
                "y",
                "w",
                "h",
                "text",
                "points",
                "fill",
                "opacity",
                "name",
                "visible",
                "locked",
                "asset",
                "size",
                "bogus",
            ]
        ),
        json_values | numbers,
        max_size=4,
    ),
)
near_ops = st.fixed_dictionaries(
    {"kind": st.sampled_from(KINDS)}, optional={f: near_values for f in FIELDS}
)
batches = st.lists(near_ops, min_size=0, max_size=4).map(lambda ops: {"kind": "batch", "ops": ops})


def start() -> WriteModel:
    model = WriteModel.new("d1")
    seed = [
        {"kind": "doc.create", "title": "P"},
        {"kind": "layer.add", "layer": "L1", "name": "a"},
        {
            "kind": "element.add",
            "element": "e1",
            "layer": "L1",
            "shape": "rect",
            "props": {"x": 1, "y": 1, "w": 2, "h": 2},
        },
        {"kind": "layer.add", "layer": "L2", "name": "b", "locked": True},
    ]
    for v, op in enumerate(seed, 1):
        if v == 1:
            model = evolve(model, 1, "alice", op, {})
            continue
        decision = decide(model, parse_op(op), "alice", "owner")
        model = evolve(model, v, "alice", decision.op, decision.effect)
    return model


SEED = start()


@FUZZ
@given(
    st.lists(st.one_of(near_ops, batches, json_values), min_size=1, max_size=6),
    st.sampled_from(["owner", "editor", "viewer"]),
)
def test_decide_and_apply_on_random_ops(ops: list[Any], role: Any) -> None:
    model = SEED
    for raw in ops:
        before = state_to_json(model.doc)
        histories = copy.deepcopy(dict(model.histories))
        try:
            op = parse_op(raw)
            decision = decide(model, op, "alice", role)
        except (Invalid, Conflict, Forbidden, NotFound) as exc:
            assert exc.message
            # nothing changed on a reject
            assert state_to_json(model.doc) == before
            assert dict(model.histories) == histories
            continue
        assert role != "viewer"
        orjson.dumps(decision.op)  # what is stored: encodable, whatever came in
        orjson.dumps(decision.effect)
        after = evolve(model, model.v + 1, "alice", decision.op, decision.effect)
        # a client's apply of the event gives the server's state
        client = apply(model.doc, json.loads(json.dumps(decision.op)))
        assert state_to_json(client) | {"v": 0} == state_to_json(after.doc) | {"v": 0}
        model = after
