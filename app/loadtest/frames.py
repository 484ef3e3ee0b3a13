"""The load generator's fast path for what a server sends: whole text frames taken off
the bytes directly, everything else through the ``websockets`` sans-I/O protocol.

Every message of PROTOCOL.md comes as one unfragmented text frame. Cutting it out takes
a few lines (a server never masks: RFC 6455 section 5.1), while the library's parser, a
generator over a stream reader, cost a client process a fifth of its CPU per delivery
(24 against 19 µs), on the same 2 cores as the server it measures (docs/loadtest.md,
"The generator's own cost").

``FrameSplitter.split`` cuts the bytes at frame boundaries itself and hands out, in the
order they came:

- each message, as ``bytes``: straight from the bytes for a final text frame with no
  extension bits while the connection is open and no fragmented message is in progress
  (the fast path); put together from the protocol's frames otherwise;
- the handshake's ``Response``, for the caller to see whether it was accepted.

Everything but the fast path goes to the protocol, always whole frames: the HTTP
response of the handshake, control frames (ping, pong, close), fragments, frames with
extension bits or a mask (which the protocol refuses, as it should); its answers (a
pong, a close) wait in ``data_to_send`` as usual. ``eof`` does the same for the end of
the stream. The protocol never sees a partial frame, so its own parser stays at a frame
boundary and its state (open, closing, closed) stays true; a partial frame waits here
for its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State

__all__ = ["FrameSplitter"]

_TEXT_FINAL: Final = 0x81  # FIN, no RSV bits, opcode 1 (text)
_HEAD_END: Final = b"\r\n\r\n"


class FrameSplitter:
    """Splits what a server sends to one ``ClientProtocol`` (see the module doc)."""

    __slots__ = ("_need", "_parts", "_pending", "_size", "_ws")

    def __init__(self, ws: ClientProtocol) -> None:
        self._ws = ws
        # The start of a frame that has not all arrived, in the chunks it came in (joined
        # once, when complete: a large welcome comes in many reads), their total size
        # and the size that completes the frame (0 while its head is incomplete).
        self._pending: list[bytes] = []
        self._size = 0
        self._need = 0
        # The parts of a fragmented message so far: while there are any, a text frame
        # belongs to the protocol (which refuses it: RFC 6455 5.4).
        self._parts: list[bytes] = []

    def split(self, data: bytes) -> Iterator[bytes | Response]:
        if self._pending:
            self._pending.append(data)
            self._size += len(data)
            if self._size < self._need:
                return
            buf = b"".join(self._pending)
            self._pending, self._size, self._need = [], 0, 0
        else:
            buf = data
        ws = self._ws
        pos = 0
        if ws.state is State.CONNECTING:
            end = buf.find(_HEAD_END)
            if end < 0:
                self._keep(buf, 0)  # the response's head is not all here yet
                return
            pos = end + len(_HEAD_END)
            ws.receive_data(buf[:pos])
            yield from self._events()
        if ws.state is not State.OPEN:  # refused, or closed: the protocol has the rest
            if pos < len(buf):
                ws.receive_data(buf[pos:])
                yield from self._events()
            return
        size = len(buf)
        while (frame := _frame_at(buf, pos)) is not None and frame[1] <= size:
            start, end, masked = frame
            if (
                buf[pos] == _TEXT_FINAL
                and not masked
                and not self._parts
                and ws.state is State.OPEN
            ):
                yield buf[start:end]
            else:
                ws.receive_data(buf[pos:end])
                yield from self._events()
            pos = end
        if pos < size:
            rest = buf[pos:]
            self._keep(rest, 0 if frame is None else frame[1] - pos)

    def eof(self) -> Iterator[bytes | Response]:
        """The end of the stream: what the protocol makes of it (a frame cut short
        never reached it, so it sees the end at a frame boundary)."""
        self._ws.receive_eof()
        yield from self._events()

    def _events(self) -> Iterator[bytes | Response]:
        for event in self._ws.events_received():
            if isinstance(event, Response):
                yield event
            elif isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.CONT):
                self._parts.append(bytes(event.data))
                if event.fin:
                    message = b"".join(self._parts)
                    self._parts = []
                    yield message

    def _keep(self, rest: bytes, need: int) -> None:
        self._pending, self._size, self._need = [rest], len(rest), need


def _frame_at(buf: bytes, pos: int) -> tuple[int, int, bool] | None:
    """(payload start, frame end, masked) of the frame at ``pos``, from its head; None
    while the head has not all arrived. The frame ends at or after ``len(buf)`` when
    its payload has not."""
    size = len(buf)
    if size - pos < 2:
        return None
    second = buf[pos + 1]
    length = second & 0x7F
    start = pos + 2
    if length == 126:
        start = pos + 4
        if size < start:
            return None
        length = int.from_bytes(buf[pos + 2 : start], "big")
    elif length == 127:
        start = pos + 10
        if size < start:
            return None
        length = int.from_bytes(buf[pos + 2 : start], "big")
    masked = bool(second & 0x80)
    if masked:
        start += 4  # the masking key: the protocol refuses a masked server frame
    return start, start + length, masked
