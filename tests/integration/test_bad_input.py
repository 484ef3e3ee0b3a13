"""I7: bad input never crashes the command handler, never corrupts state, and gets a
coded error. Random JSON values and near-valid ops go through the real handler and
store; every answer is an ack or a coded rejection, and the stored events always fold
to the state the handler holds (I6)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.command import CommandHandler
from app.domain import replay, state_to_json
from app.errors import AppError
from app.store.postgres import PostgresStore

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
    "restore",
    "doc.create",
    "",
    "x" * 300,
]
FIELDS = [
    "layer",
    "element",
    "name",
    "title",
    "index",
    "set",
    "shape",
    "props",
    "ops",
    "visible",
    "locked",
    "opacity",
    "points",
    "text",
    "x",
    "y",
    "w",
    "h",
    "color",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["L1", "e1", "rect", "stroke", "text", "#ffffff", "#12345", ""]),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
near_ops = st.fixed_dictionaries(
    {"kind": st.sampled_from(KINDS)}, optional={f: json_values for f in FIELDS}
)
_ids = itertools.count()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=st.one_of(near_ops, json_values), role=st.sampled_from(["owner", "editor", "viewer"]))
async def test_random_input_gets_a_coded_answer_and_never_corrupts_state(
    store: PostgresStore, raw: Any, role: Any
) -> None:
    handler = CommandHandler(store)
    await handler.start()
    try:
        if await store.get_document("d1") is None:
            await handler.create_document("d1", "alice", "Poster")
            await handler.submit(
                "d1", "alice", "owner", "L", {"kind": "layer.add", "layer": "L1", "name": "a"}
            )
        try:
            await handler.submit("d1", "alice", role, f"f{next(_ids)}", raw)
        except AppError as exc:
            assert exc.code in {"invalid", "conflict", "forbidden"}, exc
            assert exc.message
        model = await handler.model("d1")
    finally:
        await handler.close()
    events = await store.read_stream("d1")
    folded = replay(
        "d1", [(e.v, e.actor, orjson.loads(e.op), orjson.loads(e.effect)) for e in events]
    )
    assert [e.v for e in events] == list(range(1, len(events) + 1))
    assert state_to_json(folded.doc) == state_to_json(model.doc)
