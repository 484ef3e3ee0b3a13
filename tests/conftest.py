"""Shared fixtures, one section per backing service; each fixture cleans up after itself.

PostgreSQL
    ``pg_admin_dsn``  (session) a DSN of the server's maintenance database. From
                      ``ATELIER_TEST_DATABASE_URL`` if set, else ``DATABASE_URL``'s
                      server, else postgresql://postgres@127.0.0.1:5432/postgres.
    ``pg_dsn``        (session) a throwaway database ``atelier_test_<time>_<random>``,
                      migrated once and dropped at the end of the session. Before it
                      is made, such databases older than ``STALE_AFTER`` that no one is
                      connected to are dropped: what a killed run left behind.
    ``pg_clean``      (function) the same DSN, for a test that opens its own pools or
                      connections; the store is empty when the test starts and every
                      store table is emptied after it (see ``reset_store``).
    ``pg_pool``       (function) an asyncpg pool on it, from ``app.store.pool``.
    ``store``         (function) a ``PostgresStore`` over that pool.
    ``scratch_dsn``   (function) a factory of further empty, unmigrated databases,
                      for tests of the migration runner itself; dropped afterwards.

    ``pg_replica``    (session) a ``ReplicaPair`` (tests/support/pgreplica.py): a
                      scratch primary and a hot standby streaming from it, on free
                      ports, database ``atelier`` migrated; ``.primary_url``,
                      ``.replica_url``, ``.replayed()``, ``.pause_replay()``. Tests on
                      it override ``pg_dsn`` with ``.primary_url``.

Redis (``redis_url``, ``redis_prefix``, ``redis``, ``redis_server``) is described at
the top of its section below. Further services go in their own sections, same habits:
session-scoped servers or databases, function-scoped clients, cleanup in the fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app.bus import Keys, Redis, create_redis
from app.store.migrate import ensure_database, migrate
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from tests.support.pgreplica import ReplicaPair
from tests.support.rediscluster import RedisCluster, start_cluster

# ---------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------

_DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

# Every table the store writes. The events triggers forbid TRUNCATE; a superuser may
# bypass them for the session with session_replication_role = replica, which is what
# a test cleanup is (the production role is not a superuser).
_STORE_TABLES = (
    "events",
    "op_ledger",
    "snapshots",
    "named_versions",
    "members",
    "documents",
    "assets",
)

# The read side's views (migration 0004_read); reset_store empties every generation.
_READ_VIEWS = ("doc_state", "catalog", "activity", "history")


def _admin_dsn() -> str:
    explicit = os.environ.get("ATELIER_TEST_DATABASE_URL")
    if explicit:
        return explicit
    app_dsn = os.environ.get("DATABASE_URL")
    if app_dsn:
        return with_database(app_dsn, "postgres")
    return _DEFAULT_ADMIN_DSN


def with_database(dsn: str, database: str) -> str:
    """``dsn`` with its database replaced (path component)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def drop_database(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await conn.close()


async def _reset_read_side(conn: asyncpg.Connection) -> None:
    """Empty every view table of every generation and rewind each checkpoint to 0."""
    tables = await conn.fetch(
        "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables"
        " WHERE schemaname = 'read' AND tablename ~ '_g[0-9]+$'"
    )
    names = [row["name"] for row in tables] + ["read.dead_letters"]
    await conn.execute(f"TRUNCATE {', '.join(names)}")
    await conn.execute(
        "UPDATE read.checkpoints SET position = 0, epoch = 1, fencing = 0, owner = NULL,"
        " status = 'running', heartbeat_at = NULL"
    )


async def reset_store(dsn: str) -> None:
    """Empty every store table and rewind the log to position 0, epoch 1."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(f"TRUNCATE {', '.join(_STORE_TABLES)}")
            await conn.execute("UPDATE log_head SET last_position = 0")
            await conn.execute("UPDATE store_meta SET epoch = 1")
            await _reset_read_side(conn)
    finally:
        await conn.close()


# A test session takes minutes (make test's budget is 15); a throwaway database this old
# with no connection is a killed run's.
STALE_AFTER = 6 * 3600
_THROWAWAY = re.compile(r"atelier_test_([0-9a-f]{8})_[0-9a-f]{8}")


def throwaway_name() -> str:
    """``atelier_test_<creation time, hex seconds>_<random>``: a later session can tell
    a leftover from a database in use (``drop_stale_databases``)."""
    return f"atelier_test_{int(time.time()):08x}_{uuid.uuid4().hex[:8]}"


async def drop_stale_databases(admin_dsn: str, now: float | None = None) -> list[str]:
    """Drop the throwaway databases made more than ``STALE_AFTER`` seconds ago that no
    one is connected to (a killed session never dropped its own); the names dropped."""
    now = time.time() if now is None else now
    conn = await asyncpg.connect(admin_dsn)
    dropped = []
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'atelier_test_%'"
        )
        for row in names:
            match = _THROWAWAY.fullmatch(row["datname"])
            if match is None or now - int(match.group(1), 16) < STALE_AFTER:
                continue
            try:  # no FORCE: a database someone is connected to is not a leftover
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}"')
            except asyncpg.ObjectInUseError:
                continue
            dropped.append(row["datname"])
    finally:
        await conn.close()
    return dropped


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    return _admin_dsn()


@pytest.fixture(scope="session")
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    # Synchronous on purpose: a session fixture with its own asyncio.run needs no
    # session-scoped event loop, and every test keeps its own loop.
    asyncio.run(drop_stale_databases(pg_admin_dsn))
    name = throwaway_name()
    dsn = with_database(pg_admin_dsn, name)
    asyncio.run(ensure_database(dsn))
    try:
        asyncio.run(migrate(dsn))
        yield dsn
    finally:
        asyncio.run(drop_database(pg_admin_dsn, name))


async def store_is_empty(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(
            await conn.fetchval(
                "SELECT (SELECT last_position = 0 FROM log_head)"
                " AND (SELECT epoch = 1 FROM store_meta)"
                + "".join(f" AND NOT EXISTS (SELECT FROM {table})" for table in _STORE_TABLES)
                + " AND NOT EXISTS (SELECT FROM read.checkpoints WHERE position > 0"
                " OR fencing > 0 OR status <> 'running')"
                + "".join(f" AND NOT EXISTS (SELECT FROM read.{view})" for view in _READ_VIEWS)
                + " AND NOT EXISTS (SELECT FROM read.dead_letters)"
            )
        )
    finally:
        await conn.close()


@pytest.fixture
async def pg_clean(pg_dsn: str) -> AsyncIterator[str]:
    # Also emptied BEFORE the test when a test that does not use this fixture left rows
    # behind, so every test here starts from an empty store at position 0.
    if not await store_is_empty(pg_dsn):
        await reset_store(pg_dsn)
    try:
        yield pg_dsn
    finally:
        await reset_store(pg_dsn)


@pytest.fixture
async def pg_pool(pg_clean: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(pg_clean, 8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def store(pg_pool: asyncpg.Pool) -> PostgresStore:
    return PostgresStore(pg_pool)


@pytest.fixture
async def scratch_dsn(pg_admin_dsn: str) -> AsyncIterator[Callable[[], str]]:
    names: list[str] = []

    def make() -> str:
        name = throwaway_name()
        names.append(name)
        return with_database(pg_admin_dsn, name)

    try:
        yield make
    finally:
        for name in names:
            await drop_database(pg_admin_dsn, name)


@pytest.fixture(scope="session")
def pg_replica() -> Iterator[ReplicaPair]:
    pair = ReplicaPair.start()
    try:
        asyncio.run(migrate(pair.primary_url))
        yield pair
    finally:
        pair.stop()


# ---------------------------------------------------------------------------------
# Redis
#
#   ``redis_url``     (session) the shared server: ``ATELIER_TEST_REDIS_URL``, else
#                     ``REDIS_URL``, else redis://127.0.0.1:6379/0.
#   ``redis_prefix``  (function) a key prefix of the test's own (``atelier_test_<hex>:``);
#                     every key under it is deleted after the test. Tests on the shared
#                     server touch nothing else (never FLUSHALL there).
#   ``redis``         (function) a client of ``app.bus.create_redis`` (bytes), closed after.
#   ``redis_cluster`` (module) a local three-master Redis Cluster
#                     (tests/support/rediscluster.py); ``cluster_redis`` (function) a
#                     client of it; ``cluster_prefix`` (function) a key prefix on it,
#                     its keys deleted after the test.
#   ``redis_server``  (function) a private redis-server of the test's own on a free
#                     port, nothing persisted, for tests that FLUSHALL, stop or restart
#                     Redis: ``.url``, ``.stop()``, ``.start()``, ``.client()``.
# ---------------------------------------------------------------------------------

_DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


async def delete_prefix(client: Redis, prefix: str) -> int:
    """Delete every key under ``prefix``; how many there were."""
    deleted = 0
    async for key in client.scan_iter(match=Keys(prefix).all_pattern, count=500):
        deleted += await client.unlink(key)
    return deleted


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A three-master cluster for the tests of one module."""
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def cluster_redis(redis_cluster: RedisCluster) -> AsyncIterator[Redis]:
    client = redis_cluster.client()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def cluster_prefix(cluster_redis: Redis) -> AsyncIterator[str]:
    value = f"rc{uuid.uuid4().hex[:8]}:"
    try:
        yield value
    finally:
        await delete_prefix(cluster_redis, value)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return (
        os.environ.get("ATELIER_TEST_REDIS_URL")
        or os.environ.get("REDIS_URL")
        or _DEFAULT_REDIS_URL
    )


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"atelier_test_{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        client = create_redis(redis_url)
        try:
            await delete_prefix(client, prefix)
        finally:
            await client.aclose()


@pytest.fixture
async def redis(redis_url: str, redis_prefix: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


class RedisServer:
    """A redis-server of one test's own: no persistence, so a restart loses everything
    (as a production Redis without AOF would)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--logfile",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def client(self) -> Redis:
        return create_redis(self.url, socket_timeout=2, connect_timeout=1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
