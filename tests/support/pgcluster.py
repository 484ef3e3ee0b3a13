"""A throwaway PostgreSQL cluster of a test's own, for tests that restart the server.

Found from the installed binaries (PATH, then /usr/lib/postgresql/*/bin) and made the
way the chaos run makes its own (app/ops/pgtools.py). initdb will not run as root, so
as root the cluster belongs to the ``postgres`` system user and its commands run
through ``runuser``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from app.ops.pgtools import as_server_user, find_pg_bin, free_port, initdb_argv

__all__ = ["ScratchCluster", "find_pg_bin"]


class ScratchCluster:
    """``conf``: extra server settings, appended to postgresql.conf by ``init``
    (e.g. ``wal_level``, ``archive_mode``, ``archive_command`` for a backup test)."""

    def __init__(self, root: Path, conf: dict[str, str] | None = None) -> None:
        self.root = root
        self.conf = dict(conf or {})
        self.data = root / "pgdata"
        self.port = free_port()
        self._as_user = as_server_user()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> ScratchCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(*initdb_argv(self.data))
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
