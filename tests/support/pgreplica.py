"""A PostgreSQL primary and a streaming replica of it, on free loopback ports.

``ReplicaPair.start(root)`` makes a scratch primary (``ScratchCluster``: initdb as the
``postgres`` system user when we are root, ``wal_level = replica``, replication
allowed from 127.0.0.1 without a password), copies it with ``pg_basebackup -R``
(which writes ``standby.signal`` and ``primary_conninfo``), starts the copy as a hot
standby on another port, and waits until the primary reports it ``streaming`` and it
answers ``pg_is_in_recovery()``. ``database`` is created on the primary first, so
both URLs name a database that exists on both servers. ``stop()`` stops both servers
and removes the folder.

Meant to be shared: ``tests/conftest.py`` starts one pair per session
(``pg_replica``); a test gives the gateways ``DATABASE_URL=pair.primary_url`` and
``DATABASE_READ_URL=pair.replica_url``, and the relay and workers the primary's.

``pause_replay()`` / ``resume_replay()`` stop and restart the replica's replay (the
WAL still streams in); ``replayed()`` waits until the replica has replayed
everything the primary had written when it was called.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from app.ops.pgtools import as_server_user, find_pg_bin
from app.views.replay import ReplicaReplay
from tests.support.pgcluster import ScratchCluster

__all__ = ["ReplicaPair"]

_PRIMARY_CONF = {
    "wal_level": "replica",
    "max_wal_senders": "5",
    "wal_keep_size": "256MB",
    "hot_standby": "on",
    "fsync": "off",
    "max_connections": "200",
}
_HBA = "\nhost replication all 127.0.0.1/32 trust\n"
_START_TIMEOUT = 60.0


@dataclass
class ReplicaPair:
    root: Path
    database: str = "atelier"
    primary: ScratchCluster = field(init=False)
    replica: ScratchCluster = field(init=False)

    @property
    def primary_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.primary.port}/{self.database}"

    @property
    def replica_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.replica.port}/{self.database}"

    @classmethod
    def start(cls, root: Path | None = None, database: str = "atelier") -> ReplicaPair:
        """Both servers up and streaming; stopped again if any step fails."""
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="atelier-replica-"))
        root.chmod(0o755)  # the server user walks into it
        pair = cls(root, database)
        try:
            pair._start()
        except BaseException:
            pair.stop()
            raise
        return pair

    def _start(self) -> None:
        self.primary = ScratchCluster(self.root / "primary", _PRIMARY_CONF).init()
        with (self.primary.data / "pg_hba.conf").open("a") as hba:
            hba.write(_HBA)
        self.primary.start()
        asyncio.run(self._create_database())
        self.replica = ScratchCluster(self.root / "replica")
        self.replica.root.mkdir(parents=True)
        if as_server_user():
            shutil.chown(self.replica.root, "postgres", "postgres")
        subprocess.run(
            [
                *as_server_user(),
                find_pg_bin("pg_basebackup"),
                "-R",
                "-D",
                str(self.replica.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary.port),
                "-U",
                "postgres",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.replica.start()
        asyncio.run(self._wait_streaming())

    async def _create_database(self) -> None:
        conn = await asyncpg.connect(self.primary.dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()

    async def _wait_streaming(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                primary = await asyncpg.connect(self.primary.dsn)
                replica = await asyncpg.connect(self.replica.dsn)
                try:
                    streaming = await primary.fetchval(
                        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                    )
                    if streaming and await replica.fetchval("SELECT pg_is_in_recovery()"):
                        return
                finally:
                    await primary.close()
                    await replica.close()
            if time.monotonic() > deadline:
                log = (self.root / "replica" / "log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the replica did not start streaming:\n{log}")
            await asyncio.sleep(0.1)

    async def replayed(self, within: float = 30.0) -> None:
        """Return once the replica has replayed all the primary had written at the call."""
        primary = await asyncpg.connect(self.primary_url)
        replica = await asyncpg.connect(self.replica_url)
        try:
            async with asyncio.timeout(within):
                await ReplicaReplay(primary, replica).caught_up()
        finally:
            await primary.close()
            await replica.close()

    async def _on_replica(self, sql: str) -> None:
        conn = await asyncpg.connect(self.replica_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def pause_replay(self) -> None:
        await self._on_replica("SELECT pg_wal_replay_pause()")

    async def resume_replay(self) -> None:
        await self._on_replica("SELECT pg_wal_replay_resume()")

    def stop(self) -> None:
        for name in ("replica", "primary"):
            cluster = getattr(self, name, None)
            if cluster is not None and (cluster.data / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.SubprocessError):
                    cluster.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
