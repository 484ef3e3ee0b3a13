"""Settings: every variable is read, every error names its variable, the dev secret."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from app.config import VARIABLES, Settings
from app.errors import ConfigError

# A valid value other than the default for every variable, and the field it sets.
OTHER_VALUES: dict[str, tuple[str, str, object]] = {
    "APP_ENV": ("dev", "env", "dev"),
    "APP_SECRET": ("s3cret" * 6, "secret", "s3cret" * 6),
    "DATABASE_URL": ("postgresql://u@db:6543/x", "database_url", "postgresql://u@db:6543/x"),
    "DATABASE_READ_URL": (
        "postgresql://u@replica:6543/x",
        "database_read_url",
        "postgresql://u@replica:6543/x",
    ),
    "REDIS_URL": ("redis://cache:6380/2", "redis_url", "redis://cache:6380/2"),
    "REDIS_CLUSTER": (" On ", "redis_cluster", True),
    "REDIS_PREFIX": ("staging:", "redis_prefix", "staging:"),
    "APP_HOST": ("0.0.0.0", "host", "0.0.0.0"),
    "APP_PORT": ("9001", "port", 9001),
    "APP_DATA_DIR": ("/var/lib/atelier", "data_dir", Path("/var/lib/atelier")),
    "DB_POOL_SIZE": ("20", "db_pool_size", 20),
    "DB_COMMIT_LANES": ("4", "db_commit_lanes", 4),
    "GROUP_COMMIT_MAX": ("64", "group_commit_max", 64),
    "OP_COMMIT_TIMEOUT_MS": ("2500", "op_commit_timeout_ms", 2500),
    "SNAPSHOT_EVERY": ("0", "snapshot_every", 0),
    "SNAPSHOTTER_LINGER_MS": ("0", "snapshotter_linger_ms", 0),
    "RELAY_STREAM_MAXLEN": ("50", "relay_stream_maxlen", 50),
    "RELAY_STREAM_TTL": ("0", "relay_stream_ttl", 0),
    "RELAY_REPUBLISH_WINDOW": ("500", "relay_republish_window", 500),
    "RELAY_LINGER_MS": ("5", "relay_linger_ms", 5),
    "WORKER_BATCH": ("500", "worker_batch", 500),
    "WORKER_LINGER_MS": ("25", "worker_linger_ms", 25),
    "WORKER_CACHE_DOCS": ("0", "worker_cache_docs", 0),
    "WORKER_LEASE_INTERVAL_MS": ("250", "worker_lease_interval_ms", 250),
    "WRITE_MODEL_CACHE": ("10", "write_model_cache", 10),
    "UNDO_DEPTH": ("7", "undo_depth", 7),
    "MAX_BODY_BYTES": ("2048", "max_body_bytes", 2048),
    "MAX_ASSET_BYTES": ("4096", "max_asset_bytes", 4096),
    "WS_HELLO_TIMEOUT_MS": ("250", "ws_hello_timeout_ms", 250),
    "WS_SEND_QUEUE": ("8", "ws_send_queue", 8),
    "WS_OP_RATE": ("5", "ws_op_rate", 5),
    "WS_OP_BURST": ("10", "ws_op_burst", 10),
    "WS_USER_OP_RATE": ("7", "ws_user_op_rate", 7),
    "WS_USER_OP_BURST": ("9", "ws_user_op_burst", 9),
    "WS_USER_CONNECTIONS": ("3", "ws_user_connections", 3),
    "WS_PRESENCE_RATE": ("4", "ws_presence_rate", 4),
    "WS_PRESENCE_HEARTBEAT_MS": ("1000", "ws_presence_heartbeat_ms", 1000),
    "WS_PRESENCE_TTL_MS": ("12000", "ws_presence_ttl_ms", 12000),
    "METRICS_HOST": ("0.0.0.0", "metrics_host", "0.0.0.0"),
    "RELAY_METRICS_PORT": ("0", "relay_metrics_port", 0),
    "SNAPSHOTTER_METRICS_PORT": ("off", "snapshotter_metrics_port", None),
    "WORKER_METRICS_PORT": ("19103", "worker_metrics_port", 19103),
    "WS_ALLOWED_ORIGINS": (
        " https://App.example.com/ ,http://localhost:5173",
        "ws_allowed_origins",
        ("https://app.example.com", "http://localhost:5173"),
    ),
    "BACKUP_DIR": ("/var/backups/atelier", "backup_dir", Path("/var/backups/atelier")),
    "BACKUP_KEEP_DAILY": ("3", "backup_keep_daily", 3),
    "BACKUP_KEEP_WEEKLY": ("0", "backup_keep_weekly", 0),
    "BACKUP_KEEP_MONTHLY": ("12", "backup_keep_monthly", 12),
    "LOG_LEVEL": ("DEBUG", "log_level", "debug"),
    "LOG_FORMAT": ("console", "log_format", "console"),
}

INTEGER_VARIABLES = [
    "APP_PORT",
    "DB_POOL_SIZE",
    "DB_COMMIT_LANES",
    "GROUP_COMMIT_MAX",
    "OP_COMMIT_TIMEOUT_MS",
    "SNAPSHOT_EVERY",
    "SNAPSHOTTER_LINGER_MS",
    "RELAY_STREAM_MAXLEN",
    "RELAY_STREAM_TTL",
    "RELAY_REPUBLISH_WINDOW",
    "RELAY_LINGER_MS",
    "WORKER_BATCH",
    "WORKER_LINGER_MS",
    "WORKER_CACHE_DOCS",
    "WORKER_LEASE_INTERVAL_MS",
    "WRITE_MODEL_CACHE",
    "UNDO_DEPTH",
    "MAX_BODY_BYTES",
    "MAX_ASSET_BYTES",
    "WS_HELLO_TIMEOUT_MS",
    "WS_SEND_QUEUE",
    "WS_OP_RATE",
    "WS_OP_BURST",
    "WS_USER_OP_RATE",
    "WS_USER_OP_BURST",
    "WS_USER_CONNECTIONS",
    "WS_PRESENCE_RATE",
    "WS_PRESENCE_HEARTBEAT_MS",
    "WS_PRESENCE_TTL_MS",
    "RELAY_METRICS_PORT",
    "SNAPSHOTTER_METRICS_PORT",
    "WORKER_METRICS_PORT",
    "BACKUP_KEEP_DAILY",
    "BACKUP_KEEP_WEEKLY",
    "BACKUP_KEEP_MONTHLY",
]


def prod(**env: str) -> Settings:
    return Settings.from_env({"APP_SECRET": "k" * 32, **env})


def test_every_variable_has_a_test_value() -> None:
    assert set(OTHER_VALUES) == set(VARIABLES)


def test_every_field_comes_from_a_variable() -> None:
    fields = {field.name for field in dataclasses.fields(Settings)}
    assert fields == {field for _, field, _ in OTHER_VALUES.values()}


def test_defaults_are_the_documented_ones() -> None:
    settings = prod()
    for name, (default, _meaning) in VARIABLES.items():
        if default is None:
            continue
        _value, field, _parsed = OTHER_VALUES[name]
        if name == "WS_ALLOWED_ORIGINS":
            assert settings.ws_allowed_origins == ()  # `*`: any origin
            continue
        if name == "REDIS_CLUSTER":
            assert settings.redis_cluster is False  # off: a single Redis
            continue
        assert str(getattr(settings, field)) == default.lower() or name == "LOG_FORMAT", name
    assert settings.env == "prod"
    assert not settings.dev
    assert settings.log_format == "json"  # auto outside dev


@pytest.mark.parametrize("name", sorted(OTHER_VALUES))
def test_each_variable_is_read(name: str, tmp_path: Path) -> None:
    value, field, parsed = OTHER_VALUES[name]
    env = {"APP_SECRET": "k" * 32, "APP_DATA_DIR": str(tmp_path), name: value}
    assert getattr(Settings.from_env(env), field) == parsed


def test_an_empty_origin_list_allows_any() -> None:
    assert prod(WS_ALLOWED_ORIGINS="").ws_allowed_origins == ()
    assert prod(WS_ALLOWED_ORIGINS=" , ").ws_allowed_origins == ()


def test_empty_values_mean_the_default() -> None:
    settings = prod(APP_PORT="", LOG_LEVEL="", DATABASE_URL="")
    assert settings.port == 8000
    assert settings.log_level == "info"
    assert settings.database_url == VARIABLES["DATABASE_URL"][0]


@pytest.mark.parametrize("name", INTEGER_VARIABLES)
def test_integer_errors_name_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        prod(**{name: "lots"})
    assert "'lots'" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("APP_PORT", "-1"),
        ("APP_PORT", "65536"),
        ("DB_POOL_SIZE", "1"),
        ("DB_COMMIT_LANES", "0"),
        ("GROUP_COMMIT_MAX", "0"),
        ("OP_COMMIT_TIMEOUT_MS", "0"),
        ("SNAPSHOT_EVERY", "-5"),
        ("SNAPSHOTTER_LINGER_MS", "-1"),
        ("RELAY_STREAM_MAXLEN", "0"),
        ("RELAY_STREAM_TTL", "-1"),
        ("RELAY_REPUBLISH_WINDOW", "-1"),
        ("RELAY_LINGER_MS", "-1"),
        ("REDIS_CLUSTER", "yes"),
        ("REDIS_CLUSTER", "auto"),
        ("REDIS_PREFIX", "a{b}:"),
        ("REDIS_PREFIX", "my prefix:"),
        ("WORKER_BATCH", "0"),
        ("WORKER_LINGER_MS", "-1"),
        ("WORKER_CACHE_DOCS", "-1"),
        ("WORKER_LEASE_INTERVAL_MS", "10"),
        ("WRITE_MODEL_CACHE", "0"),
        ("UNDO_DEPTH", "0"),
        ("MAX_BODY_BYTES", "1023"),
        ("MAX_ASSET_BYTES", "12"),
        ("WS_HELLO_TIMEOUT_MS", "0"),
        ("WS_SEND_QUEUE", "0"),
        ("WS_OP_RATE", "0"),
        ("WS_OP_BURST", "0"),
        ("WS_USER_OP_RATE", "0"),
        ("WS_USER_OP_BURST", "0"),
        ("WS_USER_CONNECTIONS", "0"),
        ("WS_PRESENCE_RATE", "0"),
        ("WS_PRESENCE_HEARTBEAT_MS", "5"),
        ("WS_PRESENCE_HEARTBEAT_MS", "8000"),  # the default TTL is then under twice it
        ("WS_PRESENCE_TTL_MS", "9999"),  # under twice the default heartbeat
        ("RELAY_METRICS_PORT", "-1"),
        ("SNAPSHOTTER_METRICS_PORT", "65536"),
        ("WORKER_METRICS_PORT", "no"),
        ("WS_ALLOWED_ORIGINS", "app.example.com"),
        ("WS_ALLOWED_ORIGINS", "https://app.example.com/editor"),
        ("WS_ALLOWED_ORIGINS", "ftp://files.example.com"),
        ("LOG_LEVEL", "verbose"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_out_of_range_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        prod(**{name: value})


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis://:secret@cache:6380/2", "redis:// with database '2'"),
        ("unix:///run/redis.sock", "unix:// with database 'run/redis.sock'"),
        ("http://cache:6379", "http:// with database '0'"),
    ],
)
def test_a_cluster_url_is_tcp_with_database_0(url: str, said: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL") as caught:
        prod(REDIS_CLUSTER="on", REDIS_URL=url)
    assert said in str(caught.value)
    assert "secret" not in str(caught.value)
    assert prod(REDIS_CLUSTER="on", REDIS_URL="rediss://:pw@node-0:6379/0").redis_cluster
    assert prod(REDIS_CLUSTER="on", REDIS_URL="redis://node-0:6379").redis_cluster


def test_metrics_ports_default_to_fixed_ones_and_may_be_off() -> None:
    settings = prod()
    ports = (settings.relay_metrics_port, settings.snapshotter_metrics_port)
    assert (*ports, settings.worker_metrics_port) == (9101, 9102, 9103)
    assert prod(RELAY_METRICS_PORT=" OFF ").relay_metrics_port is None


def test_presence_ttl_and_heartbeat_are_set_together() -> None:
    settings = prod(WS_PRESENCE_HEARTBEAT_MS="100", WS_PRESENCE_TTL_MS="200")
    assert (settings.ws_presence_heartbeat_ms, settings.ws_presence_ttl_ms) == (100, 200)


def test_secret_is_required_outside_dev(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="APP_SECRET"):
        Settings.from_env({"APP_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="APP_SECRET"):
        Settings.from_env({"APP_ENV": "staging", "APP_SECRET": ""})
    assert not list(tmp_path.iterdir())  # and nothing was written


def test_dev_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Settings.from_env({"APP_ENV": "dev", "APP_DATA_DIR": str(data)})
    secret_file = data / "dev-secret"
    assert first.secret and len(first.secret) >= 32
    assert secret_file.read_text().strip() == first.secret
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    second = Settings.from_env({"APP_ENV": "dev", "APP_DATA_DIR": str(data)})
    assert second.secret == first.secret
    assert second.dev
    assert second.log_format == "console"  # auto in dev


def test_explicit_secret_wins_in_dev(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"APP_ENV": "dev", "APP_SECRET": "mine" * 8, "APP_DATA_DIR": str(tmp_path)}
    )
    assert settings.secret == "mine" * 8
    assert not (tmp_path / "dev-secret").exists()


def test_settings_are_frozen() -> None:
    settings = prod()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="APP_SECRET must be at least 32 bytes"):
        Settings.from_env({"APP_SECRET": "x" * 31})
