"""``python -m app restore-drill``: restore a base backup, replay WAL, prove the store.

The drill is the restore runbook (docs/operations.md, "Restore") run end to end on a
scratch cluster, timed:

1. note what the source (``DATABASE_URL``) holds now: its last event at or before the
   cut (``--target-time``, or the drill's start with ``--latest``); the source may be
   gone, then RPO is unknown;
2. unpack the backup (``--backup LABEL``, default the newest in ``BACKUP_DIR``) into a
   fresh data folder; with ``--wal-archive DIR`` configure archive recovery
   (``restore_command`` copying from DIR, ``recovery_target_time`` when given,
   ``recovery_target_action = promote``, ``recovery.signal``); archiving is off in
   the copy so a drill never writes into the production archive;
3. start it on a free loopback port (``pg_ctl``), wait until recovery ended (promoted)
   and it takes connections;
4. bump ``store_meta.epoch`` (EVENTSTORE.md: every cursor of the old epoch is void);
5. ``rebuild --all`` the views against it, then ``verify`` (must pass);
6. print RTO (wall time from the start to verified) and RPO (events acknowledged by
   the source before the cut that the restore does not hold, and the seconds between
   the last of them and the restore's last event), then stop and remove the scratch
   cluster unless ``--keep``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import asyncpg

from app.config import Settings
from app.errors import Invalid
from app.ops import rebuild as rebuild_op
from app.ops import verify as verify_op
from app.ops.backup import BackupInfo, list_backups
from app.ops.migrate import redact
from app.ops.pgtools import as_server_user, find_pg_bin, free_port, with_host_port
from app.views.schema import VIEWS

__all__ = ["DrillError", "DrillResult", "parse_target", "run"]


def parse_target(raw: str | None) -> datetime | None:
    """``--target-time``: an ISO 8601 time with its zone (``...Z`` or ``+00:00``)."""
    if raw is None:
        return None
    try:
        target = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid(f"--target-time: not an ISO 8601 time: {raw!r}") from None
    if target.tzinfo is None:
        raise Invalid(f"--target-time needs a zone, e.g. {raw}Z or {raw}+00:00")
    return target


class DrillError(RuntimeError):
    pass


@dataclass(slots=True)
class LastEvent:
    position: int
    ts: datetime | None


@dataclass(slots=True)
class DrillResult:
    backup: str
    target: str
    port: int
    data_dir: Path
    steps: dict[str, float] = field(default_factory=dict)
    epoch_before: int | None = None
    epoch_after: int | None = None
    source: LastEvent | None = None
    restored: LastEvent | None = None
    missing: int | None = None
    verified: bool = False


def _choose(settings: Settings, label: str | None) -> BackupInfo:
    backups = list_backups(settings.backup_dir)
    if not backups:
        raise DrillError(f"no complete backup in {settings.backup_dir} (BACKUP_DIR)")
    if label is None:
        return backups[-1]
    for b in backups:
        if b.label == label:
            return b
    labels = ", ".join(b.label for b in backups)
    raise DrillError(f"no backup {label!r} in {settings.backup_dir}; there are: {labels}")


async def _source_last(dsn: str, cut: datetime) -> LastEvent:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        row = await conn.fetchrow(
            "SELECT position, ts FROM events WHERE ts <= $1 ORDER BY position DESC LIMIT 1", cut
        )
    finally:
        await conn.close()
    return LastEvent(int(row["position"]), row["ts"]) if row else LastEvent(0, None)


def _log_tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no server log)"


async def _wait_promoted(dsn: str, limit: float, data: Path, log: Path) -> None:
    deadline = time.monotonic() + limit
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not (data / "postmaster.pid").exists():
            # e.g. "recovery ended before configured recovery target was reached"
            raise DrillError(f"the restored server stopped during recovery:\n{_log_tail(log)}")
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
            try:
                if not await conn.fetchval("SELECT pg_is_in_recovery()"):
                    return
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise DrillError(f"recovery did not end within {limit:.0f} s ({last or 'still in recovery'})")


async def _bump_epoch(dsn: str) -> tuple[int, int, LastEvent]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        async with conn.transaction():
            before = await conn.fetchval("SELECT epoch FROM store_meta FOR UPDATE")
            after = await conn.fetchval("UPDATE store_meta SET epoch = epoch + 1 RETURNING epoch")
        row = await conn.fetchrow("SELECT position, ts FROM events ORDER BY position DESC LIMIT 1")
    finally:
        await conn.close()
    last = LastEvent(int(row["position"]), row["ts"]) if row else LastEvent(0, None)
    return int(before), int(after), last


async def _missing(dsn: str, cut: datetime, after: int) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        n = await conn.fetchval(
            "SELECT count(*) FROM events WHERE ts <= $1 AND position > $2", cut, after
        )
    finally:
        await conn.close()
    return int(n)


def _unpack(backup: BackupInfo, data: Path) -> None:
    data.mkdir(mode=0o700)
    with tarfile.open(backup.path / "base.tar.gz") as tar:
        tar.extractall(data)  # our own backup, written by pg_basebackup
    wal = backup.path / "pg_wal.tar.gz"
    if wal.exists():
        with tarfile.open(wal) as tar:
            tar.extractall(data / "pg_wal")
    extra = [p.name for p in backup.path.glob("*.tar.gz") if p.name[0].isdigit()]
    if extra:
        raise DrillError(f"tablespace tars {extra}: the drill restores no tablespaces")


def _configure(data: Path, archive: Path | None, target: datetime | None) -> None:
    lines = ["", "# restore-drill", "archive_mode = off"]
    if archive is not None:
        command = f"cp '{archive}/%f' '%p'"
        lines += [
            f"restore_command = '{command.replace(chr(39), chr(39) * 2)}'",
            "recovery_target_action = 'promote'",
            "recovery_target_timeline = 'latest'",
        ]
        if target is not None:
            lines.append(f"recovery_target_time = '{target.isoformat()}'")
        (data / "recovery.signal").touch()
    with (data / "postgresql.auto.conf").open("a") as conf:
        conf.write("\n".join(lines) + "\n")
    for stale in ("postmaster.pid", "postmaster.opts"):
        (data / stale).unlink(missing_ok=True)


def _chown(root: Path) -> None:
    if os.geteuid() != 0:
        return
    shutil.chown(root, "postgres", "postgres")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            shutil.chown(os.path.join(dirpath, name), "postgres", "postgres")


def _pg_ctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*as_server_user(), find_pg_bin("pg_ctl"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _table(r: DrillResult, rto: float) -> str:
    rows: list[tuple[str, str]] = [("backup", r.backup), ("target", r.target)]
    rows += [(f"step: {name}", f"{sec:.2f} s") for name, sec in r.steps.items()]
    rows.append(("epoch", f"{r.epoch_before} -> {r.epoch_after}"))
    src = r.source
    rest = r.restored
    rows.append(("restored last event", _event(rest)))
    rows.append(("source last event before cut", _event(src) if src else "unknown"))
    rows.append(("verify", "passed" if r.verified else "FAILED"))
    rows.append(("RTO", f"{rto:.2f} s"))
    if src is None or rest is None or r.missing is None:
        rows.append(("RPO", "unknown (source not reachable)"))
    else:
        window = 0.0
        if r.missing and src.ts is not None:
            base = rest.ts.timestamp() if rest.ts is not None else src.ts.timestamp()
            window = max(0.0, src.ts.timestamp() - base)
        rows.append(("RPO", f"{r.missing} events, {window:.3f} s"))
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)


def _event(e: LastEvent | None) -> str:
    if e is None:
        return "unknown"
    if e.ts is None:
        return "none (empty log)"
    return f"position {e.position:,} at {e.ts.astimezone(UTC).isoformat()}"


def run(
    settings: Settings,
    *,
    backup: str | None = None,
    target_time: datetime | None = None,
    wal_archive: Path | None = None,
    port: int | None = None,
    keep: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """0 when the restore recovered, rebuilt and verified; 1 otherwise."""
    out = out or sys.stdout
    err = err or sys.stderr
    started = time.perf_counter()
    cut = target_time or datetime.now(UTC)
    root = Path(tempfile.mkdtemp(prefix="atelier-drill-"))
    os.chmod(root, 0o755)
    data = root / "pgdata"
    result = DrillResult(
        backup="?",
        target=(
            target_time.isoformat()
            if target_time
            else ("latest archived WAL" if wal_archive else "end of the backup (no WAL archive)")
        ),
        port=port or free_port(),
        data_dir=data,
    )
    started_cluster = False
    status = 1
    try:
        chosen = _choose(settings, backup)
        result.backup = chosen.label
        if target_time is not None and wal_archive is None:
            raise DrillError("--target-time needs --wal-archive DIR (WAL to replay)")
        if target_time is not None and target_time < chosen.taken_at:
            raise DrillError(
                f"--target-time {target_time.isoformat()} is before backup {chosen.label}:"
                " choose an older backup with --backup"
            )
        if wal_archive is not None and not wal_archive.is_dir():
            raise DrillError(f"--wal-archive {wal_archive}: no such folder")
        try:
            result.source = asyncio.run(_source_last(settings.database_url, cut))
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            print(
                f"source {redact(settings.database_url)} not readable ({exc}): RPO unknown",
                file=err,
            )

        t = time.perf_counter()
        print(f"restore-drill: unpacking {chosen.label} into {data}", file=err, flush=True)
        _unpack(chosen, data)
        _configure(data, wal_archive.resolve() if wal_archive else None, target_time)
        _chown(root)
        result.steps["unpack"] = time.perf_counter() - t

        t = time.perf_counter()
        print(f"restore-drill: recovering on 127.0.0.1:{result.port}", file=err, flush=True)
        opts = f"-p {result.port} -k {root} -c listen_addresses=127.0.0.1"
        log = root / "server.log"
        proc = _pg_ctl("-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "600", "start")
        started_cluster = True
        if proc.returncode != 0:
            raise DrillError(f"the restored server did not start:\n{_log_tail(log)}")
        dsn = with_host_port(settings.database_url, "127.0.0.1", result.port)
        asyncio.run(_wait_promoted(dsn, 600, data, log))
        result.steps["recover"] = time.perf_counter() - t

        t = time.perf_counter()
        before, after, last = asyncio.run(_bump_epoch(dsn))
        result.epoch_before, result.epoch_after, result.restored = before, after, last
        if result.source is not None:
            result.missing = asyncio.run(_missing(settings.database_url, cut, last.position))
        result.steps["epoch"] = time.perf_counter() - t

        restored = dataclasses.replace(settings, database_url=dsn)
        t = time.perf_counter()
        print("restore-drill: rebuild --all", file=err, flush=True)
        if rebuild_op.run(restored, views=list(VIEWS), out=err, err=err) != 0:
            raise DrillError("rebuild --all failed on the restored store")
        result.steps["rebuild"] = time.perf_counter() - t

        t = time.perf_counter()
        print("restore-drill: verify", file=err, flush=True)
        result.verified = verify_op.run(restored, out=err, err=err) == 0
        result.steps["verify"] = time.perf_counter() - t
        status = 0 if result.verified else 1
    except (DrillError, OSError, tarfile.TarError, asyncpg.PostgresError) as exc:
        print(f"atelier: restore-drill failed: {exc}", file=err)
    finally:
        rto = time.perf_counter() - started
        if started_cluster and not keep:
            _pg_ctl("-D", str(data), "-m", "immediate", "-w", "stop", timeout=60)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    print(_table(result, rto), file=out)
    if keep and started_cluster:
        print(
            f"kept: {data} on 127.0.0.1:{result.port}; stop it with"
            f" pg_ctl -D {data} stop, then remove {root}",
            file=out,
        )
    return status
