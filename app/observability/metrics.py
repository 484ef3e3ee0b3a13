"""Prometheus metrics, on the project's own registry (never the global default one).

The gateway serves ``render()`` at ``/metrics``; the relay, the snapshotter and the read
worker serve the same registry on a port of their own (``app/observability/exporter.py``,
``*_METRICS_PORT``), and so does ``rebuild --metrics-port PORT`` while it runs. Each
process has its own registry, so each process is its own scrape target. Names carry the
``atelier_`` prefix; the Python names below are what the code uses:

    ops_total{outcome,code}        every op submitted: ack | duplicate | reject, with the
                                   reject code (empty for ack and duplicate)
    append_batch_size              events per append transaction (a group commit, or a
                                   round under a document's lock)
    append_seconds                 time of one append transaction (the same)
    ack_seconds                    submit to ack, as the client waits for it
    version_conflicts_total        optimistic-concurrency conflicts (decide retried)
    exclusive_appends_total        ops decided under the document's lock: its
                                   document was contended (a race lost at the store in
                                   the last second), or a rejection was decided on ops
                                   still in flight (app/command/locked.py)
    stale_decisions_total          rejections decided on a write model the store had
                                   moved past (another process appended): decided again
    write_models_cached            write models kept warm in this process
    write_model_loads_total        write models loaded from the store (cache misses)
    snapshots_written_total        snapshots written
    snapshotter_position           the last global position the snapshotter has read
    http_requests_total{method,route,status}
                                   HTTP requests answered, by route template (never the
                                   raw path: label values must stay few)
    relay_position                 the last global position the relay published
    relay_lag_events               log head minus relay_position
    relay_lag_seconds              age of the last published event while the relay is
                                   behind the head; 0 when caught up
    relay_published_total          entries added to Redis streams
    relay_batch_events             events per publish (one Redis round trip)
    relay_already_published_total  XADDs refused as at or below the stream's top
                                   (a republish after a crash or loss: not an error)
    relay_republishes_total{reason}
                                   times the relay restarted from the republish window:
                                   missing (Redis lost its progress), ahead (progress
                                   beyond the log's head), epoch, store
    relay_redis_errors_total       failed Redis round trips of the relay (retried)
    redis_errors_total{where}      failed Redis round trips of a gateway: fanout (a
                                   document's stream reader, retried) or members (a
                                   role change not published; the store has it)
    store_errors_total{what}       PostgreSQL calls that failed as unavailable (connection
                                   refused or lost, pool or statement timeout, failover,
                                   too many connections), by operation, in any process
    relay_lease_held               1 while this process holds the relay lease
    catchup_store_reads_total{reason}
                                   read_after answered from PostgreSQL: gap (Redis did
                                   not hold the range) or redis_error
    ws_connections                 websocket connections open in this process
    ws_channels                    documents this process fans out (and reads the streams of)
    ws_joins_total                 websocket sessions welcomed and joined to their document
    ws_closes_total{code}          websocket closes the server asked for, by close code
    ws_deliveries_total            event frames handed to sockets (one per socket per run)
    ws_gap_fills_total             event runs the fan-out read from PostgreSQL (a gap)
    ws_send_queue_frames           frames waiting in every websocket send queue (sampled)
    ws_send_queue_max              the longest websocket send queue (sampled)
    worker_events_applied_total    events a read worker folded into the views (committed)
    worker_batch_events            events per read-worker batch (one transaction)
    worker_batch_seconds           duration of one read-worker batch (fold and write)
    worker_lag_events{view,shard}  log head minus the checkpoint, per owned shard
    worker_lag_seconds{view,shard} age of the shard's first unapplied event (0: caught up)
    worker_shards_owned            shards this read worker holds the lease of
    worker_lease_takeovers_total   shard leases taken (each bumps the shard's fencing)
    worker_cas_failures_total      batches refused by the checkpoint compare-and-set
    worker_dead_letters_total{view,shard}
                                   events a projection could not apply (shard paused)
    rebuild_fold_events            events the running rebuild's fold reads (its total;
                                   ``python -m app rebuild --metrics-port``)
    rebuild_folded_events_total    events the rebuild's fold has read so far
    rebuild_loaded_rows_total      rows the rebuild has loaded into the new tables
    ws_fanout_seconds              commit (the event's ts) to the last local socket
                                   write of its run, per gateway process
    ws_presence_updates_total      presence updates accepted from local sessions
    ws_presence_expired_total      presence of peers on other gateway processes dropped
                                   for want of a liveness line (their process died or
                                   was cut off from Redis for longer than the TTL)
"""

from __future__ import annotations

