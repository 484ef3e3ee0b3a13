"""Frames straight to the socket (app/gateway/direct.py) and the shell's switch between the
direct write and the bounded queue (app/gateway/ws.py), without a socket."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from app.gateway.direct import EXTENSION, frame_of, text_frame
from app.gateway.ws import Connection, WsConfig, _Stop
from app.protocol import CloseCode, SessionConfig


def parse(data: bytes) -> Frame:
    """websockets' own parser, as a client reads a server's (unmasked) frame."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None, extensions=[])
    try:
        next(parser)
    except StopIteration as done:
        frame = cast(Frame, done.value)
        assert reader.at_eof(), "bytes left after the frame"
        return frame
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_a_text_frame_is_what_websockets_builds_and_parses(size: int) -> None:
    text = ("é" * size)[: size // 2] + "x" * (size - size // 2)
    payload = text.encode()
    data = text_frame(payload)
    assert data == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    frame = parse(data)
    assert frame.opcode is Opcode.TEXT and frame.fin
    assert bytes(frame.data).decode() == text


def test_frame_of_builds_a_frame_once_for_the_same_string() -> None:
    text = '{"type":"event","v":' + str(12345) + "}"
    first = frame_of(text)
    assert frame_of(text) is first  # the fan-out's loop: one frame for every socket
    other = "".join(['{"type":"event","v":', "12345}"])  # equal, another object
    again = frame_of(other)
    assert again == first and again is not first
    assert frame_of("é") == text_frame("é".encode())


class FakeDirect:
    """A transport that takes frames while ``open``; ``wait_writable`` until it is."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.closed = False
        self.writable = asyncio.Event()
        self.writable.set()

    def write_frame(self, frame: bytes) -> bool:
        if self.closed or not self.writable.is_set():
            return False
        self.written.append(bytes(parse(frame).data).decode())
        return True

    def buffered(self) -> int:
        return 0

    async def wait_writable(self) -> None:
        await self.writable.wait()


class FakeWebSocket:
    def __init__(self, direct: FakeDirect | None) -> None:
        self.scope: dict[str, Any] = {"extensions": {EXTENSION: direct} if direct else {}}
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        await asyncio.sleep(0)
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def connection(ws: FakeWebSocket, send_queue: int = 8) -> Connection:
    svc = SimpleNamespace(fanout=None)
    config = WsConfig(session=SessionConfig(), send_queue=send_queue)
    return Connection(cast(Any, ws), cast(Any, svc), "doc", config)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_frames_go_straight_to_the_socket_while_it_takes_them() -> None:
    direct = FakeDirect()
    conn = connection(FakeWebSocket(direct))
    async with asyncio.TaskGroup() as group:
        conn._group = group
        conn._enqueue("a")
        conn._enqueue("b")
        assert direct.written == ["a", "b"]
        assert conn.queued == 0
        assert conn._writer is None  # no task while the socket keeps up
        conn._group = None


async def test_a_paused_socket_queues_and_the_writer_drains_in_order() -> None:
    direct = FakeDirect()
    conn = connection(FakeWebSocket(direct))
    async with asyncio.TaskGroup() as group:
        conn._group = group
        conn._enqueue("a")
        direct.writable.clear()  # over the high-water mark
        conn._enqueue("b")
        conn._enqueue("c")
        assert direct.written == ["a"] and list(conn.frames) == ["b", "c"]
        assert conn._writer is not None
        await settle()
        assert list(conn.frames) == ["b", "c"]  # the writer waits for the socket
        direct.writable.set()
        # writable again, the writer not yet run: a new frame still queues behind
        conn._enqueue("d")
        assert direct.written == ["a"]
        await settle()
        assert direct.written == ["a", "b", "c", "d"] and conn.queued == 0
        conn._enqueue("e")  # the queue is empty: straight again
        assert direct.written[-1] == "e"
        assert conn._writer is not None
        conn._writer.cancel()
        conn._group = None


async def test_a_full_queue_closes_4408_and_drops_the_backlog() -> None:
    direct = FakeDirect()
    ws = FakeWebSocket(direct)
    conn = connection(ws, send_queue=2)
    with pytest.raises(ExceptionGroup) as ended:  # the writer's _Stop ends the group
        async with asyncio.TaskGroup() as group:
            conn._group = group
            direct.writable.clear()
            for frame in ("a", "b", "c"):
                conn._enqueue(frame)
            assert conn.close_with is not None and conn.close_with.code == CloseCode.TOO_SLOW
            assert conn.queued == 0
            conn._enqueue("d")  # after the close: nothing more
            assert conn.queued == 0
    assert [type(e) for e in ended.value.exceptions] == [_Stop]
    assert direct.written == []
    assert ws.closed is not None and ws.closed[0] == CloseCode.TOO_SLOW
    assert conn._timer is not None  # the close may take this long, then it is dropped
    conn._timer.cancel()


async def test_a_closed_socket_ends_the_writer() -> None:
    direct = FakeDirect()
    conn = connection(FakeWebSocket(direct))
    with pytest.raises(ExceptionGroup) as ended:  # the writer's _Stop ends the group
        async with asyncio.TaskGroup() as group:
            conn._group = group
            direct.writable.clear()
            conn._enqueue("a")
            direct.closed = True
            direct.writable.set()
    assert [type(e) for e in ended.value.exceptions] == [_Stop]
    assert direct.written == []


async def test_without_the_extension_every_frame_goes_through_asgi_in_order() -> None:
    ws = FakeWebSocket(None)
    conn = connection(ws)
    assert conn.direct is None
    async with asyncio.TaskGroup() as group:
        conn._group = group
        for frame in ("a", "b", "c"):
            conn._enqueue(frame)
        await settle()
        assert ws.sent == ["a", "b", "c"]
        assert conn._writer is not None
        conn._writer.cancel()
        conn._group = None
