"""``?min_v=`` with a real read worker: ``python -m app worker`` as a process beside a
real gateway. A read after the ack of a write returns as soon as the worker has
projected it (woken by its NOTIFY), far inside the 5 s; a read that starts before the
worker does returns soon after the worker comes up."""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg

from tests.e2e.conftest import SECRET, Gateway
from tests.e2e.test_http_read import create, post_ops, rect
from tests.support.appprocess import AppProcess


def worker_env(gateway: Gateway) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": gateway.settings.database_url,
        "REDIS_URL": gateway.settings.redis_url,
        "APP_ENV": "prod",
        "APP_SECRET": SECRET,
        "WORKER_METRICS_PORT": "off",
        "LOG_LEVEL": "warning",
    }


async def test_min_v_with_a_worker_process(gateway: Gateway, pg_pool: asyncpg.Pool) -> None:
    await create(gateway)
    worker = AppProcess(["worker", "--id", "e2e-read"], worker_env(gateway))
    try:
        async with gateway.client("alice") as c:
            v = await post_ops(c, "d1", [rect("e0")])
            # Asked before the worker runs: answered soon after it comes up.
            asked = time.monotonic()
            waiting = asyncio.create_task(c.get(f"/api/documents/d1?min_v={v}"))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            started = time.monotonic()
            await worker.start()
            r = await waiting
            assert (r.status_code, r.json()["v"]) == (200, v), r.text
            print(f"\nmin_v after the worker started: {time.monotonic() - started:.2f} s")
            assert time.monotonic() - asked < 5.0
            # With the worker running: each write is readable well inside the 5 s.
            took: list[float] = []
            for i in range(10):
                v = await post_ops(c, "d1", [rect(f"e{i + 1}")])
                t0 = time.monotonic()
                r = await c.get(f"/api/documents/d1?min_v={v}")
                took.append(time.monotonic() - t0)
                assert (r.status_code, r.json()["v"]) == (200, v), r.text
                assert len(r.json()["state"]["layers"][0]["elements"]) == i + 2
        print(f"min_v after an ack, worker running: max {max(took) * 1000:.0f} ms")
        assert max(took) < 1.0  # the worker's NOTIFY, not the 1 s re-check nor the 5 s
    finally:
        await worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, "".join(worker.lines)
