"""``python -m app relay`` as real processes: SIGKILLed at random moments while a
standby waits for the lease ("waiting for the relay lease") and takes over; every
event ends up in its stream exactly once; SIGTERM stops the last one cleanly."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from functools import partial

from app.bus import Keys, Redis
from app.store.postgres import PostgresStore
from tests.support.appprocess import AppProcess
from tests.support.relay import Writer, assert_published_exactly, wait_until

DOCS = ["d1", "d2", "d3"]


class RelayProcess(AppProcess):
    """One ``python -m app relay`` with its log lines collected as they come."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(["relay"], env)


async def test_killed_relay_processes_hand_over_and_publish_each_event_once(
    store: PostgresStore, pg_clean: str, redis: Redis, redis_url: str, redis_prefix: str
) -> None:
    rng = random.Random()
    keys = Keys(redis_prefix)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": pg_clean,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "APP_ENV": "prod",
        "APP_SECRET": "s" * 40,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }
    stop = asyncio.Event()
    processes: list[RelayProcess] = []
    try:
        async with Writer(store) as writer:
            await writer.documents(*DOCS)
            leader = await RelayProcess(env).start()
            processes.append(leader)
            await wait_until(lambda: leader.said("relay lease acquired"), what=leader.output)
            editing = asyncio.create_task(writer.keep_editing(DOCS, stop))
            for _ in range(2):
                standby = await RelayProcess(env).start()
                processes.append(standby)
                await wait_until(
                    partial(standby.said, "waiting for the relay lease"), what=standby.output
                )
                await asyncio.sleep(rng.uniform(0.05, 0.4))
                assert await leader.end(signal.SIGKILL) == -signal.SIGKILL
                await wait_until(
                    partial(standby.said, "relay lease acquired"), within=5, what=standby.output
                )
                leader = standby
            stop.set()
            await editing
            head = await store.head()

            async def published() -> bool:
                return await redis.get(keys.relay_position) == b"%d" % head

            await wait_until(published, what="the last relay to catch up")
        assert await assert_published_exactly(redis, keys, store) == writer.acked
        assert await leader.end(signal.SIGTERM) == 0, leader.output
        assert leader.said("relay stopped")
        assert "Traceback" not in leader.output
    finally:
        stop.set()
        for process in processes:
            if process.proc is not None and process.proc.returncode is None:
                await process.end(signal.SIGKILL)
