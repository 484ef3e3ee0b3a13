"""The session state machine, driven by plain calls (no sockets, no clock)."""

from __future__ import annotations

import orjson
import pytest

from app.protocol import (
    Authenticate,
    Close,
    CloseCode,
    Send,
    Session,
    SessionConfig,
    SessionError,
    State,
    Submit,
)
from app.protocol import messages as m
from tests.unit.protocol.driver import Shell, event


def test_hello_then_welcome_with_state() -> None:
    shell = Shell()
    assert shell.session.state is State.AWAITING_HELLO
    shell.feed({"type": "hello", "token": "tok", "since": 2})
    assert shell.hellos == [Authenticate("tok", 2)]
    assert shell.session.state is State.JOINING
    state = orjson.dumps({"id": "d1", "title": "T", "v": 5, "layers": []})
    shell.perform(
        shell.session.admitted(doc="d1", user="alice", name="A", role="owner", v=5, state=state)
    )
    assert shell.session.state is State.OPEN
    assert shell.sent == [
        {
            "type": "welcome",
            "doc": "d1",
            "v": 5,
            "role": "owner",
            "user": "alice",
            "session": "s1",
            "state": {"id": "d1", "title": "T", "v": 5, "layers": []},
        }
    ]
    assert shell.session.v == 5


def test_welcome_with_events() -> None:
    shell = Shell()
    shell.feed({"type": "hello", "token": "tok", "since": 2})
    frames = shell.perform(
        shell.session.admitted(
            doc="d1", user="u", name="u", role="viewer", v=4, events=[event(3), event(4)]
        )
    )
    assert len(frames) == 1
    assert [e["v"] for e in shell.sent[0]["events"]] == [3, 4]
    assert shell.session.v == 4


@pytest.mark.parametrize(
    "first",
    [
        {"type": "ping"},
        {"type": "op", "id": "o1", "op": {}},
        {"type": "hello"},
        "nonsense",
        b"\x00binary",
        {"type": "nope"},
    ],
)
def test_anything_but_a_valid_hello_first_closes_4401(first: object) -> None:
    shell = Shell()
    shell.feed(first)
    assert [c.code for c in shell.closes] == [CloseCode.UNAUTHENTICATED]
    assert shell.session.state is State.CLOSING
    assert shell.feed({"type": "hello", "token": "t"}) == []  # nothing after a close


def test_hello_timeout() -> None:
    shell = Shell()
    shell.perform(shell.session.hello_timeout())
    assert [c.code for c in shell.closes] == [CloseCode.UNAUTHENTICATED]
    # A hello in time disarms it.
    shell = Shell()
    shell.feed({"type": "hello", "token": "t"})
    assert shell.session.hello_timeout() == []


def test_refused_hello_closes_with_the_shells_code() -> None:
    shell = Shell()
    shell.feed({"type": "hello", "token": "t"})
    shell.perform(shell.session.close(CloseCode.FORBIDDEN, "not a member"))
    assert shell.closes == [Close(CloseCode.FORBIDDEN, "not a member")]
    # The shell may finish its lookups after a close: admitting is then a no-op.
    assert shell.session.admitted(doc="d", user="u", name="u", role="owner", v=1, state=b"{}") == []


def test_oversize_frame_closes_1009() -> None:
    shell = Shell(SessionConfig(max_frame_bytes=1024))
    shell.feed("x" * 1025)
    assert [c.code for c in shell.closes] == [CloseCode.TOO_BIG]
    shell = Shell(SessionConfig(max_frame_bytes=1024))
    shell.open()
    shell.feed({"type": "ping", "t": "é" * 600})
    assert [c.code for c in shell.closes] == [CloseCode.TOO_BIG]


