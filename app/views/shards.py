"""Which shard a document belongs to: read workers own shards, one worker per shard.

``crc32`` of the UTF-8 id, not Python's ``hash`` (salted per process): every process,
and any other language, must compute the same shard for the same document.
"""

from __future__ import annotations

import zlib

__all__ = ["shard_of"]


def shard_of(doc_id: str, shards: int) -> int:
    """The shard of ``doc_id`` among ``shards`` (``read.meta.shards``)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    return zlib.crc32(doc_id.encode()) % shards
