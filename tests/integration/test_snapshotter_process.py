"""``python -m app snapshotter`` as its own process: follows the log, writes snapshots,
stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import orjson

from app.command import CommandHandler
from app.domain import model_from_json
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
    assert proc.stdout is not None
    started: list[bytes] = []
    handler = CommandHandler(store)
    await handler.start()
    try:
        # It follows from the head it reads at start: wait until it says so, however
        # slow the start-up, before the events it must see are committed.
        async with asyncio.timeout(30):
            while b"snapshotter following" not in (started[-1] if started else b""):
                line = await proc.stdout.readline()
                assert line, b"".join(started).decode()
                started.append(line)
        await handler.create_document("d1", "alice", "Poster")
        await handler.submit(
            "d1", "alice", "owner", "L", {"kind": "layer.add", "layer": "L1", "name": "a"}
        )
        for i in range(10):
            await handler.submit(
                "d1", "alice", "owner", f"r{i}", {"kind": "doc.rename", "title": f"t{i}"}
            )
        head = 12  # created, one layer, ten renames
        # A snapshot is due once a batch ends 5 (SNAPSHOT_EVERY) or more versions past
        # the last one; where the batches end depends on timing, so the newest snapshot
        # is anywhere in (head - 5, head], never further behind.
        for _ in range(100):
            v = await store.pool.fetchval("SELECT max(v) FROM snapshots WHERE doc_id = 'd1'")
            if v is not None and v > head - 5:
                break
            await asyncio.sleep(0.1)
        assert v is not None and head - 5 < v <= head, f"newest snapshot {v} after 10 s"
        state = await store.pool.fetchval(
            "SELECT state FROM snapshots WHERE doc_id = 'd1' AND v = $1", v
        )
        model = model_from_json(orjson.loads(state))
        assert (model.v, model.doc.title) == (v, f"t{v - 3}")  # the fold up to v
    finally:
        await handler.close()
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 15)
        except TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
            raise AssertionError(f"no clean stop within 15 s: {out.decode()}") from None
    out = b"".join(started) + out
    assert proc.returncode == 0, out.decode()
    assert b"snapshotter stopped" in out
