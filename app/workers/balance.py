"""How many shards a worker should hold, and which ones to try or give up (pure).

Every worker aims at ``share = ceil(shards / live workers)``. A worker above its share
gives the extra ones up (after its batch); a worker below it tries free shards. As
``share * workers >= shards``, a free shard always has a worker below its share that
will take it, and as nobody keeps more than its share, a new worker gets shards within
two lease intervals: adding a worker adds throughput.

Each worker walks the shards starting at its own offset (a hash of its id), so workers
that start together try different shards first instead of racing for shard 0.
"""

from __future__ import annotations

import math
import zlib

__all__ = ["preference", "share", "to_release"]


def share(shards: int, workers: int) -> int:
    """The most shards one of ``workers`` live workers should hold."""
    if shards < 1 or workers < 1:
        raise ValueError(f"need shards >= 1 and workers >= 1, not {shards}, {workers}")
    return math.ceil(shards / workers)


def preference(worker_id: str, shards: int) -> list[int]:
    """Every shard, in the order this worker prefers them."""
    offset = zlib.crc32(worker_id.encode()) % shards
    return [(offset + i) % shards for i in range(shards)]


def to_release(held: set[int], order: list[int], keep: int) -> list[int]:
    """The shards of ``held`` beyond the first ``keep`` in preference ``order``."""
    ranked = [shard for shard in order if shard in held]
    return ranked[max(0, keep) :]
