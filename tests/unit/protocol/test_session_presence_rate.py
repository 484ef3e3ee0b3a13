"""The session's presence limit: ``presence_rate`` a second in a burst of
``presence_burst``; over it ``error rate_limited``, and kept up for long, 4429."""

from __future__ import annotations

from app.protocol import CloseCode, SessionConfig
from tests.unit.protocol.driver import Shell


def test_presence_over_its_rate_is_refused_then_allowed_again() -> None:
    shell = Shell(SessionConfig(presence_rate=2, presence_burst=3))
    shell.open()
    for i in range(5):
        shell.feed({"type": "presence", "state": {"x": i}})
    assert shell.presence == ['{"x":0}', '{"x":1}', '{"x":2}']
    assert [(m["type"], m["code"]) for m in shell.sent[-2:]] == [("error", "rate_limited")] * 2
    shell.now += 0.5  # one token back
    shell.feed({"type": "presence", "state": {"x": 9}})
    assert shell.presence[-1] == '{"x":9}'
    assert shell.closes == []


def test_presence_past_its_rate_for_long_closes_4429() -> None:
    shell = Shell(SessionConfig(presence_rate=1, presence_burst=2))
    shell.open()
    for i in range(10):
        shell.feed({"type": "presence", "state": {"x": i}})
    assert [c.code for c in shell.closes] == [CloseCode.RATE_LIMITED]
    # Ops and pings have budgets of their own: presence did not take from them.
    other = Shell(SessionConfig(presence_rate=1, presence_burst=1))
    other.open()
    other.feed({"type": "presence", "state": {"x": 1}})
    other.feed({"type": "ping", "t": 1})
    assert other.sent[-1] == {"type": "pong", "t": 1}
