"""Frames straight to and from the socket: a websocket frame built once, written by every
session; messages handed to the session as they are parsed.

ASGI hides the socket: every ``send_text`` goes through Starlette and uvicorn's
``send``, which waits on an event, encodes the same string again for each connection,
builds the frame for each connection and writes it (~16-20 µs a socket). Server-to-client
frames are unmasked and, with per-message-deflate off (app/gateway/server.py), the same
bytes for every socket: ``text_frame`` builds them once per frame and
``DirectWebSocketProtocol`` (uvicorn's websockets sans-I/O protocol, given to uvicorn as
``ws=``) lets the shell write them to the transport synchronously, through
``scope["extensions"]["atelier.direct"]`` (``DirectWrite``).

A write is refused (``write_frame`` returns False) when the transport's buffer is over its
high-water mark (uvicorn's ``writable`` is clear: the peer does not read fast enough) or
the connection is closing or gone; the shell then queues the frame on its bounded send
queue and writes it once ``wait_writable`` returns (app/gateway/ws.py). Under another
server the extension is absent and the shell sends through ASGI as before.

Reads, once the session has joined (``read_directly``): each message the websockets
parser completes is handed to the shell's callback in ``data_received``, synchronously.
Through ASGI every message took uvicorn's queue, a task wake-up, a fresh await chain
(``WebSocket.receive`` → ``asgi_receive`` → ``Queue.get``, alive until the next
message: young objects the gateway's GC walked) and a ``pause_reading`` /
``resume_reading`` pair. The disconnect still comes through ASGI (the shell's reader
keeps waiting for it, and only for it). A client that floods is bounded by the
session's limits (in-flight ops, op and presence rates), as before.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, Protocol, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["EXTENSION", "DirectSocket", "DirectWebSocketProtocol", "frame_of", "text_frame"]

# The shell's callback for a whole message: ``str`` for text, ``bytes`` for binary.
OnMessage = Callable[[str | bytes], None]

EXTENSION: Final = "atelier.direct"

_SHORT: Final = struct.Struct("!BB")
_MEDIUM: Final = struct.Struct("!BBH")
_LONG: Final = struct.Struct("!BBQ")
_FIN_TEXT: Final = 0x81  # FIN + opcode 1 (text); RSV bits 0: no extension


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame (RFC 6455 5.2) carrying ``payload`` (UTF-8)."""
    n = len(payload)
    if n < 126:
        return _SHORT.pack(_FIN_TEXT, n) + payload
    if n < 1 << 16:
        return _MEDIUM.pack(_FIN_TEXT, 126, n) + payload
    return _LONG.pack(_FIN_TEXT, 127, n) + payload


# The last message framed and its frame: the fan-out hands the same ``str`` object to
# every session of a document in one loop (app/gateway/fanout.py), and the presence hub
# does the same, so one entry is enough for "encoded once". Identity, not equality: the
# reference kept here stops that object from being freed and its id reused.
_last_text: str = ""
_last_frame: bytes = text_frame(b"")


def frame_of(text: str) -> bytes:
    """The frame of ``text``, built once for consecutive calls with the same object."""
    global _last_text, _last_frame
    if text is not _last_text:
        _last_frame = text_frame(text.encode())
        _last_text = text
    return _last_frame


class DirectSocket(Protocol):
    """What the shell sees of the connection (``scope["extensions"][EXTENSION]``)."""

    @property
    def closed(self) -> bool: ...

    def read_directly(self, on_message: OnMessage) -> bool: ...

    def write_frame(self, frame: bytes) -> bool: ...

    def buffered(self) -> int: ...

    async def wait_writable(self) -> None: ...


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets sans-I/O protocol, offering itself as ``DirectSocket``.

    The frames written here bypass ``self.conn`` (websockets' ``ServerProtocol``), which
    keeps no state about data frames it sends; the close still goes through ASGI (and
    ``self.conn``), after the frames before it, on the same transport.
    """

    def handle_connect(self, event: object) -> None:
        super().handle_connect(event)  # type: ignore[arg-type]
        if self.handshake_initiated and not self.close_sent:
            # The app's task is created but has not run: it finds the extension.
            extensions = cast(dict[str, object], self.scope["extensions"])
            extensions[EXTENSION] = self

    @property
    def closed(self) -> bool:
        return self.close_sent or self.disconnected or self.transport.is_closing()

    # Called once per socket per frame: plain attribute tests (``writable.is_set()``
    # is a Python call; ``paused`` mirrors it).
    paused = False

    def pause_writing(self) -> None:
        self.paused = True
        super().pause_writing()

    def resume_writing(self) -> None:
        self.paused = False
        super().resume_writing()

    def write_frame(self, frame: bytes) -> bool:
        """Write a frame built by ``text_frame``; False (nothing written) when the
        transport is paused (over its high-water mark) or the connection is closing."""
        if self.paused or self.close_sent or self.disconnected or not self.handshake_complete:
            return False
        transport = self.transport
        if transport.is_closing():
            return False
        transport.write(frame)
        return True

    on_message: OnMessage | None = None

    def read_directly(self, on_message: OnMessage) -> bool:
        """From now on, hand every message to ``on_message`` instead of the ASGI queue.
        False (nothing changed) while messages wait in that queue: the shell takes them
        first, in order, and asks again."""
        if not self.queue.empty():
            return False
        self.on_message = on_message
        return True

    def send_receive_event_to_app(self) -> None:
        on_message = self.on_message
        if on_message is None:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return  # past our close: dropped, as uvicorn does
        if self.curr_msg_data_type != "text":
            on_message(bytes(data))
            return
        try:
            text = bytes(data).decode()
        except UnicodeDecodeError:
            self.logger.info("Invalid UTF-8 sequence received from client.")
            self.conn.send_close(1007)
            self.handle_parser_exception()
            return
        on_message(text)

    def buffered(self) -> int:
        """Bytes written and not yet taken by the kernel."""
        return self.transport.get_write_buffer_size()

    async def wait_writable(self) -> None:
        """Until the transport drains below its low-water mark, or the connection is lost
        (uvicorn sets ``writable`` then too)."""
        await self.writable.wait()
