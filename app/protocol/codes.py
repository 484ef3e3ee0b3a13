"""The codes of PROTOCOL.md section 4: ``reject``/``error`` codes and websocket close codes.

``ErrorCode`` values are the wire strings; ``app.errors`` classes carry the same
strings as their ``code`` (the tree is the one place they are defined for raising;
this enum is the one place they are listed for the wire). ``CloseCode`` values are
the close codes a server sends; each says what the client should do next.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["CloseCode", "ErrorCode"]


class ErrorCode(StrEnum):
    INVALID = "invalid"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    BAD_MESSAGE = "bad_message"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    """Close codes (RFC 6455 7.4 for the 1xxx ones; 4xxx are ours, PROTOCOL.md 4)."""

    GOING_AWAY = 1001  # the server is going away: reconnect with `since`
    TOO_BIG = 1009  # a frame over the size limit
    INTERNAL = 1011  # a fault of the server's own on this connection: reconnect with `since`
    RESTARTING = 1012  # the server is restarting: reconnect with `since`
    UNAUTHENTICATED = 4401  # no valid `hello` in time, or an invalid or expired token
    FORBIDDEN = 4403  # no access to the document
    TOO_SLOW = 4408  # the client reads too slowly and fell too far behind
    NOT_FOUND = 4404  # no such document
    RATE_LIMITED = 4429  # the client kept on sending past its rate limit
