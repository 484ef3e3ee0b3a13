"""Presence heard from other gateway processes, and when it expires (pure: time passed in).

A gateway process that is SIGKILLed never publishes ``state: null`` for its sessions,
so every other process would announce them forever. Instead, each process publishes a
**liveness line** per document every ``WS_PRESENCE_HEARTBEAT_MS`` naming its local
sessions that have a presence, and a receiving process drops every remote peer that
nothing refreshed (neither an update nor a liveness line) for ``WS_PRESENCE_TTL_MS``,
announcing ``state: null`` to its own sessions as for a leave (app/gateway/presence.py).

Why a liveness line and not the latest states again: a line costs one session id (16
bytes) per announced session, where re-sending the states costs up to 2 KiB each
(PROTOCOL.md 4), on every heartbeat, to every process subscribed to the document, which
would then compare each frame with the one it holds to decide whether to forward it.
The line tells the receiver all that expiry needs (who is still there) and nothing it
already has. The one thing it cannot do, teaching a process that subscribed late the
states of peers it never heard, is listed in docs/websocket.md ("Not done yet").

The line is a line of the presence payload: ``* <session> <session> ...``. A session id
never contains ``*`` or a space; a process of an older version skips the line (its text
after the first space is not a frame).

``RemotePeers`` keeps the time each remote session was last heard in a dict ordered by
that time (a refresh moves the session to the end), so a sweep reads only the expired
sessions at the front and stops at the first live one: no timer per session, and a
sweep of a document with nothing expired costs one comparison.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["ALIVE", "RemotePeers", "liveness_line", "sessions_of"]

ALIVE: Final = "*"  # the session field of a liveness line


def liveness_line(sessions: Iterable[str]) -> str:
    """The payload line that says ``sessions`` are alive."""
    return " ".join([ALIVE, *sessions])


def sessions_of(rest: str) -> list[str]:
    """The sessions a liveness line names, given its text after ``*``."""
    return rest.split()


class RemotePeers:
    """When each session heard from another process was last refreshed."""

    def __init__(self, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError(f"the TTL must be positive, got {ttl}")
        self.ttl = ttl
        self._heard: dict[str, float] = {}  # oldest first
        self._latest = float("-inf")

    def __contains__(self, session: object) -> bool:
        return session in self._heard

    def __len__(self) -> int:
        return len(self._heard)

    def heard(self, session: str, now: float) -> None:
        """``session`` sent an update or was named in a liveness line at ``now``."""
        self._latest = now = max(now, self._latest)  # the order stays sorted by time
        self._heard.pop(session, None)
        self._heard[session] = now

    def forget(self, session: str) -> None:
        """``session`` left (its ``state: null`` came): nothing to expire."""
        self._heard.pop(session, None)

    def expired(self, now: float) -> list[str]:
        """The sessions not refreshed within the TTL before ``now``, oldest first; they
        are forgotten."""
        deadline = now - self.ttl
        gone = []
        for session, at in self._heard.items():
            if at > deadline:
                break
            gone.append(session)
        for session in gone:
            del self._heard[session]
        return gone
