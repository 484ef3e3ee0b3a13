"""Read workers: keep the views of the read side (app/views) up to the log's head
(DESIGN.md "Read workers", docs/readside.md "Workers"). Run as many as you like;
they share the shards.

    worker       Worker and WorkerConfig: leases, the follow loop, dead letters, lag
    leases       ShardLeases: advisory locks per shard and per live worker, fencing
    balance      how many shards to hold (ceil(shards / live workers)), which ones
    projector    fold a batch per document from the LRU or the views; find bad events
    cache        DocumentCache: the LRU of decoded documents
    deadletters  record a refused event and pause its shard
    collector    the cyclic GC's full collections when idle, not mid-load
    runner       run(settings): ``python -m app worker [--id NAME]``
"""

from app.workers.worker import Worker, WorkerConfig

__all__ = ["Worker", "WorkerConfig"]
