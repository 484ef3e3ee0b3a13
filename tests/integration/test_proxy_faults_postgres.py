"""PostgreSQL cut under the real processes (``python -m app serve | relay | worker |
snapshotter``), each reaching it through a ``TcpProxy``: while it is cut, ops answer
``unavailable`` within a bounded time over the websocket and over HTTP (never an ack);
after it is restored, every process is still alive, logged the loss and the
reconnect, reconnected with a spaced backoff (not a busy loop), and resumed its work:
the re-sent ops are acked once, the relay publishes every event once, the worker's
views catch up and ``verify`` passes, the snapshotter writes snapshots again."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from datetime import datetime
from typing import Any

import asyncpg

from app.bus import Keys, Redis
from app.store.postgres import PostgresStore
from tests.support.appprocess import ROOT, AppProcess
from tests.support.faultrig import FaultRig, Socket, log_events, wait_for
from tests.support.relay import Writer, assert_published_exactly
from tests.support.worker import assert_views_exact, wait_caught_up

CUT_SECONDS = 3.0
UNAVAILABLE_WITHIN = 6.0


def rename(n: int) -> dict[str, Any]:
    return {"kind": "doc.rename", "title": f"title {n}"}


async def _retry_ws(socket: Socket, op_id: str, op: dict[str, Any]) -> int:
    """What a client does after ``unavailable``: the same op with the same id again."""
    deadline = time.monotonic() + 30
    while True:
        answer = await socket.op(op_id, op)
        if answer["type"] == "ack":
            return int(answer["v"])
        assert answer["code"] == "unavailable", answer
        assert time.monotonic() < deadline, f"{op_id} never acked"
        await asyncio.sleep(0.2)


async def _retry_http(rig: FaultRig, doc_id: str, op_id: str, op: dict[str, Any]) -> int:
    deadline = time.monotonic() + 30
    async with rig.http("alice") as http:
        while True:
            r = await http.post(f"/api/documents/{doc_id}/ops", json={"id": op_id, "op": op})
            if r.status_code == 200:
                return int(r.json()["v"])
            assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text
            assert time.monotonic() < deadline, f"{op_id} never acked"
            await asyncio.sleep(0.2)


def _records(process: AppProcess, *texts: str) -> list[dict[str, Any]]:
    """The process's JSON log records whose message starts with one of ``texts``."""
    return [r for r in log_events(process) if str(r.get("event", "")).startswith(texts)]


def _failures(process: AppProcess) -> list[dict[str, Any]]:
    """Error lines, and tracebacks logged by the app's own code (asyncpg's pool logs
    its failed reconnects with one, at warning level: not ours)."""
    return [
        r
        for r in log_events(process)
        if r.get("level") in ("error", "critical")
        or ("exception" in r and str(r.get("logger", "")).startswith("app"))
    ]


def _assert_spaced(process: AppProcess, retry: str) -> None:
    """The reconnect attempts logged during the cut (``retry`` lines) are spaced: a
    handful (a busy loop would log hundreds), and one wait at least 0.3 s (the backoff
    grew, or the process polls at a fixed interval that long)."""
    stamps = [datetime.fromisoformat(r["timestamp"]) for r in _records(process, retry)]
    assert stamps, f"{process.name} logged no {retry!r}:\n{process.output}"
    assert len(stamps) <= 20, f"{process.name}: {len(stamps)} attempts in a {CUT_SECONDS} s cut"
    if len(stamps) > 1:
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
        assert max(gaps) >= 0.3, f"{process.name}: {gaps} s apart"


# Per process: what it logs when it loses PostgreSQL, when it retries, when it is back.
LOSS_RETRY_BACK = {
    "serve": ("read watch disconnected", "read watch disconnected", "read watch reconnected"),
    "relay": (
        "relay lease lost",
        "relay lease: database unavailable",
        "relay lease acquired",
    ),
    "worker": (
        "worker lost its lease connection",
        "worker cannot reach the database",
        "worker connected",
    ),
    "snapshotter": (
        "log follower lost its connection",
        "log follower cannot reconnect",
        "log follower reconnected",
    ),
}


