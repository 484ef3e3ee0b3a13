"""The load generator's fast path for server frames (app/loadtest/frames.py), against the
``websockets`` library's own server and client protocols: the same messages, in the same
order, whatever the cuts in the bytes; control frames, fragments and bad frames still
reach the protocol, which answers them as it would without the fast path."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from app.loadtest.frames import FrameSplitter


class Reader:
    """What app/loadtest/client.py's ``Socket`` does with the splitter's items, plus a
    record of every chunk the splitter gave the protocol."""

    def __init__(self) -> None:
        self.ws = ClientProtocol(parse_uri("ws://127.0.0.1:1/ws"), max_size=None)
        self.ws.send_request(self.ws.connect())
        self.splitter = FrameSplitter(self.ws)
        self.messages: list[bytes] = []
        self.opened = False
        self.to_protocol: list[bytes] = []
        receive = self.ws.receive_data

        def spy(data: bytes) -> None:
            self.to_protocol.append(bytes(data))
            receive(data)

        self.ws.receive_data = spy  # type: ignore[method-assign]

    def feed(self, data: bytes) -> None:
        for item in self.splitter.split(data):
            if isinstance(item, bytes):
                self.messages.append(item)
            else:
                self.opened = self.ws.handshake_exc is None

    @property
    def fast(self) -> bool:
        """No final text frame went through the protocol (the chunks it got are whole
        frames after the handshake's answer)."""
        return not any(chunk[:1] == b"\x81" for chunk in self.to_protocol[1:])


def handshake(reader: Reader) -> tuple[ServerProtocol, bytes]:
    """A server protocol that accepted the reader's request; the bytes of its answer."""
    server = ServerProtocol()
    server.receive_data(b"".join(reader.ws.data_to_send()))
    [request] = server.events_received()
    assert isinstance(request, Request)
    server.send_response(server.accept(request))
    return server, b"".join(server.data_to_send())


# A message: text (one frame), fragmented text (several), or something the caller does
# not take as a message (ping, binary).
texts = st.text(max_size=300)
items = st.one_of(
    st.tuples(st.just("text"), texts),
    st.tuples(st.just("frag"), st.lists(texts, min_size=2, max_size=4)),
    st.tuples(st.just("ping"), st.binary(max_size=20)),
    st.tuples(st.just("binary"), st.binary(max_size=200)),
)


def server_bytes(server: ServerProtocol, plan: list[tuple[str, Any]]) -> tuple[bytes, list[bytes]]:
    """The frames of ``plan`` as the server writes them; the text messages they carry."""
    out: list[bytes] = []
    expected: list[bytes] = []
    for kind, value in plan:
        if kind == "text":
            server.send_text(value.encode())
            expected.append(value.encode())
        elif kind == "frag":
            server.send_text(value[0].encode(), fin=False)
            for part in value[1:-1]:
                server.send_continuation(part.encode(), fin=False)
            server.send_continuation(value[-1].encode(), fin=True)
            expected.append("".join(value).encode())
        elif kind == "ping":
            server.send_ping(value)
        else:
            server.send_binary(value)
        out.extend(server.data_to_send())
    return b"".join(out), expected


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(marks)]


@settings(max_examples=150, deadline=None)
@given(plan=st.lists(items, max_size=12), points=st.lists(st.integers(0, 10**6), max_size=12))
def test_every_message_in_order_whatever_the_cuts(
    plan: list[tuple[str, Any]], points: list[int]
) -> None:
    reader = Reader()
    server, answer = handshake(reader)
    frames, expected = server_bytes(server, plan)
    for chunk in cut(answer + frames, points):
        reader.feed(chunk)
    assert reader.opened and reader.ws.state is State.OPEN
    assert reader.messages == expected
    assert reader.fast
    # Every ping was answered with its pong, through the protocol.
    server.receive_data(b"".join(reader.ws.data_to_send()))
    pongs = [e.data for e in server.events_received() if isinstance(e, Frame)]
    assert pongs == [value for kind, value in plan if kind == "ping"]


@pytest.mark.parametrize("size", [125, 126, 65_535, 65_536, 200_000])
def test_the_three_length_forms(size: int) -> None:
    reader = Reader()
    server, answer = handshake(reader)
    frames, expected = server_bytes(server, [("text", "x" * size), ("text", "end")])
    reader.feed(answer + frames[:1])  # the handshake and one byte of the frame's head
    for i in range(1, len(frames), 4096):
        reader.feed(frames[i : i + 4096])
    assert reader.messages == expected and reader.fast


def test_the_answer_and_the_first_frame_in_one_read() -> None:
    reader = Reader()
    server, answer = handshake(reader)
    frames, expected = server_bytes(server, [("text", "welcome")])
    reader.feed(answer + frames)
    assert reader.opened and reader.messages == expected and reader.fast


@pytest.mark.parametrize(
    "frame",
    [
        b"\x81\x82abcd" + bytes([ord("h") ^ ord("a"), ord("i") ^ ord("b")]),  # masked
        b"\xc1\x02hi",  # RSV1 without a negotiated extension
        b"\x80\x02hi",  # a continuation with no message to continue
        b"\x01\x02hi",  # the first part of a message: the text frame after it is illegal
    ],
    ids=["masked", "rsv1", "stray-continuation", "text-inside-a-fragmented-message"],
)
def test_a_bad_frame_goes_to_the_protocol_which_fails_the_connection(frame: bytes) -> None:
    reader = Reader()
    _, answer = handshake(reader)
    reader.feed(answer + frame + b"\x81\x02ok")
    assert reader.messages == []  # nothing after the bad frame is taken as a message
    assert reader.ws.state is State.CLOSING
    assert reader.ws.close_sent is not None and reader.ws.close_sent.code == 1002


def test_a_refused_handshake_gives_the_protocol_everything() -> None:
    reader = Reader()
    body = b"no such document"
    reader.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert not reader.opened and reader.ws.handshake_exc is not None
    assert reader.messages == []


def test_after_a_close_frame_the_protocol_has_the_rest() -> None:
    reader = Reader()
    server, answer = handshake(reader)
    frames, _ = server_bytes(server, [("text", "one")])
    server.send_close(1001, "going away")
    closing = b"".join(server.data_to_send())
    reader.feed(answer + frames + closing + b"\x81\x03two")
    assert reader.messages == [b"one"]
    assert reader.ws.state is not State.OPEN
