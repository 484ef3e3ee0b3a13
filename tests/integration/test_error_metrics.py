"""The error counters move on real failures: a PostgreSQL that refuses connections
(``atelier_store_errors_total{what}``) and a Redis that cannot be reached by a
gateway's fan-out reader (``atelier_redis_errors_total{where="fanout"}``)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from redis.asyncio import Redis

from app.errors import Unavailable
from app.gateway.fanout import Fanout
from app.observability.metrics import REGISTRY
from app.protocol import WireEvent
from app.store.pool import create_pool
from app.store.postgres import PostgresStore


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_refused_postgresql_counts_a_store_error() -> None:
    before = sample("atelier_store_errors_total", what="create_pool")
    with pytest.raises(Unavailable):
        await create_pool(f"postgresql://postgres@127.0.0.1:{closed_port()}/x", 1, min_size=1)
    assert sample("atelier_store_errors_total", what="create_pool") == before + 1


async def test_an_unreachable_redis_counts_fanout_errors(store: PostgresStore) -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=1)
    fanout = Fanout(store, redis, lambda doc_id: f"test:doc:{{{doc_id}}}", block_ms=100)
    before = sample("atelier_redis_errors_total", where="fanout")

    def sink(events: object, frame: str) -> None:
        pass

    try:
        assert fanout.join("d1", sink, 0)
        deadline = time.monotonic() + 20
        # The reader retries with backoff (0.1 s, doubling): two failures come quickly.
        while sample("atelier_redis_errors_total", where="fanout") < before + 2:
            assert time.monotonic() < deadline, "no Redis error counted"
            await asyncio.sleep(0.05)
        # Meanwhile the channel still delivers what is offered to it (the commit tap).
        got: list[int] = []
        fanout.leave("d1", sink)
        assert fanout.join("d1", lambda events, frame: got.extend(e.v for e in events), 0)
        channel = fanout.channel("d1")
        assert channel is not None
        channel.offer([WireEvent.encode(1, b"{}", "alice", "op-1", 1)])
        assert got == [1]
    finally:
        await fanout.close()
        await redis.aclose()
