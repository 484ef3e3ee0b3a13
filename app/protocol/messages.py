"""Messages of PROTOCOL.md section 4: client frames parsed into typed values, server
frames built as ``str`` with orjson.

Parsing raises ``BadMessage`` for a frame that is not a message at all (a binary frame,
not JSON, NaN or Infinity, not an object, no or an unknown ``type``) and ``Invalid``
for a known message with wrong fields. Unknown fields are ignored, so that clients
may send newer fields to an older server.

Server frames are ``str`` because ASGI text frames are ``str`` (STYLE.md finding 2).
An event is encoded once: ``WireEvent`` holds the event object (``body``, without
``type``) and its ``event`` frame, spliced from the body without decoding it again,
and the fan-out hands that same ``str`` to every socket.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from app.domain import valid_id
from app.errors import BadMessage, Invalid, TooLarge
from app.protocol.codes import ErrorCode

__all__ = [
    "PRESENCE_MAX_BYTES",
    "ClientMessage",
    "Hello",
    "Ping",
    "Presence",
    "SubmitOp",
    "WireEvent",
    "ack",
    "encode_event",
    "error",
    "events",
    "parse_message",
    "pong",
    "presence",
    "reject",
    "welcome",
]

PRESENCE_MAX_BYTES: Final = 2048
_TOKEN_MAX: Final = 4096
_TYPE_SHOWN: Final = 32


# -- client to server -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    token: str
    since: int | None = None


@dataclass(frozen=True, slots=True)
class SubmitOp:
    """``op``: ``id`` is checked here; ``op`` is passed on as sent, because a re-sent
    acknowledged id gets its ack back "whatever op it carries" (guarantee 3), so only
    the command handler may judge it."""

    id: str
    op: object


@dataclass(frozen=True, slots=True)
class Presence:
    """``state`` is the object re-encoded compactly (at most 2 KiB)."""

    state: str


@dataclass(frozen=True, slots=True)
class Ping:
    """``t`` is any JSON value, echoed back in the ``pong`` (null when absent)."""

    t: object = None


ClientMessage = Hello | SubmitOp | Presence | Ping


def parse_message(frame: str | bytes) -> ClientMessage:
    """The message in one websocket frame (``BadMessage``, ``Invalid``, ``TooLarge``)."""
    if not isinstance(frame, str):
        raise BadMessage("binary frames are not accepted: send JSON text frames")
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"not JSON ({exc.msg}); NaN and Infinity are not JSON") from None
    if not isinstance(data, dict):
        raise BadMessage("a message is a JSON object with a `type`")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise BadMessage("a message needs a string `type`")
    parse = _PARSERS.get(kind)
    if parse is None:
        raise BadMessage(f"unknown message type {kind[:_TYPE_SHOWN]!r}")
    return parse(data)


def _hello(data: dict[str, Any]) -> Hello:
    token = data.get("token")
    if not isinstance(token, str) or not token or len(token) > _TOKEN_MAX:
        raise Invalid("hello needs a `token` string")
    since = data.get("since")
    if since is not None and (type(since) is not int or since < 0):
        raise Invalid("`since` must be a version: an integer, 0 or more")
    return Hello(token, since)


def _op(data: dict[str, Any]) -> SubmitOp:
    op_id = data.get("id")
    if not isinstance(op_id, str) or not valid_id(op_id):
        raise Invalid("an op needs an `id` of 1-64 characters of [A-Za-z0-9_-]")
    return SubmitOp(op_id, data.get("op"))


def _presence(data: dict[str, Any]) -> Presence:
    state = data.get("state")
    if not isinstance(state, dict):
        raise Invalid("presence needs a `state` object")
    encoded = orjson.dumps(state)
    if len(encoded) > PRESENCE_MAX_BYTES:
        raise TooLarge(f"a presence state is at most {PRESENCE_MAX_BYTES} bytes encoded")
    return Presence(encoded.decode())


def _ping(data: dict[str, Any]) -> Ping:
    return Ping(data.get("t"))


_PARSERS: Final[dict[str, Callable[[dict[str, Any]], ClientMessage]]] = {
    "hello": _hello,
    "op": _op,
    "presence": _presence,
    "ping": _ping,
}


# -- server to client -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireEvent:
    """One committed event as sent: ``body`` is the event object without ``type``
    (``{"v", "op", "actor", "id", "ts"}``), ``frame`` its ``event`` message.

    ``actor`` and ``op_id`` are known when the event was encoded here (``encode``: the
    events this process commits) and None when it was wrapped from a body read
    elsewhere (``from_body``: a stream entry), which is not parsed for them. A session
    uses them to acknowledge its own op as the event goes out (``Session.deliver``)."""

    v: int
    body: str
    frame: str
    actor: str | None = field(default=None, compare=False)
    op_id: str | None = field(default=None, compare=False)

    @classmethod
    def from_body(cls, v: int, body: str) -> WireEvent:
        """Wrap an encoded event object; the frame is spliced, not re-encoded."""
        if not body.startswith("{") or len(body) < 3:
            raise ValueError("an event body is a non-empty JSON object")
        return cls(v, body, '{"type":"event",' + body[1:])

    @classmethod
    def encode(cls, v: int, op: bytes, actor: str, op_id: str | None, ts: int) -> WireEvent:
        body = encode_event(v, op, actor, op_id, ts)
        return cls(v, body, '{"type":"event",' + body[1:], actor, op_id)


def encode_event(v: int, op: bytes, actor: str, op_id: str | None, ts: int) -> str:
    """The event object of PROTOCOL.md 4; ``op`` is already JSON and is spliced as is."""
    body = {"v": v, "op": orjson.Fragment(op), "actor": actor, "id": op_id, "ts": ts}
    return orjson.dumps(body).decode()


def events(bodies: Sequence[WireEvent]) -> str:
    """One ``events`` frame: several consecutive events, spliced."""
    return '{"type":"events","events":[' + ",".join(e.body for e in bodies) + "]}"


def welcome(
    *,
    doc: str,
    v: int,
    role: str,
    user: str,
    session: str,
    state: bytes | None = None,
    events: Sequence[WireEvent] | None = None,
) -> str:
    """``welcome`` with either ``state`` (encoded JSON) or ``events``, never both."""
    if (state is None) == (events is None):
        raise ValueError("a welcome carries either a state or events")
    head = orjson.dumps(
        {"type": "welcome", "doc": doc, "v": v, "role": role, "user": user, "session": session}
    ).decode()
    if state is not None:
        return head[:-1] + ',"state":' + state.decode() + "}"
    assert events is not None
    return head[:-1] + ',"events":[' + ",".join(e.body for e in events) + "]}"


def ack(op_id: str, v: int) -> str:
    return orjson.dumps({"type": "ack", "id": op_id, "v": v}).decode()


def reject(op_id: str, code: ErrorCode | str, message: str) -> str:
    return orjson.dumps(
        {"type": "reject", "id": op_id, "code": str(code), "message": message}
    ).decode()


def error(code: ErrorCode | str, message: str) -> str:
    return orjson.dumps({"type": "error", "code": str(code), "message": message}).decode()


def pong(t: object = None) -> str:
    try:
        return orjson.dumps({"type": "pong", "t": t}).decode()
    except TypeError:  # pragma: no cover - t came out of orjson.loads, so it encodes
        return '{"type":"pong","t":null}'


def presence(session: str, user: str, name: str, state: str | None) -> str:
    """A peer's presence; ``state`` is its encoded object, or None when it left."""
    head = orjson.dumps({"type": "presence", "session": session, "user": user, "name": name})
    return head.decode()[:-1] + ',"state":' + ("null" if state is None else state) + "}"
