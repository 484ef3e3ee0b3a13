"""Websocket fuzz over a real gateway: random frames (text, binary, oversize, JSON and
not) on live connections, before and after hello. Every frame gets the documented
answer (``error``/``reject`` with a protocol code, or a close with a documented close
code), and the process stays healthy: /healthz is 200 and a normal client still works."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from tests.e2e.ws_client import make_doc, open_ws
from tests.fuzz.budget import examples
from tests.fuzz.test_parsers import frames

CLOSES = {1000, 1009, 4401, 4403, 4404, 4429, 1011}
CODES = {
    "invalid",
    "conflict",
    "forbidden",
    "not_found",
    "rate_limited",
    "too_large",
    "bad_message",
    "unavailable",
}
MAX = 4096

ws_frames = st.one_of(
    frames,
    st.sampled_from(["x" * (MAX + 1), b"\x00" * (MAX + 1), "é" * (MAX // 2 + 1)]),
    st.builds(
        lambda i, op: json.dumps({"type": "op", "id": f"z{i}", "op": op}),
        st.integers(0, 10**6),
        frames.map(lambda f: f if isinstance(f, str) else None),
    ),
)
cases = st.tuples(st.booleans(), st.lists(ws_frames, min_size=1, max_size=8))
tried = {"connections": 0, "frames": 0}


async def _drain(ws: Any) -> int | None:
    """Read what the server says for a little while; the close code if it closed."""
    try:
        while True:
            raw = await asyncio.wait_for(ws.ws.recv(), 0.2)
            message = orjson.loads(raw)
            assert message["type"] in {
                "welcome",
                "event",
                "events",
                "ack",
                "reject",
                "presence",
                "pong",
                "error",
            }, message
            if message["type"] in {"reject", "error"}:
                assert message["code"] in CODES, message
    except TimeoutError:
        return None
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


@pytest.mark.timeout(max(60, examples(30)))  # about 0.3 s a connection at most
async def test_random_frames_never_hurt_the_gateway(make_gateway: Any) -> None:
    gw = await make_gateway(MAX_BODY_BYTES=str(MAX))
    doc = await make_doc(gw, "alice")
    token = gw.token("alice")

    @settings(max_examples=examples(30), deadline=None, suppress_health_check=list(HealthCheck))
    @given(cases)
    def run(case: tuple[bool, list[str | bytes]]) -> None:
        # hypothesis draws the cases here; the event loop plays them below
        pending.append(case)

    pending: list[tuple[bool, list[str | bytes]]] = []
    run()
    for hello_first, sent in pending:
        ws = await open_ws(gw, doc, max_size=None)
        tried["connections"] += 1
        code = None
        if hello_first:
            await ws.hello(token)
        for frame in sent:
            try:
                await ws.send(frame)
            except ConnectionClosed:
                break
            tried["frames"] += 1
            code = await _drain(ws)
            if code is not None:
                break
        assert code is None or code in CLOSES, code
        await ws.ws.close()
    async with gw.client("alice") as http:
        assert (await http.get("/healthz")).status_code == 200
    ok = await open_ws(gw, doc)
    await ok.hello(token)
    await ok.op("after-fuzz", {"kind": "doc.rename", "title": "still fine"})
    assert (await ok.until("ack"))[-1]["id"] == "after-fuzz"
    print(f"\nwebsocket fuzz: {tried['connections']} connections, {tried['frames']} frames")
