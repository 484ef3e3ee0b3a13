"""The Redis client every process uses: one node, or a Redis Cluster (``REDIS_CLUSTER``).

``create_redis(url, cluster=...)`` returns ``redis.asyncio.Redis`` for a single node
and ``redis.asyncio.cluster.RedisCluster`` for a cluster, where ``url`` names any one
node (the client reads the slot map from it, routes each command to the master of its
key's slot, follows ``MOVED``/``ASK`` and reloads the map after a node fails). Both
return bytes. What differs, and is handled where it matters:

- **Multi-key commands** must name keys of one slot. Every key of a document carries
  its id as hash tag and the relay's progress keys share the tag ``{relay}``
  (app/bus/keys.py); nothing sends a multi-key command across slots: the gateway reads
  one stream per ``XREAD`` (one reader per document), and ``UNLINK`` of many keys is
  split by slot by the client.
- **Pipelines** (``transaction=False``) are split by node and run on the nodes at once,
  so their commands keep their order only within one node: ``publish`` writes the
  relay's position in a second round trip on a cluster (app/bus/streams.py).
  ``PUBLISH`` is refused inside a cluster pipeline: ``publish_all`` sends one command
  per channel, concurrently.
- **Connections**: a blocking ``XREAD`` holds a connection; the default limit of both
  clients (100, per node on a cluster; redis-py 8's single-node pool has it too) is
  lifted, so a gateway that follows more than 100 documents does not fail with
  ``MaxConnectionsError`` (its fan-out readers would fall back to PostgreSQL, in a loop).
- **Pub/sub**: ``client.pubsub()`` of a cluster client subscribes on the master of the
  channel's slot; a cluster ``PUBLISH`` reaches every node's subscribers (docs/relay.md,
  "Redis Cluster", says why not sharded pub/sub). Its first ``SUBSCRIBE`` needs the
  slot map loaded: ``ready(client)`` first.
- **SCAN** visits every master (``scan_iter`` of the cluster client).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

__all__ = ["Redis", "create_redis", "is_cluster", "publish_all", "ready"]

Redis: TypeAlias = "aioredis.Redis | RedisCluster"

# Connections a client may open (per node on a cluster): the gateway holds one blocked
# XREAD per followed document. redis-py's default is 100.
_MAX_CONNECTIONS: Final = 2**31


def create_redis(
    url: str,
    *,
    cluster: bool = False,
    socket_timeout: float | None = 5.0,
    connect_timeout: float = 5.0,
    health_check_interval: int = 30,
) -> Redis:
    """A client for ``url`` that returns bytes (entries are bytes end to end).

    ``cluster``: ``url`` names one node of a Redis Cluster. ``socket_timeout`` must
    exceed any ``XREAD BLOCK`` time a caller uses; None waits for ever. The caller owns
    the client and closes it (``await client.aclose()``).
    """
    if cluster:
        return RedisCluster.from_url(
            url,
            decode_responses=False,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
            max_connections=_MAX_CONNECTIONS,
        )
    return aioredis.from_url(
        url,
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=health_check_interval,
        max_connections=_MAX_CONNECTIONS,
    )


def is_cluster(client: object) -> bool:
    """Whether ``client`` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


async def ready(client: object) -> None:
    """Load a cluster client's slot map if it is not loaded yet (a no-op otherwise, and
    once loaded). Pub/sub needs it before its first ``SUBSCRIBE``; commands load it
    themselves."""
    if isinstance(client, RedisCluster):
        await client.initialize()


async def publish_all(client: Redis, messages: Sequence[tuple[str, bytes | str]]) -> None:
    """``PUBLISH`` each ``(channel, payload)`` in one round trip: a pipeline on one
    node; on a cluster (which refuses ``PUBLISH`` in a pipeline) one command per
    channel, all at once. Raises the first failure after every command has ended."""
    if not messages:
        return
    if isinstance(client, RedisCluster):
        results = await asyncio.gather(
            *(client.publish(channel, payload) for channel, payload in messages),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return
    async with client.pipeline(transaction=False) as pipe:
        for channel, payload in messages:
            pipe.publish(channel, payload)
        await pipe.execute()