def test_bad_frames_get_errors_and_the_connection_stays_open() -> None:
    shell = Shell()
    shell.open()
    for frame in ["nope", b"bin", "[]", '{"type":"x"}', '{"type":"ping","t":NaN}']:
        shell.feed(frame)
    shell.feed({"type": "op", "id": "bad id"})
    shell.feed({"type": "presence", "state": {"s": "a" * 3000}})
    shell.feed({"type": "hello", "token": "t"})
    assert [(x["type"], x["code"]) for x in shell.sent] == [
        ("error", "bad_message"),
        ("error", "bad_message"),
        ("error", "bad_message"),
        ("error", "bad_message"),
        ("error", "bad_message"),
        ("error", "invalid"),
        ("error", "too_large"),
        ("error", "invalid"),
    ]
    assert shell.session.state is State.OPEN
    shell.feed({"type": "ping", "t": 1})
    assert shell.sent[-1] == {"type": "pong", "t": 1}


def test_op_submit_then_ack_after_its_event() -> None:
    shell = Shell()
    shell.open(v=3)
    shell.feed({"type": "op", "id": "o1", "op": {"kind": "doc.rename", "title": "x"}})
    assert shell.submitted == [Submit("o1", {"kind": "doc.rename", "title": "x"})]
    # Committed at 5, but the connection has only 3: the ack waits (guarantee 2).
    shell.perform(shell.session.acked("o1", 5))
    assert shell.sent == []
    assert shell.awaited == [5]
    shell.deliver(event(4))
    assert shell.types() == ["event"]
    shell.deliver(event(5, "alice", "o1"))
    assert shell.types() == ["event", "event", "ack"]
    assert shell.sent[1]["id"] == "o1"
    assert shell.sent[2] == {"type": "ack", "id": "o1", "v": 5}
    assert shell.session.inflight == 0


def test_ack_for_an_event_already_delivered_goes_at_once() -> None:
    shell = Shell()
    shell.open(v=3)
    shell.feed({"type": "op", "id": "o1", "op": {}})
    shell.deliver(event(4, "alice", "o1"))
    shell.perform(shell.session.acked("o1", 4))
    assert shell.types() == ["event", "ack"]
    # A re-sent id answered with an old version: no wait either.
    shell.feed({"type": "op", "id": "o0", "op": {}})
    shell.perform(shell.session.acked("o0", 2))
    assert shell.sent[-1] == {"type": "ack", "id": "o0", "v": 2}


def test_own_op_is_acknowledged_as_its_event_goes_out() -> None:
    shell = Shell()
    shell.open(v=3)
    shell.feed({"type": "op", "id": "o1", "op": {}})
    # The event comes before the handler's answer (the commit tap runs first): the ack
    # goes right behind it, never before it (guarantee 2).
    shell.deliver(event(4), event(5, "alice", "o1"))
    assert shell.types() == ["events", "ack"]
    assert shell.sent[-1] == {"type": "ack", "id": "o1", "v": 5}
    assert shell.session.inflight == 1  # the handler's answer is still to come
    assert shell.session.acked("o1", 5) == []  # ... and then sends nothing more
    assert shell.session.inflight == 0
    assert shell.types() == ["events", "ack"]


def test_an_early_ack_stands_against_a_late_unavailable() -> None:
    # The handler gave up waiting for the commit (``unavailable``: outcome unknown), but
    # the event came: the op is committed, the ack already sent stays the only answer.
    shell = Shell()
    shell.open(v=1)
    shell.feed({"type": "op", "id": "o1", "op": {}})
    shell.deliver(event(2, "alice", "o1"))
    assert shell.session.failed("o1", "unavailable", "the store is slow") == []
    assert shell.types() == ["event", "ack"]
    assert shell.session.inflight == 0


def test_only_the_sessions_own_ops_are_acknowledged_early() -> None:
    shell = Shell()
    shell.open(v=1)
    shell.feed({"type": "op", "id": "o1", "op": {}})
    shell.deliver(event(2, "bob", "o1"))  # bob's op with the same id: not ours
    assert shell.types() == ["event"]
    # An event wrapped from a stream entry carries no actor or op id: the handler's
    # answer acknowledges the op.
    body = event(3, "alice", "o1")
    shell.deliver(m.WireEvent.from_body(3, body.body))
    assert shell.types() == ["event", "event"]
    shell.perform(shell.session.acked("o1", 3))
    assert shell.sent[-1] == {"type": "ack", "id": "o1", "v": 3}
    assert shell.session.inflight == 0


