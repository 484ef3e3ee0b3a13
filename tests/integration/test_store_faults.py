"""The command handler when PostgreSQL goes away: `unavailable`, nothing half-written,
recovery by itself, and no acknowledged op lost across a restart."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from app.command import CommandHandler
from app.errors import Unavailable
from app.store.migrate import migrate
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from tests.support.pgcluster import ScratchCluster
from tests.support.tcpproxy import TcpProxy


def rect(element: str) -> dict[str, Any]:
    return {
        "kind": "element.add",
        "element": element,
        "layer": "L1",
        "shape": "rect",
        "props": {"x": 1, "y": 2, "w": 3, "h": 4},
    }


@pytest.fixture
async def proxied_handler(pg_clean: str) -> AsyncIterator[tuple[CommandHandler, TcpProxy, str]]:
    pg_dsn = pg_clean
    target = urlsplit(pg_dsn)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    dsn = pg_dsn.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    pool = await create_pool(dsn, 4)
    handler = CommandHandler(PostgresStore(pool))
    await handler.start()
    try:
        yield handler, proxy, pg_dsn
    finally:
        await handler.close()
        proxy.restore()
        pool.terminate()
        await proxy.close()


async def _with_retries(handler: CommandHandler, doc: str, op_id: str, op: dict[str, Any]) -> int:
    """What a client does after `unavailable`: send the same op with the same id again."""
    for _ in range(400):
        try:
            return (await handler.submit(doc, "alice", "owner", op_id, op)).v
        except Unavailable:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{op_id} was never acknowledged")


async def test_unreachable_database_rejects_unavailable_and_recovers(
    proxied_handler: tuple[CommandHandler, TcpProxy, str], store: PostgresStore
) -> None:
    handler, proxy, _ = proxied_handler
    await handler.create_document("d1", "alice", "Poster")
    await handler.submit(
        "d1", "alice", "owner", "L", {"kind": "layer.add", "layer": "L1", "name": "a"}
    )
    proxy.cut()
    with pytest.raises(Unavailable):
        await handler.submit("d1", "alice", "owner", "op-1", rect("e1"))
    # Nothing half-written: the direct store sees exactly the two events from before.
    assert [e.v for e in await store.read_stream("d1")] == [1, 2]
    proxy.restore()
    v = await _with_retries(handler, "d1", "op-1", rect("e1"))
    assert v == 3
    assert [e.op_id for e in await store.read_stream("d1")] == [None, "L", "op-1"]


@pytest.fixture
def scratch_cluster() -> Iterator[ScratchCluster]:
    root = Path(tempfile.mkdtemp(prefix="atelier-pg-"))
    os.chmod(root, 0o755)
    cluster = ScratchCluster(root / "cluster").init()
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
async def test_postgres_restarted_mid_load_loses_no_acknowledged_op(
    scratch_cluster: ScratchCluster,
) -> None:
    dsn = scratch_cluster.dsn
    await migrate(dsn)
    pool = await create_pool(dsn, 6)
    handler = CommandHandler(PostgresStore(pool))
    await handler.start()
    acked: dict[str, int] = {}
    unavailable = 0
    try:
        await handler.create_document("d1", "alice", "Poster")
        await handler.submit(
            "d1", "alice", "owner", "L", {"kind": "layer.add", "layer": "L1", "name": "a"}
        )
        stop = asyncio.Event()

        async def writer(w: int) -> None:
            nonlocal unavailable
            i = 0
            while not stop.is_set():
                op_id = f"w{w}-{i}"
                for _ in range(600):
                    try:
                        acked[op_id] = (
                            await handler.submit("d1", "alice", "owner", op_id, rect(op_id))
                        ).v
                        break
                    except Unavailable:
                        unavailable += 1
                        await asyncio.sleep(0.05)
                i += 1

        writers = [asyncio.create_task(writer(w)) for w in range(8)]
        await asyncio.sleep(1.0)
        before = len(acked)
        await asyncio.to_thread(scratch_cluster.restart, "immediate")
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*writers)
    finally:
        await handler.close()
        await pool.close()
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT v, op_id FROM events WHERE doc_id = 'd1' ORDER BY v")
    finally:
        await conn.close()
    stored = {r["op_id"]: r["v"] for r in rows if r["op_id"]}
    assert before > 0 and len(acked) > before, "load must run on both sides of the restart"
    assert unavailable > 0, "the restart must have been seen by the writers"
    # I1 + I2 + I3: every acked op is stored at the version it was acked at, once.
    assert [r["v"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(stored.get(op_id) == v for op_id, v in acked.items())
    assert len(rows) == 2 + len(acked)
