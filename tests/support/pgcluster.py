"""A throwaway PostgreSQL cluster of a test's own, for tests that restart the server.

Found from the installed binaries (PATH, then /usr/lib/postgresql/*/bin). initdb will
not run as root, so as root the cluster belongs to the ``postgres`` system user and
its commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path

__all__ = ["ScratchCluster", "find_pg_bin"]


def find_pg_bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = shutil.which(name) or (candidates[0] if candidates else None)
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL's server binaries")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ScratchCluster:
    """``conf``: extra server settings, appended to postgresql.conf by ``init``
    (e.g. ``wal_level``, ``archive_mode``, ``archive_command`` for a backup test)."""

    def __init__(self, root: Path, conf: dict[str, str] | None = None) -> None:
        self.root = root
        self.conf = dict(conf or {})
        self.data = root / "pgdata"
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> ScratchCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            find_pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        if self.conf:
            quoted = (f"{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in self.conf.items())
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write("\n" + "\n".join(quoted) + "\n")
        return self

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run(
            find_pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(find_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()
