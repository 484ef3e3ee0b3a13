"""Fuzzing the protocol core (DESIGN.md I7): no input makes it raise or send garbage.

(1) ``parse_message`` raises nothing but our own errors, whatever the frame;
(2) a session fed random frames, deliveries, acks and rejects in a random order never
raises, only ever sends well-formed messages of known types, delivers every event
exactly once and in order, never sends an ack before its event (guarantee 2), and
sends nothing after it asked for a close, and a drain ends in a close once every op
in flight has its answer.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import AppError
from app.protocol import Action, Close, Send, Session, SessionConfig, State, Submit
from app.protocol.messages import parse_message
from tests.unit.protocol.driver import event

SERVER_TYPES = {"welcome", "event", "events", "ack", "reject", "presence", "pong", "error"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
message_types = st.sampled_from(["hello", "op", "presence", "ping", "welcome", "", "HELLO"])
messages = st.fixed_dictionaries(
    {"type": message_types | json_values},
    optional={
        "token": st.just("tok") | json_values,
        "since": st.integers(min_value=-2, max_value=10) | json_values,
        "id": st.sampled_from(["o1", "o2", "bad id", ""]) | json_values,
        "op": json_values,
        "state": st.dictionaries(st.text(max_size=5), json_values) | json_values,
        "t": json_values,
    },
)


def encode(value: Any) -> str:
    # the standard library's encoder: it writes integers of any size and escapes
    # lone surrogates, both of which a client may send
    return json.dumps(value)


frames = st.one_of(
    messages.map(encode),
    json_values.map(encode),
    st.text(max_size=60),
    st.binary(max_size=30),
    st.sampled_from(['{"type":"ping","t":NaN}', "[1,", '{"type":"op","id":"o1","op":Infinity}']),
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_parse_raises_only_our_errors(frame: str | bytes) -> None:
    with contextlib.suppress(AppError):
        parse_message(frame)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), frames),
        st.tuples(st.just("deliver"), st.integers(min_value=-2, max_value=3)),
        st.tuples(st.just("answer"), st.booleans()),
        st.tuples(st.just("timeout"), st.none()),
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=0.5)),
        st.tuples(st.just("close"), st.none()),
        st.tuples(st.just("drain"), st.none()),
    ),
    max_size=60,
)


class Model:
    """What the session sent, and checks of it as it goes."""

    def __init__(self) -> None:
        self.session = Session("s", SessionConfig(op_rate=20, op_burst=4, frame_burst=30), now=0)
        self.now = 0.0
        self.delivered: list[int] = []  # versions the client got, welcome included
        self.head = 0  # versions committed so far
        self.pending: list[str] = []  # ops submitted, not answered
        self.closed = False

    def perform(self, actions: list[Action]) -> None:
        for action in actions:
            assert not self.closed, f"{action} after a close"
            if isinstance(action, Close):
                self.closed = True
            elif isinstance(action, Submit):
                self.pending.append(action.id)
            elif isinstance(action, Send):
                self.check(orjson.loads(action.frame))

    def check(self, message: dict[str, Any]) -> None:
        assert message["type"] in SERVER_TYPES
        if message["type"] == "welcome":
            self.delivered = list(range(1, message["v"] + 1))
        elif message["type"] == "event":
            self.delivered.append(message["v"])
        elif message["type"] == "events":
            self.delivered.extend(e["v"] for e in message["events"])
        elif message["type"] == "ack":
            assert message["v"] in self.delivered, "ack before its event"
        elif message["type"] in ("reject", "error"):
            assert isinstance(message["code"], str)
            assert isinstance(message["message"], str)
        assert self.delivered == list(range(1, len(self.delivered) + 1)), "gap or repeat"

    def run(self, kind: str, arg: Any) -> None:
        s = self.session
        if kind == "frame":
            if s.state is State.JOINING:
                self.head = 3
                self.perform(
                    s.admitted(doc="d", user="u", name="u", role="editor", v=3, state=b"{}")
                )
            self.perform(s.receive(arg, now=self.now))
        elif kind == "deliver" and s.state in (State.OPEN, State.DRAINING):
            # a run that starts anywhere from a little before to just after s.v
            start = max(1, s.v + 1 + min(arg, 0))
            self.head = max(self.head, start + 2)
            self.perform(s.deliver([event(v) for v in range(start, start + 3)]))
        elif kind == "answer" and self.pending and s.state not in (State.AWAITING_HELLO,):
            op_id = self.pending.pop(0)
            if arg:
                self.head += 1  # committed now, delivered later
                self.perform(s.acked(op_id, self.head))
            else:
                self.perform(s.failed(op_id, "conflict", "no"))
        elif kind == "timeout":
            self.perform(s.hello_timeout())
        elif kind == "tick":
            self.now += arg
        elif kind == "close":
            self.perform(s.closed())
        elif kind == "drain":
            self.perform(s.drain("going away"))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, max_size=3), steps)
def test_session_never_breaks(opening: list[str | bytes], plan: list[tuple[str, Any]]) -> None:
    model = Model()
    model.run("frame", '{"type":"hello","token":"tok"}' if not opening else opening[0])
    for frame in opening[1:]:
        model.run("frame", frame)
    for kind, arg in plan:
        model.run(kind, arg)
    # Whatever happened, delivering every committed event releases every parked ack.
    if model.session.state in (State.OPEN, State.DRAINING):
        model.perform(model.session.deliver([event(v) for v in range(1, model.head + 1)]))
        assert model.session.parked == 0
    if model.session.state is State.DRAINING:
        while model.pending:
            model.perform(model.session.failed(model.pending.pop(0), "conflict", "no"))
        assert model.closed, "a drain with nothing left in flight must close"