from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = [
    "REGISTRY",
    "ack_seconds",
    "append_batch_size",
    "append_seconds",
    "catchup_store_reads_total",
    "exclusive_appends_total",
    "http_requests_total",
    "ops_total",
    "rebuild_fold_events",
    "rebuild_folded_events_total",
    "rebuild_loaded_rows_total",
    "redis_errors_total",
    "relay_already_published_total",
    "relay_batch_events",
    "relay_lag_events",
    "relay_lag_seconds",
    "relay_lease_held",
    "relay_position",
    "relay_published_total",
    "relay_redis_errors_total",
    "relay_republishes_total",
    "render",
    "snapshots_written_total",
    "snapshotter_position",
    "stale_decisions_total",
    "store_errors_total",
    "version_conflicts_total",
    "worker_batch_events",
    "worker_batch_seconds",
    "worker_cas_failures_total",
    "worker_dead_letters_total",
    "worker_events_applied_total",
    "worker_lag_events",
    "worker_lag_seconds",
    "worker_lease_takeovers_total",
    "worker_shards_owned",
    "write_model_loads_total",
    "write_models_cached",
    "ws_channels",
]

REGISTRY: Final = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

# From 100 µs (an append that rides a warm group commit) to 10 s (something is wrong).
_SECONDS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Powers of two up to a little past GROUP_COMMIT_MAX's default (256).
_BATCH: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

