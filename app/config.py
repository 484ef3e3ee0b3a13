"""Settings: the only reader of the environment.

Every variable, its default and its meaning is listed in ``VARIABLES`` (the README's
settings table is generated from the same list by ``python -m app settings``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from app.errors import ConfigError

__all__ = ["VARIABLES", "Settings"]

# name -> (default or None when required, meaning)
VARIABLES: Final[dict[str, tuple[str | None, str]]] = {
    "APP_ENV": (
        "prod",
        "`dev` enables `/api/dev/token` and console logs; anything else is production",
    ),
    "APP_SECRET": (
        None,
        "HS256 key for tokens (UTF-8 bytes as they are, at least 32); required outside dev, "
        "in dev a random one is kept in `$APP_DATA_DIR/dev-secret`",
    ),
    "DATABASE_URL": (
        "postgresql://postgres@127.0.0.1:5432/atelier",
        "PostgreSQL DSN of the event store",
    ),
    "DATABASE_READ_URL": (
        "",
        "PostgreSQL DSN of a streaming replica of `DATABASE_URL` that the gateway's "
        "queries read (catalog, state, `at`, `min_v`, diff, activity, versions); empty: "
        "they read `DATABASE_URL`. While it cannot be reached, they read `DATABASE_URL`",
    ),
    "REDIS_URL": ("redis://127.0.0.1:6379/0", "Redis URL used for fan-out"),
    "REDIS_CLUSTER": (
        "off",
        "`on`: `REDIS_URL` names one node of a Redis Cluster (database 0) and every process "
        'uses the cluster client (docs/operations.md, "Redis Cluster"); `off`: a single Redis',
    ),
    "REDIS_PREFIX": (
        "atelier:",
        "prefix of every Redis key (one prefix per event store; no `{`, `}` or spaces)",
    ),
    "APP_HOST": ("127.0.0.1", "address the gateway binds"),
    "APP_PORT": ("8000", "port the gateway binds"),
    "APP_DATA_DIR": (".data", "project-local folder for service data, logs and the dev secret"),
    "DB_POOL_SIZE": ("8", "asyncpg connections per process"),
    "DB_COMMIT_LANES": (
        "1",
        "group-commit transactions in flight at once per process (more contend on the log head)",
    ),
    "GROUP_COMMIT_MAX": ("256", "most ops written in one group-commit transaction"),
    "OP_COMMIT_TIMEOUT_MS": (
        "5000",
        "milliseconds an op waits for its commit before it is answered `unavailable` (retry "
        "with the same id); bounds the wait when PostgreSQL stops answering without a reset",
    ),
    "SNAPSHOT_EVERY": (
        "200",
        "the snapshotter writes a snapshot of a document every N events (0: none)",
    ),
    "SNAPSHOTTER_LINGER_MS": (
        "100",
        "milliseconds the snapshotter waits after catching up with the log before its next "
        "read, so that the commits of that time come as one batch (0: read at each commit)",
    ),
    "RELAY_STREAM_MAXLEN": (
        "1000",
        "events kept in each document's Redis stream (approximate trim, `XADD MAXLEN ~`); "
        "older ones are read from PostgreSQL",
    ),
    "RELAY_STREAM_TTL": (
        "86400",
        "seconds a document's Redis stream lives after its last event (0: no expiry)",
    ),
    "RELAY_LINGER_MS": (
        "0",
        "milliseconds the relay waits after catching up with the log before its next read, "
        "so that the commits of that time go to Redis in one round trip (less CPU for the "
        "relay and Redis); adds up to that much to delivery through Redis, i.e. to the "
        "sessions of other gateway processes, once the store commits faster than once per "
        "linger. With one gateway it costs the sessions nothing (the gateway delivers its "
        "own commits at once): 5 suits such a deployment. 0: a round trip per commit",
    ),
    "RELAY_REPUBLISH_WINDOW": (
        "10000",
        "events the relay publishes again when Redis lost its progress or the epoch changed",
    ),
    "WORKER_BATCH": (
        "2000",
        "most events a read worker folds and writes in one transaction (under load it "
        "reads that many at once; idle, each commit is a batch)",
    ),
    "WORKER_LINGER_MS": (
        "10",
        "milliseconds a read worker waits after catching up with the log before its next "
        "read, so that the commits of that time share one transaction (adds up to that "
        "much to the views' lag; 0: a transaction per commit)",
    ),
    "WORKER_CACHE_DOCS": (
        "2000",
        "documents a read worker keeps decoded between batches (LRU; 0: decode each batch)",
    ),
    "WORKER_LEASE_INTERVAL_MS": (
        "1000",
        "milliseconds between a read worker's lease rounds: check its shards, balance them "
        "over the live workers, take over a dead worker's, sample the lag",
    ),
    "WRITE_MODEL_CACHE": ("2000", "documents whose write model is kept warm per process (LRU)"),
    "UNDO_DEPTH": ("100", "undoable ops remembered per user and document"),
    "MAX_BODY_BYTES": ("1048576", "largest accepted JSON body or websocket frame"),
    "MAX_ASSET_BYTES": ("20971520", "largest accepted asset upload"),
    "WS_HELLO_TIMEOUT_MS": ("5000", "milliseconds a websocket client has to send its `hello`"),
    "WS_SEND_QUEUE": (
        "1024",
        "frames waiting for one websocket before it is closed 4408 (it reads too slowly)",
    ),
    "WS_OP_RATE": ("50", "ops a second one websocket may send (then `rate_limited`)"),
    "WS_OP_BURST": ("100", "ops one websocket may send in a burst above `WS_OP_RATE`"),
    "WS_USER_OP_RATE": (
        "100",
        "ops a second one user may send over all its websockets and HTTP op requests on "
        "one gateway process (then `rate_limited`; 429 with `Retry-After` over HTTP)",
    ),
    "WS_USER_OP_BURST": (
        "200",
        "ops one user may send in a burst above `WS_USER_OP_RATE` (one gateway process)",
    ),
    "WS_USER_CONNECTIONS": (
        "32",
        "websockets one user may have open on one gateway process; the next `hello` is "
        "refused with close 4429",
    ),
    "WS_PRESENCE_RATE": (
        "30",
        "`presence` messages a second one websocket may send, in a burst of twice that "
        "(then `error rate_limited`)",
    ),
    "WS_PRESENCE_HEARTBEAT_MS": (
        "5000",
        "milliseconds between the liveness lines a gateway process publishes for its "
        "sessions that sent a `presence` (one `PUBLISH` per document)",
    ),
    "WS_PRESENCE_TTL_MS": (
        "15000",
        "milliseconds a gateway keeps the presence of a peer on another gateway process "
        "that nothing refreshed (no update, no liveness line: that process died); then it "
        "announces `state: null`; at least twice `WS_PRESENCE_HEARTBEAT_MS`",
    ),
    "WS_ALLOWED_ORIGINS": (
        "*",
        "comma-separated browser origins allowed to open a websocket (e.g. "
        "`https://app.example.com,http://localhost:5173`); `*` or empty: any; a request "
        "with another `Origin` is closed 4403 before `hello` (one without `Origin` is "
        "not a browser's and is allowed)",
    ),
    "METRICS_HOST": (
        "127.0.0.1",
        "address the `/metrics` listeners of the relay, snapshotter and worker bind (the "
        "gateway serves `/metrics` on `APP_PORT`)",
    ),
    "RELAY_METRICS_PORT": (
        "9101",
        "port of the relay's `/metrics` and `/healthz` (`0`: any free port, logged; `off`: none)",
    ),
    "SNAPSHOTTER_METRICS_PORT": (
        "9102",
        "port of the snapshotter's `/metrics` and `/healthz` (`0`: any free port, logged; "
        "`off`: none)",
    ),
    "WORKER_METRICS_PORT": (
        "9103",
        "port of the read worker's `/metrics` and `/healthz` (`0`: any free port, logged; "
        "`off`: none)",
    ),
    "BACKUP_DIR": (
        ".data/backups",
        "folder of `python -m app backup`'s base backups (one folder per backup, named by "
        "its UTC time)",
    ),
    "BACKUP_KEEP_DAILY": (
        "7",
        "base backups kept by day: the newest of each of the last N days (UTC)",
    ),
    "BACKUP_KEEP_WEEKLY": (
        "4",
        "base backups kept by week: the newest of each of the last N ISO weeks",
    ),
    "BACKUP_KEEP_MONTHLY": (
        "6",
        "base backups kept by month: the newest of each of the last N months",
    ),
    "LOG_LEVEL": ("info", "debug, info, warning or error"),
    "LOG_FORMAT": ("auto", "`console`, `json`, or `auto` (console in dev, json otherwise)"),
}


_MIN_SECRET_BYTES: Final = 32


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value == "":
        return VARIABLES[name][0]
    return value


def _int(env: Mapping[str, str], name: str, *, minimum: int = 0) -> int:
    raw = _get(env, name)
    try:
        value = int(raw or "")
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


_MAX_PORT: Final = 65535


def _port_or_off(env: Mapping[str, str], name: str) -> int | None:
    """A listening port: 1-65535, ``0`` (any free port) or ``off`` (None: no listener)."""
    raw = (_get(env, name) or "").strip()
    if raw.lower() == "off":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a port (0-{_MAX_PORT}) or off, got {raw!r}") from None
    if not 0 <= value <= _MAX_PORT:
        raise ConfigError(f"{name} must be a port (0-{_MAX_PORT}) or off, got {value}")
    return value


def _check_cluster_url(url: str) -> None:
    """A Redis Cluster is reached over TCP and has database 0 only."""
    parts = urlsplit(url)
    database = parts.path.strip("/")
    if parts.scheme not in {"redis", "rediss"} or database not in {"", "0"}:
        # Neither the URL (it may hold a password) nor more than what is wrong.
        raise ConfigError(
            "REDIS_URL must be redis:// or rediss:// with database 0 when REDIS_CLUSTER "
            f"is on, got {parts.scheme}:// with database {database or '0'!r}"
        )


@dataclass(frozen=True, slots=True)
class Settings:
    env: str
    secret: str
    database_url: str
    database_read_url: str
    redis_url: str
    redis_cluster: bool
    redis_prefix: str
    host: str
    port: int
    data_dir: Path
    db_pool_size: int
    db_commit_lanes: int
    op_commit_timeout_ms: int
    group_commit_max: int
    snapshot_every: int
    snapshotter_linger_ms: int
    relay_stream_maxlen: int
    relay_stream_ttl: int
    relay_republish_window: int
    relay_linger_ms: int
    worker_batch: int
    worker_linger_ms: int
    worker_cache_docs: int
    worker_lease_interval_ms: int
    write_model_cache: int
    undo_depth: int
    max_body_bytes: int
    max_asset_bytes: int
    ws_hello_timeout_ms: int
    ws_send_queue: int
    ws_op_rate: int
    ws_op_burst: int
    ws_user_op_rate: int
    ws_user_op_burst: int
    ws_user_connections: int
    ws_presence_rate: int
    ws_presence_heartbeat_ms: int
    ws_presence_ttl_ms: int
    ws_allowed_origins: tuple[str, ...]
    metrics_host: str
    relay_metrics_port: int | None
    snapshotter_metrics_port: int | None
    worker_metrics_port: int | None
    backup_dir: Path
    backup_keep_daily: int
    backup_keep_weekly: int
    backup_keep_monthly: int
    log_level: str
    log_format: str

    @property
    def dev(self) -> bool:
        return self.env == "dev"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        app_env = _get(env, "APP_ENV") or "prod"
        data_dir = Path(_get(env, "APP_DATA_DIR") or ".data")
        secret = env.get("APP_SECRET") or ""
        if not secret:
            if app_env != "dev":
                raise ConfigError("APP_SECRET is required when APP_ENV is not 'dev'")
            secret = _dev_secret(data_dir)
        elif len(secret.encode()) < _MIN_SECRET_BYTES:
            # RFC 7518 3.2: an HS256 key must be at least as long as the hash (32 bytes).
            raise ConfigError(f"APP_SECRET must be at least {_MIN_SECRET_BYTES} bytes long")
        log_level = (_get(env, "LOG_LEVEL") or "info").lower()
        if log_level not in {"debug", "info", "warning", "error"}:
            raise ConfigError(f"LOG_LEVEL must be debug, info, warning or error, got {log_level!r}")
        log_format = (_get(env, "LOG_FORMAT") or "auto").lower()
        if log_format not in {"auto", "console", "json"}:
            raise ConfigError(f"LOG_FORMAT must be auto, console or json, got {log_format!r}")
        redis_prefix = _get(env, "REDIS_PREFIX") or ""
        if any(c in redis_prefix for c in "{} \t\r\n"):
            # A brace would move the Redis Cluster hash tag away from the document id.
            raise ConfigError(
                f"REDIS_PREFIX must not contain braces or whitespace, got {redis_prefix!r}"
            )
        redis_cluster = (_get(env, "REDIS_CLUSTER") or "").strip().lower()
        if redis_cluster not in {"on", "off"}:
            raise ConfigError(f"REDIS_CLUSTER must be on or off, got {redis_cluster!r}")
        if redis_cluster == "on":
            _check_cluster_url(_get(env, "REDIS_URL") or "")
        if log_format == "auto":
            log_format = "console" if app_env == "dev" else "json"
        port = _int(env, "APP_PORT")
        if port > _MAX_PORT:
            raise ConfigError(f"APP_PORT must be at most {_MAX_PORT}, got {port}")
        heartbeat_ms = _int(env, "WS_PRESENCE_HEARTBEAT_MS", minimum=10)
        presence_ttl_ms = _int(env, "WS_PRESENCE_TTL_MS", minimum=1)
        if presence_ttl_ms < 2 * heartbeat_ms:
            # Shorter, and a live peer whose liveness line is a little late would flap.
            raise ConfigError(
                f"WS_PRESENCE_TTL_MS must be at least twice WS_PRESENCE_HEARTBEAT_MS "
                f"({2 * heartbeat_ms}), got {presence_ttl_ms}"
            )
        return cls(
            env=app_env,
            secret=secret,
            database_url=_get(env, "DATABASE_URL") or "",
            database_read_url=_get(env, "DATABASE_READ_URL") or "",
            redis_url=_get(env, "REDIS_URL") or "",
            redis_cluster=redis_cluster == "on",
            redis_prefix=redis_prefix,
            host=_get(env, "APP_HOST") or "127.0.0.1",
            port=port,
            data_dir=data_dir,
            db_pool_size=_int(env, "DB_POOL_SIZE", minimum=2),
            db_commit_lanes=_int(env, "DB_COMMIT_LANES", minimum=1),
            op_commit_timeout_ms=_int(env, "OP_COMMIT_TIMEOUT_MS", minimum=1),
            group_commit_max=_int(env, "GROUP_COMMIT_MAX", minimum=1),
            snapshot_every=_int(env, "SNAPSHOT_EVERY"),
            snapshotter_linger_ms=_int(env, "SNAPSHOTTER_LINGER_MS"),
            relay_stream_maxlen=_int(env, "RELAY_STREAM_MAXLEN", minimum=1),
            relay_stream_ttl=_int(env, "RELAY_STREAM_TTL"),
            relay_republish_window=_int(env, "RELAY_REPUBLISH_WINDOW"),
            relay_linger_ms=_int(env, "RELAY_LINGER_MS"),
            worker_batch=_int(env, "WORKER_BATCH", minimum=1),
            worker_linger_ms=_int(env, "WORKER_LINGER_MS"),
            worker_cache_docs=_int(env, "WORKER_CACHE_DOCS"),
            worker_lease_interval_ms=_int(env, "WORKER_LEASE_INTERVAL_MS", minimum=50),
            write_model_cache=_int(env, "WRITE_MODEL_CACHE", minimum=1),
            undo_depth=_int(env, "UNDO_DEPTH", minimum=1),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", minimum=1024),
            max_asset_bytes=_int(env, "MAX_ASSET_BYTES", minimum=1024),
            ws_hello_timeout_ms=_int(env, "WS_HELLO_TIMEOUT_MS", minimum=1),
            ws_send_queue=_int(env, "WS_SEND_QUEUE", minimum=1),
            ws_op_rate=_int(env, "WS_OP_RATE", minimum=1),
            ws_op_burst=_int(env, "WS_OP_BURST", minimum=1),
            ws_user_op_rate=_int(env, "WS_USER_OP_RATE", minimum=1),
            ws_user_op_burst=_int(env, "WS_USER_OP_BURST", minimum=1),
            ws_user_connections=_int(env, "WS_USER_CONNECTIONS", minimum=1),
            ws_presence_rate=_int(env, "WS_PRESENCE_RATE", minimum=1),
            ws_presence_heartbeat_ms=heartbeat_ms,
            ws_presence_ttl_ms=presence_ttl_ms,
            ws_allowed_origins=_origins(_get(env, "WS_ALLOWED_ORIGINS") or ""),
            metrics_host=_get(env, "METRICS_HOST") or "127.0.0.1",
            relay_metrics_port=_port_or_off(env, "RELAY_METRICS_PORT"),
            snapshotter_metrics_port=_port_or_off(env, "SNAPSHOTTER_METRICS_PORT"),
            worker_metrics_port=_port_or_off(env, "WORKER_METRICS_PORT"),
            backup_dir=Path(_get(env, "BACKUP_DIR") or ".data/backups"),
            backup_keep_daily=_int(env, "BACKUP_KEEP_DAILY"),
            backup_keep_weekly=_int(env, "BACKUP_KEEP_WEEKLY"),
            backup_keep_monthly=_int(env, "BACKUP_KEEP_MONTHLY"),
            log_level=log_level,
            log_format=log_format,
        )


def _origins(raw: str) -> tuple[str, ...]:
    """``WS_ALLOWED_ORIGINS``: each origin as a browser sends it (``scheme://host[:port]``,
    lower case, no path); empty: any origin."""
    if raw.strip() == "*":
        return ()
    origins = []
    for item in raw.split(","):
        origin = item.strip().lower().rstrip("/")
        if not origin:
            continue
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme not in {"http", "https"} or not rest or "/" in rest:
            raise ConfigError(
                f"WS_ALLOWED_ORIGINS must list origins like https://app.example.com, "
                f"got {item.strip()!r}"
            )
        origins.append(origin)
    return tuple(origins)


def _dev_secret(data_dir: Path) -> str:
    """In dev only: a random secret kept in the data folder so tokens survive restarts."""
    path = data_dir / "dev-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        path.write_text(value + "\n")
        path.chmod(0o600)
        return value
