"""Presence expiry without sockets or Redis: app/gateway/liveness.py, time passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.gateway.liveness import ALIVE, RemotePeers, liveness_line, sessions_of


def test_a_liveness_line_names_its_sessions() -> None:
    line = liveness_line(["s1", "s-2_x"])
    assert line == "* s1 s-2_x"
    session, _, rest = line.partition(" ")
    assert session == ALIVE
    assert sessions_of(rest) == ["s1", "s-2_x"]
    assert sessions_of("") == []


def test_an_older_receiver_skips_the_line() -> None:
    # presence.py before expiry: a line whose text after the first space is no frame
    _session, _, frame = liveness_line(["s1"]).partition(" ")
    assert not frame.startswith("{")


def test_a_peer_expires_only_once_the_ttl_has_passed_since_it_was_heard() -> None:
    peers = RemotePeers(ttl=15.0)
    peers.heard("a", 100.0)
    peers.heard("b", 101.0)
    assert peers.expired(114.9) == []
    assert peers.expired(115.0) == ["a"]
    assert "a" not in peers and "b" in peers
    assert peers.expired(115.5) == []  # forgotten: expired once
    assert peers.expired(200.0) == ["b"]
    assert len(peers) == 0


def test_a_refresh_keeps_a_peer_and_moves_it_behind_the_others() -> None:
    peers = RemotePeers(ttl=3.0)
    peers.heard("a", 0.0)
    peers.heard("b", 1.0)
    peers.heard("a", 2.0)  # a liveness line or an update
    assert peers.expired(4.0) == ["b"]
    assert peers.expired(5.0) == ["a"]


def test_a_peer_that_left_never_expires() -> None:
    peers = RemotePeers(ttl=1.0)
    peers.heard("a", 0.0)
    peers.forget("a")
    peers.forget("never-heard")
    assert peers.expired(10.0) == []


def test_a_clock_that_steps_back_keeps_the_order() -> None:
    peers = RemotePeers(ttl=1.0)
    peers.heard("a", 5.0)
    peers.heard("b", 4.0)  # taken as 5.0: never ahead of a in the sweep
    assert peers.expired(6.0) == ["a", "b"]


def test_the_ttl_is_positive() -> None:
    with pytest.raises(ValueError, match="TTL"):
        RemotePeers(ttl=0)


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.floats(0, 5), st.booleans()),
        max_size=60,
    ),
    st.floats(0.5, 10),
)
def test_a_sweep_expires_exactly_the_stale_peers(
    steps: list[tuple[str, float, bool]], ttl: float
) -> None:
    peers = RemotePeers(ttl=ttl)
    last: dict[str, float] = {}  # the model: when each known peer was last heard
    now = 0.0
    for session, dt, leaves in steps:
        now += dt
        stale = sorted(s for s, at in last.items() if at <= now - ttl)
        assert sorted(peers.expired(now)) == stale
        for s in stale:
            del last[s]
        if leaves:
            peers.forget(session)
            last.pop(session, None)
        else:
            peers.heard(session, now)
            last[session] = now
        assert set(last) == {s for s in "abcdef" if s in peers}
