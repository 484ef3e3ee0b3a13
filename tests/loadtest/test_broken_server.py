"""The correctness check fails loudly, with a non-zero exit, against a server that breaks
the protocol's delivery guarantee: a fake that speaks just enough of PROTOCOL.md (the
setup calls, ``GET /api/documents/{id}`` and the websocket) and never delivers one
version to anyone."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.loadtest.conftest import ROOT

SKIPPED_V = 8  # the version the fake never delivers


class Fake:
    def __init__(self) -> None:
        self.head = 0
        self.sockets: set[WebSocket] = set()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/documents", self.create, methods=["POST"]),
                Route("/api/documents/{doc}/ops", self.op, methods=["POST"]),
                Route("/api/documents/{doc}/members/{user}", self.member, methods=["PUT"]),
                Route("/api/documents/{doc}", self.read, methods=["GET"]),
                WebSocketRoute("/ws/documents/{doc}", self.ws),
            ]
        )

    async def create(self, request: Request) -> JSONResponse:
        self.head = 1
        return JSONResponse({"id": (await request.json())["id"], "v": 1}, status_code=201)

    async def op(self, request: Request) -> JSONResponse:
        self.head += 1
        return JSONResponse({"v": self.head})

    async def member(self, request: Request) -> JSONResponse:
        return JSONResponse({})

    async def read(self, request: Request) -> JSONResponse:
        doc = request.path_params["doc"]
        return JSONResponse({"id": doc, "v": self.head, "state": {"id": doc, "layers": []}})

    async def ws(self, ws: WebSocket) -> None:
        await ws.accept()
        with contextlib.suppress(WebSocketDisconnect):
            await ws.receive_text()  # hello
            state = {"id": "d", "v": self.head, "layers": []}
            welcome = {"type": "welcome", "doc": "d", "v": self.head, "role": "editor"}
            await ws.send_text(
                orjson.dumps({**welcome, "user": "u", "session": "s", "state": state}).decode()
            )
            self.sockets.add(ws)
            try:
                while True:
                    msg: dict[str, Any] = orjson.loads(await ws.receive_text())
                    if msg.get("type") == "op":
                        await self.commit(ws, msg)
            finally:
                self.sockets.discard(ws)

    async def commit(self, ws: WebSocket, msg: dict[str, Any]) -> None:
        self.head += 1
        event = {"type": "event", "v": self.head, "op": msg["op"], "actor": "u"}
        frame = orjson.dumps({**event, "id": msg["id"], "ts": int(time.time() * 1000)}).decode()
        if self.head != SKIPPED_V:
            for peer in list(self.sockets):
                with contextlib.suppress(Exception):
                    await peer.send_text(frame)
        await ws.send_text(orjson.dumps({"type": "ack", "id": msg["id"], "v": self.head}).decode())


@pytest.fixture
async def fake_url() -> AsyncIterator[str]:
    config = uvicorn.Config(Fake().app(), host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_a_lost_version_fails_the_run(fake_url: str, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "loadtest", "hot-doc", "--url", fake_url,
        "--secret", "fake-secret", "--processes", "2", "--duration", "2", "--warmup", "0.5",
        "--viewers", "6", "--editors", "2", "--rate", "10", "--drain", "2",
        "--out", str(tmp_path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 1, out.decode() + err.decode()
    assert "CORRECTNESS CHECK FAILED" in err.decode()
    result, page = written(tmp_path)
    correctness = result["correctness"]
    assert correctness["ok"] is False
    assert correctness["lost"] == 8  # every client missed the one version
    assert "CORRECTNESS CHECK FAILED" in page


def written(out: Path) -> tuple[dict[str, Any], str]:
    (result_file,) = out.glob("loadtest-hot-doc-*.json")
    (page,) = out.glob("loadtest-hot-doc-*.html")
    return orjson.loads(result_file.read_bytes()), page.read_text()
