"""The Redis client of every process (app/bus/client.py) against the real server."""

from __future__ import annotations

import asyncio

import pytest

from app.bus.client import create_redis
from app.bus.streams import translate_errors
from app.errors import Unavailable

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


async def test_a_connection_closed_under_a_write_is_unavailable(redis_url: str) -> None:
    """redis-py raises AttributeError, not ConnectionError, when it writes on a
    connection whose writer is already gone (a close racing a command): the bus layer
    answers Unavailable, as for any Redis failure; our own AttributeError stays one."""
    client = create_redis(redis_url)
    try:
        conn = await client.connection_pool.get_connection()
        writer, conn._writer = conn._writer, None  # what a concurrent disconnect leaves
        try:
            with (
                pytest.raises(Unavailable, match="connection closed"),
                translate_errors("a write"),
            ):
                await conn._send_packed_command([b"*1\r\n$4\r\nPING\r\n"])
        finally:
            conn._writer = writer
            await client.connection_pool.release(conn)
        with pytest.raises(AttributeError), translate_errors("our own code"):
            None.missing  # type: ignore[attr-defined]  # noqa: B018
    finally:
        await client.aclose()
