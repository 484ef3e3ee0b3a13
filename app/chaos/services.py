"""The run's own PostgreSQL cluster and Redis server, which it may restart at will.

PostgreSQL: ``initdb`` into the run's folder, a free loopback port, its unix socket in
that folder; as root the cluster belongs to the ``postgres`` system user and its
commands run through ``runuser`` (app/ops/pgtools.py). Redis: ``redis-server`` on a
free loopback port with nothing persisted, so a restart brings it back empty.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from app.ops.pgtools import as_server_user, find_pg_bin, free_port, initdb_argv

__all__ = ["PgCluster", "RedisServer"]


class PgCluster:
    """A scratch cluster under ``root``; ``dsn`` reaches it directly (not via a proxy)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.log = root / "postgres.log"
        self.port = free_port()
        self._as_user = as_server_user()

    def dsn(self, port: int | None = None, database: str = "atelier") -> str:
        return f"postgresql://postgres@127.0.0.1:{port or self.port}/{database}"

    async def _run(self, *argv: str) -> None:
        def call() -> None:
            done = subprocess.run(
                [*self._as_user, *argv],
                capture_output=True,
                timeout=180,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            if done.returncode != 0:
                said = (done.stderr or done.stdout).decode(errors="replace").strip()
                raise RuntimeError(f"{Path(argv[0]).name} {argv[-1]}: {said[-500:]}")

        await asyncio.to_thread(call)

    async def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            shutil.chown(self.root, "postgres", "postgres")
        await self._run(*initdb_argv(self.data))

    async def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
            " -c max_connections=200"
        )
        await self._run(
            find_pg_bin("pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.log),
            "-w", "-t", "120", "start",
        )  # fmt: skip

    async def stop(self, mode: str = "fast") -> None:
        await self._run(
            find_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "120", "stop"
        )

    async def restart(self, mode: str) -> None:
        """``pg_ctl stop -m mode`` (``fast`` or ``immediate``), then start again."""
        await self.stop(mode)
        await self.start()

    def stop_now(self) -> None:
        """The teardown's stop, synchronous, whatever state the cluster is in."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self._as_user, find_pg_bin("pg_ctl"), "-D", str(self.data), "-m",
                 "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )  # fmt: skip


class RedisServer:
    """``redis-server`` on a free port; ``restart()`` brings it back empty."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.log = root / "redis.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server not found on PATH: install redis-server")
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            binary,
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", str(self.root), "--logfile", str(self.log), "--daemonize", "no",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,
        )  # fmt: skip
        await self._wait_ready()

    async def _wait_ready(self, within: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if self.proc is not None and self.proc.returncode is not None:
                    raise RuntimeError(f"redis-server exited: see {self.log}") from None
                if loop.time() > deadline:
                    raise RuntimeError(f"redis-server did not answer in {within} s") from None
                await asyncio.sleep(0.05)
                continue
            writer.transport.abort()
            return

    async def kill(self) -> None:
        """SIGKILL: everything it held is gone."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def restart(self) -> None:
        await self.kill()
        await self.start()
