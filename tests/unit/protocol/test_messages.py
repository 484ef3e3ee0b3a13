"""Parsing client frames and building server frames (PROTOCOL.md section 4)."""

from __future__ import annotations

import orjson
import pytest

from app.errors import BadMessage, Invalid, TooLarge
from app.protocol import messages
from app.protocol.codes import CloseCode, ErrorCode
from app.protocol.messages import Hello, Ping, Presence, SubmitOp, WireEvent, parse_message


def test_hello() -> None:
    assert parse_message('{"type":"hello","token":"t"}') == Hello("t", None)
    assert parse_message('{"type":"hello","token":"t","since":7,"x":1}') == Hello("t", 7)


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"hello"}',
        '{"type":"hello","token":""}',
        '{"type":"hello","token":3}',
        '{"type":"hello","token":"t","since":-1}',
        '{"type":"hello","token":"t","since":1.5}',
        '{"type":"hello","token":"t","since":true}',
        '{"type":"hello","token":"t","since":"3"}',
        '{"type":"op","op":{}}',
        '{"type":"op","id":"","op":{}}',
        '{"type":"op","id":"a b","op":{}}',
        '{"type":"op","id":"' + "x" * 65 + '","op":{}}',
        '{"type":"presence"}',
        '{"type":"presence","state":[1]}',
    ],
)
def test_invalid_fields(frame: str) -> None:
    with pytest.raises(Invalid):
        parse_message(frame)


@pytest.mark.parametrize(
    "frame",
    [
        b'{"type":"ping"}',
        "",
        "not json",
        '{"type":"ping","t":NaN}',
        '{"type":"ping","t":Infinity}',
        '{"type":"ping","t":1e999}',
        "[1, 2]",
        '"hello"',
        "null",
        "{}",
        '{"type":3}',
        '{"type":"welcome"}',
        '{"type":"HELLO","token":"t"}',
        '{"type":"ping"',
        '"\\ud800"',
    ],
)
def test_bad_messages(frame: str | bytes) -> None:
    with pytest.raises(BadMessage):
        parse_message(frame)


def test_op_is_passed_on_as_sent() -> None:
    # Guarantee 3: a re-sent acknowledged id gets its ack "whatever op it carries",
    # so the op is not judged here.
    assert parse_message('{"type":"op","id":"o-1","op":{"kind":"doc.rename"}}') == SubmitOp(
        "o-1", {"kind": "doc.rename"}
    )
    assert parse_message('{"type":"op","id":"o_2"}') == SubmitOp("o_2", None)
    assert parse_message('{"type":"op","id":"o3","op":"x"}') == SubmitOp("o3", "x")


def test_presence_is_reencoded_and_bounded() -> None:
    assert parse_message('{"type":"presence","state":{ "x" : 1 }}') == Presence('{"x":1}')
    fits = {"s": "a" * (messages.PRESENCE_MAX_BYTES - 8)}
    assert len(orjson.dumps(fits)) == messages.PRESENCE_MAX_BYTES
    parse_message(orjson.dumps({"type": "presence", "state": fits}).decode())
    over = {"s": "a" * (messages.PRESENCE_MAX_BYTES - 7)}
    with pytest.raises(TooLarge):
        parse_message(orjson.dumps({"type": "presence", "state": over}).decode())


def test_ping() -> None:
    assert parse_message('{"type":"ping"}') == Ping(None)
    assert parse_message('{"type":"ping","t":{"a":[1]}}') == Ping({"a": [1]})
    assert orjson.loads(messages.pong(12.5)) == {"type": "pong", "t": 12.5}
    assert orjson.loads(messages.pong()) == {"type": "pong", "t": None}


def test_event_is_encoded_once_and_spliced() -> None:
    event = WireEvent.encode(4, b'{"kind":"doc.rename","title":"T"}', "alice", "o1", 1700)
    body = {"v": 4, "op": {"kind": "doc.rename", "title": "T"}, "actor": "alice", "id": "o1"}
    assert orjson.loads(event.body) == {**body, "ts": 1700}
    assert orjson.loads(event.frame) == {"type": "event", **body, "ts": 1700}
    other = WireEvent.encode(5, b'{"kind":"doc.create","title":"T"}', "bob", None, 1701)
    assert orjson.loads(messages.events([event, other])) == {
        "type": "events",
        "events": [orjson.loads(event.body), orjson.loads(other.body)],
    }
    with pytest.raises(ValueError):
        WireEvent.from_body(1, "[]")


def test_welcome_with_state_or_events() -> None:
    common = {"doc": "d1", "v": 3, "role": "editor", "user": "u", "session": "s"}
    state = orjson.dumps({"id": "d1", "title": "T", "v": 3, "layers": []})
    assert orjson.loads(messages.welcome(**common, state=state)) == {
        "type": "welcome",
        **common,
        "state": orjson.loads(state),
    }
    event = WireEvent.encode(3, b"{}", "u", None, 1)
    assert orjson.loads(messages.welcome(**common, events=[event])) == {
        "type": "welcome",
        **common,
        "events": [orjson.loads(event.body)],
    }
    assert orjson.loads(messages.welcome(**common, events=[]))["events"] == []
    with pytest.raises(ValueError):
        messages.welcome(**common)
    with pytest.raises(ValueError):
        messages.welcome(**common, state=state, events=[])


def test_answers() -> None:
    assert orjson.loads(messages.ack("o1", 9)) == {"type": "ack", "id": "o1", "v": 9}
    assert orjson.loads(messages.reject("o1", ErrorCode.CONFLICT, "gone")) == {
        "type": "reject",
        "id": "o1",
        "code": "conflict",
        "message": "gone",
    }
    assert orjson.loads(messages.error("bad_message", "no")) == {
        "type": "error",
        "code": "bad_message",
        "message": "no",
    }
    assert orjson.loads(messages.presence("s1", "u", "U", '{"x":1}')) == {
        "type": "presence",
        "session": "s1",
        "user": "u",
        "name": "U",
        "state": {"x": 1},
    }
    assert orjson.loads(messages.presence("s1", "u", "U", None))["state"] is None


def test_codes_are_the_protocols() -> None:
    assert {c.value for c in CloseCode} == {1001, 1009, 1011, 1012, 4401, 4403, 4404, 4408, 4429}
    assert {c.value for c in ErrorCode} == {
        "invalid",
        "conflict",
        "forbidden",
        "not_found",
        "rate_limited",
        "too_large",
        "bad_message",
        "unavailable",
        "internal",
    }
