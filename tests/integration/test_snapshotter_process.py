"""``python -m app snapshotter`` as its own process: follows the log, writes snapshots,
stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from app.command import CommandHandler
from app.store.postgres import PostgresStore


async def test_the_snapshotter_process_writes_snapshots_and_stops_on_sigterm(
    store: PostgresStore, pg_clean: str
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": pg_clean,
        "APP_ENV": "prod",
        "APP_SECRET": "s" * 40,
        "SNAPSHOT_EVERY": "5",
        "LOG_LEVEL": "info",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "snapshotter",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    handler = CommandHandler(store)
    await handler.start()
    try:
        await asyncio.sleep(1.0)  # let it connect and LISTEN before the events arrive
        await handler.create_document("d1", "alice", "Poster")
        await handler.submit(
            "d1", "alice", "owner", "L", {"kind": "layer.add", "layer": "L1", "name": "a"}
        )
        for i in range(10):
            await handler.submit(
                "d1", "alice", "owner", f"r{i}", {"kind": "doc.rename", "title": f"t{i}"}
            )
        for _ in range(100):
            v = await store.pool.fetchval("SELECT max(v) FROM snapshots WHERE doc_id = 'd1'")
            if v is not None and v >= 10:
                break
            await asyncio.sleep(0.1)
        assert v is not None and v >= 10, "no snapshot within 10 s"
    finally:
        await handler.close()
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 15)
        except TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
            raise AssertionError(f"no clean stop within 15 s: {out.decode()}") from None
    assert proc.returncode == 0, out.decode()
    assert b"snapshotter stopped" in out
