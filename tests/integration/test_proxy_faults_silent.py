"""A gateway whose PostgreSQL goes silent: packets held, nothing refused or reset (a
network partition, as opposed to a server that is down). The product promise is the
same as for a refused connection: `unavailable` within a bounded time, never a hang,
and the op re-sent with the same id once the network is back is stored exactly once.

Without a bound of its own, an op waited for asyncpg's ``command_timeout`` (20 s) on
the statement in flight and then on what followed it: 40 s measured over the websocket
and HTTP. The command handler now answers an op `unavailable` once it has waited
``OP_COMMIT_TIMEOUT_MS`` (5 s by default) for its commit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import urlsplit

from tests.support.faultrig import FaultRig, Socket

ANSWER_WITHIN = 6.0  # OP_COMMIT_TIMEOUT_MS is 5 s by default


class SilentProxy:
    """Forwards TCP to ``target`` until ``silence()``: from then on it holds every byte
    in both directions and keeps the sockets open, as a partition would."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.talking = asyncio.Event()
        self.talking.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> SilentProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def silence(self) -> None:
        self.talking.clear()

    def speak(self) -> None:
        self.talking.set()

    async def close(self) -> None:
        self.speak()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.talking.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                await self.talking.wait()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


def rename(title: str) -> dict[str, Any]:
    return {"kind": "doc.rename", "title": title}


async def test_a_silent_postgres_is_answered_unavailable_within_bounds(
    pg_clean: str, redis_url: str, redis_prefix: str
) -> None:
    target = urlsplit(pg_clean)
    silent = await SilentProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    dsn = pg_clean.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{silent.port}")
    try:
        async with FaultRig(pg_clean, redis_url, redis_prefix) as rig:
            await rig.start("serve", DATABASE_URL=dsn)
            async with rig.http("alice") as http:
                r = await http.post("/api/documents", json={"id": "dsilent", "title": "P"})
                assert r.status_code == 201, r.text
            socket = await Socket.open(rig, "dsilent", "alice")
            try:
                before = await socket.op("before", rename("a"))
                assert before["type"] == "ack", before
                silent.silence()
                try:
                    started = time.monotonic()
                    answer = await socket.op("during", rename("b"), within=ANSWER_WITHIN + 2)
                    took = time.monotonic() - started
                    assert answer["type"] == "reject", answer
                    assert answer["code"] == "unavailable", answer
                    assert took < ANSWER_WITHIN, took
                    # over HTTP too (the document's model is in memory: only the commit waits)
                    async with rig.http("alice", timeout=ANSWER_WITHIN + 2) as http:
                        started = time.monotonic()
                        r = await http.post(
                            "/api/documents/dsilent/ops", json={"id": "by-http", "op": rename("c")}
                        )
                        took = time.monotonic() - started
                    assert r.status_code == 503, r.text
                    assert r.json()["code"] == "unavailable", r.text
                    assert took < ANSWER_WITHIN, took
                finally:
                    silent.speak()  # the network is back: the held transactions go on
                # Re-sent with the same id, each op is stored once, in the order decided.
                again = await socket.op("during", rename("b"), within=30)
                assert again["type"] == "ack", again
                async with rig.http("alice") as http:
                    r = await http.post(
                        "/api/documents/dsilent/ops", json={"id": "by-http", "op": rename("c")}
                    )
                    assert r.status_code == 200, r.text
                    by_http = r.json()["v"]
                assert by_http == again["v"] + 1, (by_http, again)
            finally:
                await socket.close()
            rig.assert_alive()
    finally:
        await silent.close()
