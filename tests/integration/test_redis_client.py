"""The Redis client of every process (app/bus/client.py) against the real server."""

from __future__ import annotations

import asyncio

from app.bus.client import create_redis

# More blocked readers than redis-py's default pool holds (100): a gateway keeps one
# blocked XREAD per document it follows.
READERS = 150


async def test_more_blocked_xreads_than_the_default_pool_holds(
    redis_url: str, redis_prefix: str
) -> None:
    client = create_redis(redis_url)
    try:
        streams = [f"{redis_prefix}stream:{i}" for i in range(READERS)]
        reads = [client.xread({s: "$"}, count=1, block=2000) for s in streams]
        waiting = [asyncio.ensure_future(r) for r in reads]
        await asyncio.sleep(0.5)  # every read is blocked on the server by now
        assert not any(w.done() for w in waiting), [w.exception() for w in waiting if w.done()]
        for s in streams:
            await client.xadd(s, {b"v": b"1"})
        results = await asyncio.wait_for(asyncio.gather(*waiting), 30)
        assert all(result for result in results)  # each read got its stream's entry
    finally:
        await client.aclose()