def test_an_id_sent_twice_in_flight_gets_one_ack_per_copy() -> None:
    shell = Shell()
    shell.open(v=1)
    shell.feed({"type": "op", "id": "o1", "op": {}})
    shell.feed({"type": "op", "id": "o1", "op": {}})
    shell.deliver(event(2, "alice", "o1"))
    assert shell.types() == ["event", "ack"]
    shell.perform(shell.session.acked("o1", 2))  # the first copy's answer: given already
    assert shell.types() == ["event", "ack"]
    shell.perform(shell.session.acked("o1", 2))  # the second copy's (a duplicate)
    assert shell.types() == ["event", "ack", "ack"]
    assert shell.sent[-1] == {"type": "ack", "id": "o1", "v": 2}
    assert shell.session.inflight == 0


def test_a_parked_ack_is_not_sent_twice() -> None:
    shell = Shell()
    shell.open(v=1)
    shell.feed({"type": "op", "id": "o1", "op": {}})
    shell.perform(shell.session.acked("o1", 2))  # answered before its event: parked
    shell.deliver(event(2, "alice", "o1"))
    assert shell.types() == ["event", "ack"]
    shell.deliver(event(3, "alice", "o1"))  # (a later event naming the id again)
    assert shell.types() == ["event", "ack", "event"]


def test_drain_waits_for_the_answer_of_an_op_acknowledged_early() -> None:
    shell = Shell()
    shell.open(v=1)
    shell.feed({"type": "op", "id": "a", "op": {}})
    shell.perform(shell.session.drain("going away"))
    shell.deliver(event(2, "alice", "a"))
    assert shell.types() == ["event", "ack"]
    assert shell.closes == []  # the handler has not answered yet
    shell.perform(shell.session.acked("a", 2))
    assert shell.types() == ["event", "ack"]
    assert shell.closes == [Close(CloseCode.GOING_AWAY, "going away")]


def test_parked_acks_go_in_version_order_with_one_run() -> None:
    shell = Shell()
    shell.open(v=1)
    for op_id in ("a", "b", "c"):
        shell.feed({"type": "op", "id": op_id, "op": {}})
    shell.perform(shell.session.acked("b", 3))
    shell.perform(shell.session.acked("a", 2))
    shell.perform(shell.session.acked("c", 4))
    shell.deliver(event(2), event(3), event(4))
    assert shell.types() == ["events", "ack", "ack", "ack"]
    assert [(x["id"], x["v"]) for x in shell.sent[1:]] == [("a", 2), ("b", 3), ("c", 4)]


def test_reject() -> None:
    shell = Shell()
    shell.open()
    shell.feed({"type": "op", "id": "o1", "op": {}})
    shell.perform(shell.session.failed("o1", "forbidden", "viewers cannot change it"))
    assert shell.sent == [
        {"type": "reject", "id": "o1", "code": "forbidden", "message": "viewers cannot change it"}
    ]


def test_delivery_is_exactly_once_in_order() -> None:
    shell = Shell()
    shell.open(v=3)
    shell.deliver(event(2), event(3))  # in the welcome already
    assert shell.sent == []
    shell.deliver(event(3), event(4), event(5))  # overlaps: only 4 and 5
    assert [e["v"] for e in shell.sent[0]["events"]] == [4, 5]
    shell.deliver(event(6))
    assert shell.sent[-1]["type"] == "event"
    assert shell.sent[-1]["v"] == 6
    assert shell.session.v == 6


def test_shared_frame_is_used_as_is() -> None:
    shell = Shell()
    shell.open(v=3)
    run = [event(4), event(5)]
    frame = m.events(run)
    actions = shell.session.deliver(run, frame)
    assert actions == [Send(frame)]


def test_a_gap_is_never_papered_over() -> None:
    shell = Shell()
    shell.open(v=3)
    shell.deliver(event(5))
    assert [c.code for c in shell.closes] == [CloseCode.INTERNAL]
    assert shell.sent == []