async def test_postgres_cut_and_restored_under_every_process(
    pg_clean: str, redis_url: str, redis_prefix: str, redis: Redis, store: PostgresStore
) -> None:
    async with FaultRig(pg_clean, redis_url, redis_prefix) as rig:
        await rig.start("serve")
        relay, worker, snapshotter = await asyncio.gather(
            rig.start("relay"), rig.start("worker"), rig.start("snapshotter")
        )
        await wait_for(lambda: relay.said("relay lease acquired"), 30, relay.output)
        await wait_for(lambda: worker.said("shard taken"), 30, worker.output)
        await wait_for(lambda: snapshotter.said("snapshotter following"), 30, snapshotter.output)

        doc_id = "dfault"
        async with rig.http("alice") as http:
            r = await http.post("/api/documents", json={"id": doc_id, "title": "Poster"})
            assert r.status_code == 201, r.text
        writer = await Socket.open(rig, doc_id, "alice")
        viewer = await Socket.open(rig, doc_id, "alice")
        try:
            for n in range(6):
                assert (await writer.op(f"before-{n}", rename(n)))["type"] == "ack"
            head = await store.head()

            # -- the cut -----------------------------------------------------------
            rig.pg.cut()
            cut_at = time.monotonic()
            started = time.monotonic()
            answer = await writer.op("cut-ws", rename(100), within=UNAVAILABLE_WITHIN)
            ws_seconds = time.monotonic() - started
            assert answer == {
                "type": "reject",
                "id": "cut-ws",
                "code": "unavailable",
                "message": answer["message"],
            }, answer
            async with rig.http("alice", timeout=UNAVAILABLE_WITHIN) as http:
                started = time.monotonic()
                r = await http.post(
                    f"/api/documents/{doc_id}/ops", json={"id": "cut-http", "op": rename(101)}
                )
                http_seconds = time.monotonic() - started
            assert r.status_code == 503, r.text
            body = r.json()
            assert set(body) == {"code", "message"} and body["code"] == "unavailable", body
            assert ws_seconds < UNAVAILABLE_WITHIN and http_seconds < UNAVAILABLE_WITHIN
            print(f"unavailable after {ws_seconds:.3f} s (websocket), {http_seconds:.3f} s (HTTP)")
            await asyncio.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
            rig.assert_alive()
            rig.pg.restore()

            # -- after -------------------------------------------------------------
            v_ws = await _retry_ws(writer, "cut-ws", rename(100))
            v_http = await _retry_http(rig, doc_id, "cut-http", rename(101))
            for n in range(6):
                assert (await writer.op(f"after-{n}", rename(200 + n)))["type"] == "ack"
            # Sent again once more: the same ack, nothing stored twice.
            assert await writer.op("cut-ws", rename(100)) == {
                "type": "ack",
                "id": "cut-ws",
                "v": v_ws,
            }
            final = await store.head()
            stored = await store.read_stream(doc_id)
            op_ids = [e.op_id for e in stored if e.op_id is not None]
            assert sorted(op_ids) == sorted(set(op_ids)), "an op stored twice"
            assert {e.op_id: e.v for e in stored}["cut-ws"] == v_ws
            assert {e.op_id: e.v for e in stored}["cut-http"] == v_http
            assert len(writer.answers["cut-ws"]) >= 2
            assert [a["type"] for a in writer.answers["cut-ws"]].count("ack") == 2

            # The viewer got every event once, in order, from its welcome on.
            last_v = stored[-1].v
            await wait_for(
                lambda: bool(viewer.events) and viewer.events[-1]["v"] >= last_v,
                20,
                "the viewer's events",
            )
            assert [e["v"] for e in viewer.events] == list(range(viewer.welcome_v + 1, last_v + 1))
        finally:
            await writer.close()
            await viewer.close()

        # The relay: every event published once, up to the head.
        keys = Keys(redis_prefix)

        async def published() -> bool:
            return await redis.get(keys.relay_position) == b"%d" % final

        await wait_for(published, 30, f"the relay to publish up to {final}:\n{relay.output}")
        assert await assert_published_exactly(redis, keys, store) == final

        # The worker: views caught up and exact, and verify passes.
        conn = await asyncpg.connect(pg_clean)
        try:
            await wait_caught_up(conn, within=30)
            assert await assert_views_exact(conn) == 1
            assert final > head
        finally:
            await conn.close()
        verify = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "verify",
            env={**rig.env(), "DATABASE_URL": pg_clean},
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(verify.communicate(), 60)
        assert verify.returncode == 0, out.decode()

        # The snapshotter: a snapshot past the cut.
        async def snapshot_after_cut() -> bool:
            v = await store.pool.fetchval("SELECT max(v) FROM snapshots WHERE doc_id = $1", doc_id)
            return v is not None and v >= v_http

        await wait_for(snapshot_after_cut, 20, f"a snapshot after the cut:\n{snapshotter.output}")

        rig.assert_alive()
        for process in rig.processes:
            assert not _failures(process), process.output
            loss, retry, back = LOSS_RETRY_BACK[process.name]
            assert _records(process, loss), f"{process.name}: no {loss!r}:\n{process.output}"
            # Back: a second "acquired"/"connected" for the processes that log the first.
            again = 2 if process.name in ("relay", "worker") else 1
            assert len(_records(process, back)) >= again, process.output
            _assert_spaced(process, retry)