ops_total: Final = Counter(
    "atelier_ops",
    "Ops submitted to the command handler, by outcome (ack, duplicate, reject) and code.",
    ["outcome", "code"],
    registry=REGISTRY,
)
append_batch_size: Final = Histogram(
    "atelier_append_batch_size",
    "Events written per append transaction (a group commit, or a round under a lock).",
    buckets=_BATCH,
    registry=REGISTRY,
)
append_seconds: Final = Histogram(
    "atelier_append_seconds",
    "Duration of one append transaction (a group commit, or a round under a lock).",
    buckets=_SECONDS,
    registry=REGISTRY,
)
ack_seconds: Final = Histogram(
    "atelier_ack_seconds",
    "Time from submit to ack (or reject) of one op.",
    buckets=_SECONDS,
    registry=REGISTRY,
)
version_conflicts_total: Final = Counter(
    "atelier_version_conflicts",
    "Appends that lost the optimistic-concurrency race on (document, version) at the "
    "store (each marks its document contended for a second).",
    registry=REGISTRY,
)
stale_decisions_total: Final = Counter(
    "atelier_stale_decisions",
    "Ops rejected on a write model that the store had moved past (another process "
    "appended since), then decided again on the newer state.",
    registry=REGISTRY,
)
exclusive_appends_total: Final = Counter(
    "atelier_exclusive_appends",
    "Ops decided under the document's row lock: their document was contended (another "
    "process won a race for it lately), or their rejection rested on ops in flight.",
    registry=REGISTRY,
)
write_models_cached: Final = Gauge(
    "atelier_write_models_cached",
    "Document write models kept warm in this process.",
    registry=REGISTRY,
)
write_model_loads_total: Final = Counter(
    "atelier_write_model_loads",
    "Write models loaded from the store (snapshot + later events).",
    registry=REGISTRY,
)
snapshots_written_total: Final = Counter(
    "atelier_snapshots_written",
    "Document snapshots written.",
    registry=REGISTRY,
)
snapshotter_position: Final = Gauge(
    "atelier_snapshotter_position",
    "The last global log position the snapshotter has read (compare atelier_relay_position).",
    registry=REGISTRY,
)
http_requests_total: Final = Counter(
    "atelier_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
relay_position: Final = Gauge(
    "atelier_relay_position",
    "The last global log position the relay published to Redis.",
    registry=REGISTRY,
)
relay_lag_events: Final = Gauge(
    "atelier_relay_lag_events",
    "Events committed to the log but not yet published to Redis.",
    registry=REGISTRY,
)
relay_lag_seconds: Final = Gauge(
    "atelier_relay_lag_seconds",
    "Age of the last published event while the relay is behind the head (0 when caught up).",
    registry=REGISTRY,
)
relay_published_total: Final = Counter(
    "atelier_relay_published",
    "Entries the relay added to Redis streams.",
    registry=REGISTRY,
)
relay_batch_events: Final = Histogram(
    "atelier_relay_batch_events",
    "Events per relay publish (one pipelined Redis round trip).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 500),
    registry=REGISTRY,
)
relay_already_published_total: Final = Counter(
    "atelier_relay_already_published",
    "XADDs refused because the entry was published before (republish after a crash or loss).",
    registry=REGISTRY,
)
relay_republishes_total: Final = Counter(
    "atelier_relay_republishes",
    "Restarts from the republish window, by reason (missing, ahead, epoch, store).",
    ["reason"],
    registry=REGISTRY,
)
relay_redis_errors_total: Final = Counter(
    "atelier_relay_redis_errors",
    "Failed Redis round trips of the relay (each retried with backoff).",
    registry=REGISTRY,
)
redis_errors_total: Final = Counter(
    "atelier_redis_errors",
    "Failed Redis round trips of a gateway process, by where (fanout, members).",
    ["where"],
    registry=REGISTRY,
)
store_errors_total: Final = Counter(
    "atelier_store_errors",
    "PostgreSQL calls that failed as unavailable (connection, pool, timeout, failover),"
    " by operation.",
    ["what"],
    registry=REGISTRY,
)
relay_lease_held: Final = Gauge(
    "atelier_relay_lease_held",
    "1 while this process holds the relay lease, else 0.",
    registry=REGISTRY,
)
catchup_store_reads_total: Final = Counter(
    "atelier_catchup_store_reads",
    "Catch-up reads answered from PostgreSQL, by reason (gap, redis_error).",
    ["reason"],
    registry=REGISTRY,
)

ws_connections: Final = Gauge(
    "atelier_ws_connections",
    "Websocket connections open in this process.",
    registry=REGISTRY,
)
ws_channels: Final = Gauge(
    "atelier_ws_channels",
    "Documents this process fans out to local websockets (and reads the streams of).",
    registry=REGISTRY,
)
ws_joins_total: Final = Counter(
    "atelier_ws_joins",
    "Websocket sessions welcomed and joined to their document's fan-out.",
    registry=REGISTRY,
)
ws_closes_total: Final = Counter(
    "atelier_ws_closes",
    "Websocket closes the server asked for, by close code (PROTOCOL.md 4).",
    ["code"],
    registry=REGISTRY,
)
ws_deliveries_total: Final = Counter(
    "atelier_ws_deliveries",
    "Event frames handed to websocket send queues (one per socket per run of events).",
    registry=REGISTRY,
)
ws_gap_fills_total: Final = Counter(
    "atelier_ws_gap_fills",
    "Runs of events the fan-out read from PostgreSQL because they did not come otherwise.",
    registry=REGISTRY,
)
ws_send_queue_frames: Final = Gauge(
    "atelier_ws_send_queue_frames",
    "Frames waiting in every websocket send queue of this process (sampled at scrape).",
    registry=REGISTRY,
)
ws_send_queue_max: Final = Gauge(
    "atelier_ws_send_queue_max",
    "The longest websocket send queue of this process (sampled at scrape).",
    registry=REGISTRY,
)

ws_fanout_seconds: Final = Histogram(
    "atelier_ws_fanout_seconds",
    "From an event's commit (its ts) to the last local socket write of its run, per"
    " gateway process (across hosts this includes their clock difference).",
    buckets=_SECONDS,
    registry=REGISTRY,
)
ws_presence_updates_total: Final = Counter(
    "atelier_ws_presence_updates",
    "Presence updates accepted from local sessions (before per-tick coalescing).",
    registry=REGISTRY,
)
ws_presence_expired_total: Final = Counter(
    "atelier_ws_presence_expired",
    "Presence of peers on other gateway processes dropped for want of a liveness line.",
    registry=REGISTRY,
)

# Read workers (app/workers): a batch is everything the log follower read at once, up
# to WORKER_BATCH events, so the sizes go well past the group commit's.
_WORKER_BATCH: Final = (1, 4, 16, 64, 256, 1024, 2048, 4096, 8192)
worker_events_applied_total: Final = Counter(
    "atelier_worker_events_applied",
    "Events a read worker folded into the views, counted at commit.",
    registry=REGISTRY,
)
worker_batch_events: Final = Histogram(
    "atelier_worker_batch_events",
    "Events of the owned shards per read-worker batch (one transaction).",
    buckets=_WORKER_BATCH,
    registry=REGISTRY,
)
worker_batch_seconds: Final = Histogram(
    "atelier_worker_batch_seconds",
    "Duration of one read-worker batch: fold and write, commit included.",
    buckets=_SECONDS,
    registry=REGISTRY,
)
worker_lag_events: Final = Gauge(
    "atelier_worker_lag_events",
    "Log head minus the view's checkpoint, per shard this worker owns.",
    ["view", "shard"],
    registry=REGISTRY,
)
worker_lag_seconds: Final = Gauge(
    "atelier_worker_lag_seconds",
    "Age of the shard's first event not yet in the view (0 when caught up).",
    ["view", "shard"],
    registry=REGISTRY,
)
worker_shards_owned: Final = Gauge(
    "atelier_worker_shards_owned",
    "Shards whose lease this read worker holds.",
    registry=REGISTRY,
)
worker_lease_takeovers_total: Final = Counter(
    "atelier_worker_lease_takeovers",
    "Shard leases this read worker took (each bumps the shard's fencing).",
    registry=REGISTRY,
)
worker_cas_failures_total: Final = Counter(
    "atelier_worker_cas_failures",
    "Read-worker batches refused by the checkpoint compare-and-set (a lost lease).",
    registry=REGISTRY,
)
worker_dead_letters_total: Final = Counter(
    "atelier_worker_dead_letters",
    "Events a projection could not apply; each pauses its shard.",
    ["view", "shard"],
    registry=REGISTRY,
)

# The rebuild command (app/ops/rebuild.py), served while it runs with --metrics-port.
rebuild_fold_events: Final = Gauge(
    "atelier_rebuild_fold_events",
    "Events the running rebuild's fold reads in all (set when the fold starts).",
    registry=REGISTRY,
)
rebuild_folded_events_total: Final = Counter(
    "atelier_rebuild_folded_events",
    "Events the rebuild's fold has read so far (progress: over atelier_rebuild_fold_events).",
    registry=REGISTRY,
)
rebuild_loaded_rows_total: Final = Counter(
    "atelier_rebuild_loaded_rows",
    "Rows the rebuild has loaded (COPY) into the views' new tables.",
    registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of this process's metrics, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