def test_op_rate_limit_then_4429() -> None:
    shell = Shell(SessionConfig(op_rate=10, op_burst=5, frame_rate=1000, frame_burst=1000))
    shell.open()
    for i in range(5):
        shell.feed({"type": "op", "id": f"o{i}", "op": {}})
    assert len(shell.submitted) == 5
    shell.feed({"type": "op", "id": "o5", "op": {}})
    assert shell.sent[-1]["code"] == "rate_limited"
    assert shell.sent[-1]["id"] == "o5"
    for i in range(10):
        shell.feed({"type": "op", "id": f"x{i}", "op": {}})
    assert [c.code for c in shell.closes] == [CloseCode.RATE_LIMITED]


def test_frame_rate_limit_applies_to_every_message() -> None:
    shell = Shell(SessionConfig(frame_rate=10, frame_burst=3))
    shell.open()
    for _ in range(4):
        shell.feed({"type": "ping"})
    assert shell.types() == ["pong", "pong", "pong", "error"]
    assert shell.sent[-1]["code"] == "rate_limited"
    shell.now += 0.1
    shell.feed({"type": "ping"})
    assert shell.types()[-1] == "pong"


def test_inflight_bound() -> None:
    shell = Shell(SessionConfig(max_inflight=2))
    shell.open()
    for op_id in ("a", "b", "c"):
        shell.feed({"type": "op", "id": op_id, "op": {}})
    assert [s.id for s in shell.submitted] == ["a", "b"]
    assert shell.sent == [
        {
            "type": "reject",
            "id": "c",
            "code": "rate_limited",
            "message": "at most 2 ops in flight; retry with the same id",
        }
    ]
    shell.perform(shell.session.failed("a", "conflict", "x"))
    shell.feed({"type": "op", "id": "c", "op": {}})
    assert [s.id for s in shell.submitted] == ["a", "b", "c"]


def test_presence_and_leaving() -> None:
    shell = Shell()
    shell.open()
    shell.feed({"type": "presence", "state": {"x": 1}})
    assert shell.presence == ['{"x":1}']
    shell.perform(shell.session.closed())
    assert shell.presence == ['{"x":1}', None]
    assert shell.session.state is State.CLOSED
    # A silent session announces nothing, not even its leaving.
    quiet = Shell()
    quiet.open()
    quiet.perform(quiet.session.close(CloseCode.GOING_AWAY, "bye"))
    assert quiet.presence == []
    assert quiet.closes == [Close(CloseCode.GOING_AWAY, "bye")]


def test_presence_can_be_switched_off() -> None:
    shell = Shell(SessionConfig(presence=False))
    shell.open()
    shell.feed({"type": "presence", "state": {"x": 1}})
    assert shell.presence == []
    assert shell.sent == []


def test_close_drops_parked_acks_and_later_answers() -> None:
    shell = Shell()
    shell.open(v=1)
    shell.feed({"type": "op", "id": "a", "op": {}})
    shell.feed({"type": "op", "id": "b", "op": {}})
    shell.perform(shell.session.acked("a", 5))
    assert shell.session.parked == 1
    shell.perform(shell.session.close(CloseCode.TOO_SLOW, "behind"))
    assert shell.session.parked == 0
    assert shell.session.acked("b", 6) == []
    assert shell.session.deliver([event(2)]) == []
    assert shell.session.close(CloseCode.INTERNAL, "again") == []
    shell.perform(shell.session.closed())
    assert shell.session.state is State.CLOSED


@pytest.mark.parametrize(
    ("state", "call"),
    [
        ("awaiting", lambda s: s.admitted(doc="d", user="u", name="u", role="o", v=1, state=b"{}")),
        ("awaiting", lambda s: s.deliver([event(1)])),
        ("awaiting", lambda s: s.acked("o", 1)),
        ("joining", lambda s: s.receive('{"type":"ping"}', now=0)),
        ("joining", lambda s: s.failed("o", "invalid", "x")),
        ("open", lambda s: s.admitted(doc="d", user="u", name="u", role="o", v=1, state=b"{}")),
    ],
)
def test_out_of_order_calls_name_the_state(state: str, call: object) -> None:
    session = Session("s", SessionConfig(), now=0)
    if state != "awaiting":
        session.receive('{"type":"hello","token":"t"}', now=0)
    if state == "open":
        session.admitted(doc="d", user="u", name="u", role="o", v=1, state=b"{}")
    with pytest.raises(SessionError, match=r"in state (AWAITING_HELLO|JOINING|OPEN)"):
        call(session)  # type: ignore[operator]