async def test_processes_started_while_postgres_is_cut_wait_for_it(
    pg_clean: str, redis_url: str, redis_prefix: str, redis: Redis, store: PostgresStore
) -> None:
    """The relay, the worker and the snapshotter, started while PostgreSQL cannot be
    reached, stay up and retry (spaced) until it can; then each does its work."""
    retries = {
        "relay": "relay lease: database unavailable",
        "worker": "worker cannot reach the database",
        "snapshotter": "snapshotter cannot reach the database",
    }
    async with FaultRig(pg_clean, redis_url, redis_prefix) as rig:
        rig.pg.cut()
        relay, worker, snapshotter = await asyncio.gather(
            rig.start("relay"), rig.start("worker"), rig.start("snapshotter")
        )
        for process in (relay, worker, snapshotter):
            retry = retries[process.name]
            await wait_for(
                lambda p=process, r=retry: len(_records(p, r)) >= 3,  # type: ignore[misc]
                30,
                process.output,
            )
        # Long enough for the backoffs to grow past 0.3 s.
        await wait_for(lambda: len(_records(snapshotter, retries["snapshotter"])) >= 6, 30)
        rig.assert_alive()
        rig.pg.restore()
        await wait_for(lambda: relay.said("relay lease acquired"), 30, relay.output)
        await wait_for(lambda: worker.said("shard taken"), 30, worker.output)
        await wait_for(lambda: snapshotter.said("snapshotter following"), 30, snapshotter.output)
        async with Writer(store) as writer:
            await writer.documents("d1")
            await writer.edits(["d1"], 6)
        final = await store.head()
        keys = Keys(redis_prefix)

        async def published() -> bool:
            return await redis.get(keys.relay_position) == b"%d" % final

        async def snapshot() -> bool:
            v = await store.pool.fetchval("SELECT max(v) FROM snapshots WHERE doc_id = 'd1'")
            return v is not None and v >= 5

        await wait_for(published, 30, f"the relay to publish:\n{relay.output}")
        assert await assert_published_exactly(redis, keys, store) == final
        await wait_for(snapshot, 20, f"a snapshot:\n{snapshotter.output}")
        conn = await asyncpg.connect(pg_clean)
        try:
            await wait_caught_up(conn, within=30)
            assert await assert_views_exact(conn) == 1
        finally:
            await conn.close()
        rig.assert_alive()
        for process in (relay, worker, snapshotter):
            _assert_spaced(process, retries[process.name])
            assert not _failures(process), process.output
