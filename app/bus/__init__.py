"""The Redis side of the real-time path: per-document streams, written by the relay
and read by the gateways. Redis is a transport, never the truth (DESIGN.md): whatever
it loses is read again from PostgreSQL (``read_after``), so I4 holds across Redis
restarts and data loss.

    client    create_redis: one node or a Redis Cluster (REDIS_CLUSTER); publish_all,
              ready (what differs on a cluster)
    keys      every key name and entry id (the contract; docs/relay.md)
    entry     Entry, the fields of a stream entry, the once-encoded websocket event
    addscript the Lua script that adds a stream's events of a batch atomically
    streams   publish, progress, wipe, read_range, unlink_foreign; Redis errors become
              Unavailable
    catchup   read_after: entries after a point, from Redis or else PostgreSQL

This package re-exports what the other layers use; it never imports ``app.store``
(the two adapters are independent siblings): it sees the store through the
structural ``EventSource`` and ``EventRecord`` Protocols.
"""

from app.bus.catchup import EventSource, read_after
from app.bus.client import Redis, create_redis, is_cluster, publish_all, ready
from app.bus.entry import Entry, EventRecord, decode_entry, encode_event, to_entry
from app.bus.keys import DEFAULT_PREFIX, Keys, entry_id, position_of
from app.bus.streams import (
    Progress,
    PublishResult,
    is_wrong_type,
    publish,
    read_progress,
    read_range,
    reset_progress,
    unlink_foreign,
    wipe_streams,
)

__all__ = [
    "DEFAULT_PREFIX",
    "Entry",
    "EventRecord",
    "EventSource",
    "Keys",
    "Progress",
    "PublishResult",
    "Redis",
    "create_redis",
    "decode_entry",
    "encode_event",
    "entry_id",
    "is_cluster",
    "is_wrong_type",
    "position_of",
    "publish",
    "publish_all",
    "read_after",
    "read_progress",
    "read_range",
    "ready",
    "reset_progress",
    "to_entry",
    "unlink_foreign",
    "wipe_streams",
]
