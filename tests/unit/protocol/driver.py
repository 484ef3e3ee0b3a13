"""A test shell for ``Session``: performs its actions in memory, like h11's ConnectionPair.

``Shell.feed`` sends a client frame; the frames the server would send pile up in
``sent`` (decoded), the ops it would submit in ``submitted``, and so on. Time is a
plain attribute the test moves.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.protocol import (
    Action,
    Authenticate,
    AwaitEvent,
    Close,
    PublishPresence,
    Send,
    Session,
    SessionConfig,
    Submit,
)
from app.protocol.messages import WireEvent


def event(v: int, actor: str = "bob", op_id: str | None = None) -> WireEvent:
    op = orjson.dumps({"kind": "doc.rename", "title": f"t{v}"})
    return WireEvent.encode(v, op, actor, op_id, 1_700_000_000_000 + v)


class Shell:
    def __init__(self, config: SessionConfig | None = None, session_id: str = "s1") -> None:
        self.now = 0.0
        self.session = Session(session_id, config or SessionConfig(), now=self.now)
        self.sent: list[dict[str, Any]] = []
        self.submitted: list[Submit] = []
        self.hellos: list[Authenticate] = []
        self.awaited: list[int] = []
        self.presence: list[str | None] = []
        self.closes: list[Close] = []

    def perform(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            if isinstance(action, Send):
                self.sent.append(orjson.loads(action.frame))
            elif isinstance(action, Submit):
                self.submitted.append(action)
            elif isinstance(action, Authenticate):
                self.hellos.append(action)
            elif isinstance(action, AwaitEvent):
                self.awaited.append(action.v)
            elif isinstance(action, PublishPresence):
                self.presence.append(action.state)
            else:
                assert isinstance(action, Close)
                self.closes.append(action)
        return actions

    def feed(self, message: Any) -> list[Action]:
        frame = message if isinstance(message, str | bytes) else orjson.dumps(message).decode()
        return self.perform(self.session.receive(frame, now=self.now))

    def open(self, v: int = 3, role: str = "editor", user: str = "alice") -> None:
        """hello + admitted with a state at v: the session is OPEN, the welcome sent."""
        self.feed({"type": "hello", "token": "tok"})
        state = orjson.dumps({"id": "d1", "title": "T", "v": v, "layers": []})
        self.perform(
            self.session.admitted(doc="d1", user=user, name=user, role=role, v=v, state=state)
        )
        assert self.sent.pop()["type"] == "welcome"

    def deliver(self, *events: WireEvent) -> list[Action]:
        return self.perform(self.session.deliver(list(events)))

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]
