"""One websocket connection as a sans-I/O state machine (STYLE.md habits 1 and 2).

The shell (``app.gateway.ws``) feeds it what happened (a frame arrived, the hello
timer fired, the token checked out, an op was committed, events were published) and
performs the actions it returns, in order: ``Send`` a frame, ``Authenticate`` a
hello, ``Submit`` an op, ``AwaitEvent`` (make sure an event reaches this session),
``PublishPresence``, ``Close``. It never awaits and never reads a clock: the time is
an argument, so a test drives it with plain calls, like h11's ``ConnectionPair``.

States and the inputs that move them (``_TRANSITIONS``)::

    AWAITING_HELLO ──hello──▶ JOINING ──admitted──▶ OPEN ──drain──▶ DRAINING
          │                      │                    │                 │
          └──────close───────────┴────────close───────┴─────────────────┴──▶ CLOSING
                                                                               │
                                                               CLOSED ◀──closed┘

    close: a bad first message or the hello timer (4401), a refused hello (4401, 4403,
    4404, 4429), an oversize frame (1009), abuse of a rate limit (4429), a full send queue
    (4408) or a fault (1011). ``drain`` (the server is going away) stops taking ops
    (``unavailable``: retry with the same id after reconnecting), lets the ones in
    flight be answered, and then closes 1001 (STYLE.md finding 1). ``closed`` (the
    transport is gone) is accepted in every state.

Calling an input in a state where the shell should never call it (a frame while
JOINING, an ack before OPEN) raises ``SessionError``, which names both: that is a bug
in the shell, not bad input. Bad input never raises: it becomes an ``error`` frame, a
``reject`` or a close (DESIGN.md I7).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from app.errors import AppError
from app.protocol import messages
from app.protocol.codes import CloseCode, ErrorCode
from app.protocol.limits import RateLimit, Verdict, frame_too_large
from app.protocol.messages import Hello, Ping, Presence, SubmitOp, WireEvent

__all__ = [
    "Action",
    "Authenticate",
    "AwaitEvent",
    "Close",
    "PublishPresence",
    "Send",
    "Session",
    "SessionConfig",
    "SessionError",
    "State",
    "Submit",
]


class State(Enum):
    AWAITING_HELLO = "awaiting_hello"
    JOINING = "joining"
    OPEN = "open"
    DRAINING = "draining"
    CLOSING = "closing"
    CLOSED = "closed"


class _Input(Enum):
    HELLO = "hello"
    ADMITTED = "admitted"
    DRAIN = "drain"
    CLOSE = "close"
    CLOSED = "closed"


_TRANSITIONS: Final[dict[tuple[State, _Input], State]] = {
    (State.AWAITING_HELLO, _Input.HELLO): State.JOINING,
    (State.JOINING, _Input.ADMITTED): State.OPEN,
    (State.AWAITING_HELLO, _Input.CLOSE): State.CLOSING,
    (State.JOINING, _Input.CLOSE): State.CLOSING,
    (State.OPEN, _Input.DRAIN): State.DRAINING,
    (State.OPEN, _Input.CLOSE): State.CLOSING,
    (State.DRAINING, _Input.CLOSE): State.CLOSING,
    (State.DRAINING, _Input.CLOSED): State.CLOSED,
    (State.AWAITING_HELLO, _Input.CLOSED): State.CLOSED,
    (State.JOINING, _Input.CLOSED): State.CLOSED,
    (State.OPEN, _Input.CLOSED): State.CLOSED,
    (State.CLOSING, _Input.CLOSED): State.CLOSED,
    (State.CLOSED, _Input.CLOSED): State.CLOSED,
}

_MAX_REASON_BYTES: Final = 123
_ENDED: Final = frozenset({State.CLOSING, State.CLOSED})
_SERVING: Final = frozenset({State.OPEN, State.DRAINING})


class SessionError(Exception):
    """The shell called an input in a state where it must not (a bug, not bad input)."""

    def __init__(self, state: State, what: str) -> None:
        super().__init__(f"cannot {what} in state {state.name}")
        self.state = state


# -- actions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    frame: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Check the token, look up the role, build the welcome; then call
    ``admitted`` or ``close``."""

    token: str
    since: int | None


@dataclass(frozen=True, slots=True)
class Submit:
    """Hand the op to the command handler; then call ``acked`` or ``failed``."""

    id: str
    op: object


