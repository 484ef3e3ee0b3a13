"""The wire protocol of PROTOCOL.md section 4, sans-I/O (STYLE.md habit 1).

- ``codes``: ``ErrorCode`` and ``CloseCode``;
- ``messages``: parse client frames into typed messages, build server frames once;
- ``limits``: token buckets and the frame size limit, with the time passed in;
- ``session``: one connection's state machine, returning actions for the shell.

Pure: the standard library, orjson, ``app.errors`` and ``app.domain`` only. The
asyncio shell that drives it with a real socket is ``app.gateway.ws``.
"""

from app.protocol.codes import CloseCode, ErrorCode
from app.protocol.messages import WireEvent, encode_event
from app.protocol.session import (
    Action,
    Authenticate,
    AwaitEvent,
    Close,
    PublishPresence,
    Send,
    Session,
    SessionConfig,
    SessionError,
    State,
    Submit,
)

__all__ = [
    "Action",
    "Authenticate",
    "AwaitEvent",
    "Close",
    "CloseCode",
    "ErrorCode",
    "PublishPresence",
    "Send",
    "Session",
    "SessionConfig",
    "SessionError",
    "State",
    "Submit",
    "WireEvent",
    "encode_event",
]
