"""A websocket client speaking PROTOCOL.md section 4, for the e2e tests."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.observability.metrics import REGISTRY
from tests.e2e.conftest import OPEN_CLIENTS, Gateway

__all__ = [
    "Client",
    "close_code",
    "closes_4408",
    "make_doc",
    "open_ws",
    "rename",
    "slow_close_code",
    "ws_url",
]


def ws_url(gateway: Gateway, doc_id: str) -> str:
    return gateway.url.replace("http://", "ws://") + f"/ws/documents/{doc_id}"


async def make_doc(gateway: Gateway, owner: str = "alice", **members: str) -> str:
    """A new document owned by ``owner``, with ``members`` (user=role)."""
    doc_id = "d" + uuid.uuid4().hex[:12]
    async with gateway.client(owner) as http:
        r = await http.post("/api/documents", json={"id": doc_id, "title": "Poster"})
        assert r.status_code == 201, r.text
        for user, role in members.items():
            r = await http.put(f"/api/documents/{doc_id}/members/{user}", json={"role": role})
            assert r.status_code == 200, r.text
    return doc_id


def rename(title: str) -> dict[str, Any]:
    return {"kind": "doc.rename", "title": title}


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: Any) -> None:
        await self.ws.send(
            message if isinstance(message, str | bytes) else orjson.dumps(message).decode()
        )

    async def recv(self, wait: float = 5.0) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), wait)
        value: dict[str, Any] = orjson.loads(frame)
        return value

    async def hello(self, token: str, since: int | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "hello", "token": token}
        if since is not None:
            message["since"] = since
        await self.send(message)
        welcome = await self.recv()
        assert welcome["type"] == "welcome", welcome
        return welcome

    async def op(self, op_id: str, op: Any) -> None:
        await self.send({"type": "op", "id": op_id, "op": op})

    async def until(self, kind: str, wait: float = 5.0) -> list[dict[str, Any]]:
        """Every message up to and including the first of type ``kind``."""
        got = []
        while True:
            message = await self.recv(wait)
            got.append(message)
            if message["type"] == kind:
                return got

    async def quiet(self, wait: float = 0.3) -> None:
        """Nothing more arrives within ``wait``."""
        try:
            message = await asyncio.wait_for(self.ws.recv(), wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {message!r}")


async def open_ws(gateway: Gateway, doc_id: str, **kwargs: Any) -> Client:
    ws = await connect(ws_url(gateway, doc_id), open_timeout=5, close_timeout=2, **kwargs)
    OPEN_CLIENTS.append(ws)
    return Client(ws)


def closes_4408() -> float:
    """How many sockets this process's gateways have closed 4408 so far."""
    return REGISTRY.get_sample_value("atelier_ws_closes_total", {"code": "4408"}) or 0.0


async def slow_close_code(client: Client, before: float, wait: float = 60.0) -> int | None:
    """The close code of a client that read nothing: it starts reading as soon as an
    in-process gateway has closed a socket 4408 (more than ``before``), since the server
    drops a socket whose close is not read within its close timeout, and a dropped
    socket's unread bytes, the close frame among them, never reach the client."""
    async with asyncio.timeout(wait):
        while closes_4408() <= before:  # noqa: ASYNC110 - a counter, polled
            await asyncio.sleep(0.01)
    return await close_code(client, wait=wait)


async def close_code(client: Client, wait: float = 5.0) -> int | None:
    """Read until the server closes; its close code."""
    try:
        async with asyncio.timeout(wait):
            while True:
                await client.ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