def test_the_transport_can_go_in_any_state() -> None:
    for steps in range(3):
        session = Session("s", SessionConfig(), now=0)
        if steps >= 1:
            session.receive('{"type":"hello","token":"t"}', now=0)
        if steps >= 2:
            session.admitted(doc="d", user="u", name="u", role="o", v=1, state=b"{}")
        session.closed()
        assert session.state is State.CLOSED
        assert session.closed() == []


def test_a_flood_of_messages_closes_4429() -> None:
    shell = Shell(SessionConfig(frame_rate=10, frame_burst=3))
    shell.open()
    for _ in range(20):
        shell.feed({"type": "ping"})
    assert [c.code for c in shell.closes] == [CloseCode.RATE_LIMITED]
    assert shell.types().count("pong") == 3


def test_answers_after_a_close_send_nothing() -> None:
    shell = Shell()
    shell.open()
    shell.feed({"type": "op", "id": "a", "op": {}})
    shell.perform(shell.session.close(CloseCode.GOING_AWAY, "bye"))
    assert shell.session.failed("a", "unavailable", "x") == []
    assert shell.session.inflight == 0


def test_drain_answers_what_is_in_flight_then_closes_1001() -> None:
    shell = Shell()
    shell.open(v=1)
    shell.feed({"type": "op", "id": "a", "op": {}})
    shell.perform(shell.session.drain("going away"))
    assert shell.session.state is State.DRAINING
    assert shell.closes == []
    # no new ops; pings still answered
    shell.feed({"type": "op", "id": "b", "op": {}})
    assert shell.sent[-1]["code"] == "unavailable"
    assert shell.sent[-1]["id"] == "b"
    shell.feed({"type": "ping", "t": 2})
    assert shell.sent[-1] == {"type": "pong", "t": 2}
    # the op in flight commits; its ack waits for its event, then the close follows
    shell.perform(shell.session.acked("a", 2))
    assert shell.closes == []
    shell.deliver(event(2, "alice", "a"))
    assert shell.types()[-2:] == ["event", "ack"]
    assert shell.closes == [Close(CloseCode.GOING_AWAY, "going away")]


def test_drain_with_nothing_in_flight_closes_at_once() -> None:
    shell = Shell()
    shell.open()
    shell.perform(shell.session.drain("bye"))
    assert shell.closes == [Close(CloseCode.GOING_AWAY, "bye")]
    assert shell.session.drain("again") == []
    # before the hello: closed at once too
    early = Shell()
    early.perform(early.session.drain("bye"))
    assert [c.code for c in early.closes] == [CloseCode.GOING_AWAY]


def test_drain_after_a_reject() -> None:
    shell = Shell()
    shell.open()
    shell.feed({"type": "op", "id": "a", "op": {}})
    shell.perform(shell.session.drain("bye"))
    shell.perform(shell.session.failed("a", "conflict", "no"))
    assert shell.types() == ["reject"]
    assert [c.code for c in shell.closes] == [CloseCode.GOING_AWAY]


def test_peer_presence_is_relayed_only_while_serving() -> None:
    shell = Shell()
    frame = m.presence("s2", "bob", "Bob", '{"x":1}')
    with pytest.raises(SessionError):
        shell.session.deliver([event(1)])
    assert shell.session.relay(frame) == []  # not before the welcome
    shell.open()
    assert shell.session.relay(frame) == [Send(frame)]
    shell.perform(shell.session.close(CloseCode.GOING_AWAY, "bye"))
    assert shell.session.relay(frame) == []


def test_close_reasons_fit_in_a_control_frame() -> None:
    shell = Shell()
    shell.open()
    shell.perform(shell.session.close(CloseCode.INTERNAL, "é" * 200))
    (close,) = shell.closes
    assert len(close.reason.encode()) <= 123
    assert close.reason.endswith("...")