@dataclass(frozen=True, slots=True)
class AwaitEvent:
    """An ``ack`` waits for the event at ``v`` (guarantee 2): make sure it comes."""

    v: int


@dataclass(frozen=True, slots=True)
class PublishPresence:
    """This session's presence changed (``None``: it left)."""

    state: str | None


@dataclass(frozen=True, slots=True)
class Close:
    code: CloseCode
    reason: str


Action = Send | Authenticate | Submit | AwaitEvent | PublishPresence | Close


@dataclass(frozen=True, slots=True)
class SessionConfig:
    max_frame_bytes: int = 1 << 20
    op_rate: float = 50.0  # ops a second, in a burst of up to op_burst
    op_burst: int = 100
    frame_rate: float = 200.0  # every message counts here (pings, presence, bad frames)
    frame_burst: int = 400
    max_inflight: int = 100  # ops submitted and not yet answered
    presence: bool = True
    presence_rate: float = 30.0  # presence messages a second, in a burst of presence_burst
    presence_burst: int = 60


# -- the machine ------------------------------------------------------------------


def _close_reason(reason: str) -> str:
    """RFC 6455 5.5: a control frame's payload is at most 125 bytes, 2 of them the code."""
    encoded = reason.encode()
    if len(encoded) <= _MAX_REASON_BYTES:
        return reason
    return encoded[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


class Session:
    """One connection's protocol state; every method returns the actions to perform."""

    def __init__(self, session_id: str, config: SessionConfig, *, now: float) -> None:
        self.id = session_id
        self.config = config
        self.state = State.AWAITING_HELLO
        self.doc = ""
        self.user = ""
        self.name = ""
        self.role = ""
        # The version this connection has: the welcome's, then each delivered event's.
        self.v = 0
        self.inflight = 0
        self.close_code: CloseCode | None = None
        self._ops = RateLimit(config.op_rate, config.op_burst, now)
        self._frames = RateLimit(config.frame_rate, config.frame_burst, now)
        self._presence = RateLimit(config.presence_rate, config.presence_burst, now)
        self._parked: list[tuple[int, int, str]] = []  # (v, arrival, op id): a heap
        # Op ids submitted and not answered yet (copies in flight), and answers already
        # given by an ack sent with the op's event (``_ack_own``), which the handler's
        # answer then finds here instead of sending a second one.
        self._unanswered: dict[str, int] = {}
        self._acked_early: dict[str, int] = {}
        self._arrivals = 0
        self._announced = False
        self._drain_reason = ""

    # -- inputs from the peer ------------------------------------------------------

    def receive(self, frame: str | bytes, *, now: float) -> list[Action]:
        """One frame from the client."""
        if self.state is State.JOINING:
            raise SessionError(self.state, "receive a frame")
        if self.state in _ENDED:
            return []
        if frame_too_large(frame, self.config.max_frame_bytes):
            return self.close(
                CloseCode.TOO_BIG, f"a frame is at most {self.config.max_frame_bytes} bytes"
            )
        if self.state is State.AWAITING_HELLO:
            return self._first(frame)
        verdict = self._frames.check(now)
        if verdict is Verdict.ABUSIVE:
            return self.close(CloseCode.RATE_LIMITED, "too many messages, for too long")
        if verdict is Verdict.LIMITED:
            return [Send(messages.error(ErrorCode.RATE_LIMITED, "too many messages; slow down"))]
        try:
            message = messages.parse_message(frame)
        except AppError as exc:
            return [Send(messages.error(exc.code, exc.message))]
        if isinstance(message, SubmitOp):
            return self._op(message, now)
        if isinstance(message, Ping):
            return [Send(messages.pong(message.t))]
        if isinstance(message, Presence):
            return self._presence_update(message, now)
        return [Send(messages.error(ErrorCode.INVALID, "hello was already received"))]

    def _presence_update(self, message: Presence, now: float) -> list[Action]:
        if not self.config.presence:
            return []
        verdict = self._presence.check(now)
        if verdict is Verdict.ABUSIVE:
            return self.close(CloseCode.RATE_LIMITED, "too many presence updates, for too long")
        if verdict is Verdict.LIMITED:
            rate = f"{self.config.presence_rate:g}"
            reason = f"at most {rate} presence updates a second; slow down"
            return [Send(messages.error(ErrorCode.RATE_LIMITED, reason))]
        self._announced = True
        return [PublishPresence(message.state)]

    def _first(self, frame: str | bytes) -> list[Action]:
        try:
            message = messages.parse_message(frame)
        except AppError as exc:
            return self.close(CloseCode.UNAUTHENTICATED, f"expected hello: {exc.message}")
        if not isinstance(message, Hello):
            return self.close(CloseCode.UNAUTHENTICATED, "the first message must be hello")
        self._move(_Input.HELLO)
        return [Authenticate(message.token, message.since)]

    def _op(self, message: SubmitOp, now: float) -> list[Action]:
        if self.state is State.DRAINING:
            reason = "the server is going away; reconnect and retry with the same id"
            return [Send(messages.reject(message.id, ErrorCode.UNAVAILABLE, reason))]
        verdict = self._ops.check(now)
        if verdict is Verdict.ABUSIVE:
            return self.close(CloseCode.RATE_LIMITED, "too many ops, for too long")
        if verdict is Verdict.LIMITED:
            return [
                Send(
                    messages.reject(
                        message.id,
                        ErrorCode.RATE_LIMITED,
                        f"at most {self.config.op_rate:g} ops a second; retry with the same id",
                    )
                )
            ]
        if self.inflight >= self.config.max_inflight:
            reason = f"at most {self.config.max_inflight} ops in flight; retry with the same id"
            return [Send(messages.reject(message.id, ErrorCode.RATE_LIMITED, reason))]
        self.inflight += 1
        self._unanswered[message.id] = self._unanswered.get(message.id, 0) + 1
        return [Submit(message.id, message.op)]

    def hello_timeout(self) -> list[Action]:
        """The hello timer fired (PROTOCOL.md 4: hello within 5 s)."""
        if self.state is not State.AWAITING_HELLO:
            return []
        return self.close(CloseCode.UNAUTHENTICATED, "no hello in time")

    # -- inputs from the shell -----------------------------------------------------

    def admitted(
        self,
        *,
        doc: str,
        user: str,
        name: str,
        role: str,
        v: int,
        state: bytes | None = None,
        events: Sequence[WireEvent] | None = None,
    ) -> list[Action]:
        """The hello checked out: send the welcome at ``v`` (with the state at ``v``, or
        the events after ``since`` up to ``v``)."""
        if self.state in _ENDED:
            return []
        if self.state is not State.JOINING:
            raise SessionError(self.state, "admit")
        self._move(_Input.ADMITTED)
        self.doc, self.user, self.name, self.role, self.v = doc, user, name, role, v
        frame = messages.welcome(
            doc=doc, v=v, role=role, user=user, session=self.id, state=state, events=events
        )
        return [Send(frame)]

    def deliver(self, events: Sequence[WireEvent], frame: str | None = None) -> list[Action]:
        """Consecutive committed events; ``frame``, when given, is their frame encoded
        once for every socket (used when this session needs all of them)."""
        # Once per socket per run of the fan-out: identity tests, not set lookups (an
        # Enum member's hash is computed in Python).
        state = self.state
        if state is not State.OPEN and state is not State.DRAINING:
            if state is State.CLOSING or state is State.CLOSED:
                return []
            raise SessionError(state, "deliver events")
        if not events or events[-1].v <= self.v:
            return []  # already had them (in the welcome, or delivered before)
        if events[0].v <= self.v:
            events = [e for e in events if e.v > self.v]
            frame = None
        # Guarantee 2 (PROTOCOL.md 4, DESIGN.md I4): no gap, no duplicate, in order. The
        # fan-out only ever hands over the run after the version it delivered last;
        # if that ever broke, the client must reconnect with `since` rather than
        # silently miss an event.
        if events[0].v != self.v + 1 or events[-1].v - events[0].v + 1 != len(events):
            return self.close(CloseCode.INTERNAL, "the server lost track of the event order")
        if frame is None:
            frame = events[0].frame if len(events) == 1 else messages.events(events)
        self.v = events[-1].v
        actions: list[Action] = [Send(frame)]
        if self._unanswered:
            self._ack_own(events, actions)
        # An ack parked for an event now delivered may go (guarantee 2: never before).
        while self._parked and self._parked[0][0] <= self.v:
            v, _, op_id = heapq.heappop(self._parked)
            actions.append(Send(messages.ack(op_id, v)))
        if state is State.DRAINING:
            actions += self._drained()
        return actions

    def _ack_own(self, events: Sequence[WireEvent], actions: list[Action]) -> None:
        """This connection's own ops among ``events`` are acknowledged right behind them.

        Guarantee 2 lets an ack go as soon as its event has: the event is committed
        (guarantee 1), and the fan-out serves the sockets with ops in flight first. The
        handler's own answer would come only after the event went to every other socket
        of the document (milliseconds with hundreds of viewers); it is swallowed when it
        comes (``_answered``). Only events encoded in this process carry their actor and
        op id (``WireEvent``); the others leave the ack to the handler's answer."""
        user = self.user
        unanswered = self._unanswered
        for event in events:
            op_id = event.op_id
            if op_id is None or event.actor != user:
                continue
            if not _take_one(unanswered, op_id):
                continue
            self._acked_early[op_id] = self._acked_early.get(op_id, 0) + 1
            actions.append(Send(messages.ack(op_id, event.v)))

    def relay(self, frame: str) -> list[Action]:
        """A peer's ``presence`` frame, to be sent as it is (built once for every socket)."""
        if self.state not in _SERVING:
            return []
        return [Send(frame)]

    def acked(self, op_id: str, v: int) -> list[Action]:
        """The op ``op_id`` is committed at ``v`` (or was before, for a re-send)."""
        early = self._answered("ack an op", op_id)
        if self.state in _ENDED:
            return []
        if early:
            return self._drained()
        if v <= self.v:
            return [Send(messages.ack(op_id, v)), *self._drained()]
        # The event at v has not reached this connection yet: the ack waits for it.
        self._arrivals += 1
        heapq.heappush(self._parked, (v, self._arrivals, op_id))
        return [AwaitEvent(v)]

    def failed(self, op_id: str, code: ErrorCode | str, message: str) -> list[Action]:
        """The op ``op_id`` was not applied (or its outcome is unknown: ``unavailable``).
        An op already acknowledged with its event was committed: the ack stands."""
        early = self._answered("reject an op", op_id)
        if self.state in _ENDED:
            return []
        if early:
            return self._drained()
        return [Send(messages.reject(op_id, code, message)), *self._drained()]

    def _answered(self, what: str, op_id: str) -> bool:
        """Count the handler's answer for ``op_id``; True when an ack went with its event
        already (``_ack_own``): this answer then sends nothing."""
        if self.state in (State.AWAITING_HELLO, State.JOINING):
            raise SessionError(self.state, what)
        assert self.inflight > 0, "an answer for an op that was never submitted"
        self.inflight -= 1
        if _take_one(self._acked_early, op_id):
            return True
        _take_one(self._unanswered, op_id)
        return False

    def drain(self, reason: str) -> list[Action]:
        """The server is going away: answer what is in flight, then close 1001."""
        if self.state is State.OPEN:
            self._move(_Input.DRAIN)
            self._drain_reason = reason
            return self._drained()
        if self.state in (State.AWAITING_HELLO, State.JOINING):
            return self.close(CloseCode.GOING_AWAY, reason)
        return []

    def _drained(self) -> list[Action]:
        if self.state is not State.DRAINING or self.inflight or self._parked:
            return []
        return self.close(CloseCode.GOING_AWAY, self._drain_reason)

    def close(self, code: CloseCode, reason: str) -> list[Action]:
        """Close the connection with ``code`` (no-op once closing)."""
        if self.state in _ENDED:
            return []
        self._move(_Input.CLOSE)
        self.close_code = code
        self._parked.clear()
        return [*self._leave(), Close(code, _close_reason(reason))]

    def closed(self) -> list[Action]:
        """The transport is gone (the peer closed, or the close completed)."""
        leaving = [] if self.state in _ENDED else self._leave()
        self._move(_Input.CLOSED)
        self._parked.clear()
        return leaving

    @property
    def parked(self) -> int:
        """Acks waiting for their event."""
        return len(self._parked)

    def _leave(self) -> list[Action]:
        if not self._announced:
            return []
        self._announced = False
        return [PublishPresence(None)]

    def _move(self, event: _Input) -> None:
        target = _TRANSITIONS.get((self.state, event))
        if target is None:
            raise SessionError(self.state, f"take input {event.name}")
        self.state = target


def _take_one(counts: dict[str, int], key: str) -> bool:
    """Take one from ``counts[key]`` (dropping it at zero); False when it had none."""
    n = counts.get(key)
    if not n:
        return False
    if n == 1:
        del counts[key]
    else:
        counts[key] = n - 1
    return True
