"""``python -m app backup``: a base backup of the event store's cluster, with retention.

``pg_basebackup`` copies the whole cluster of ``DATABASE_URL`` into
``BACKUP_DIR/<UTC time>/`` as compressed tars (``base.tar.gz``, ``pg_wal.tar.gz``: the
WAL streamed during the copy, so the backup alone is consistent) with PostgreSQL's
``backup_manifest``, and ``atelier.json``: when, up to which LSN, which store
(``store_id``, ``epoch``) and log head it holds, its size. The WAL archive that
deploy/ configures carries the store from there to any later time (``restore-drill``).

Then retention: the newest backup of each of the last ``BACKUP_KEEP_DAILY`` days,
``BACKUP_KEEP_WEEKLY`` ISO weeks and ``BACKUP_KEEP_MONTHLY`` months is kept, every
other complete backup deleted (``select_kept``, a pure function).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO

import asyncpg

from app.config import Settings
from app.ops.migrate import redact
from app.ops.pgtools import find_pg_bin

__all__ = [
    "MANIFEST",
    "BackupError",
    "BackupInfo",
    "label_of",
    "list_backups",
    "prune_archive",
    "run",
    "select_kept",
    "time_of",
]

MANIFEST: Final = "atelier.json"
_LABEL_FORMAT: Final = "%Y%m%dT%H%M%SZ"


class BackupError(RuntimeError):
    """A backup that cannot be taken, with what to configure in its message."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    label: str
    path: Path
    taken_at: datetime
    manifest: dict[str, Any]


def label_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_LABEL_FORMAT)


def time_of(label: str) -> datetime:
    return datetime.strptime(label, _LABEL_FORMAT).replace(tzinfo=UTC)


def list_backups(root: Path) -> list[BackupInfo]:
    """The complete backups under ``root`` (those with a manifest), oldest first."""
    found: list[BackupInfo] = []
    if not root.is_dir():
        return found
    for path in root.iterdir():
        manifest = path / MANIFEST
        try:
            taken = time_of(path.name)
        except ValueError:
            continue  # not ours
        if not manifest.is_file():
            continue  # in progress, or failed: never counted, never deleted here
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        found.append(BackupInfo(path.name, path, taken, data))
    return sorted(found, key=lambda b: b.taken_at)


def _week(day: date) -> tuple[int, int]:
    iso = day.isocalendar()
    return (iso.year, iso.week)


def select_kept(
    backups: Iterable[datetime], now: datetime, daily: int, weekly: int, monthly: int
) -> set[datetime]:
    """The backups (by time) that retention keeps.

    A backup is kept when it is the newest of its UTC day and that day is one of the
    last ``daily`` days (today included); likewise by ISO week over the last ``weekly``
    weeks and by month over the last ``monthly`` months. The newest backup is always
    kept, and so is any backup dated after ``now`` (a clock that went back is no reason
    to delete anything).
    """
    times = sorted({t.astimezone(UTC) for t in backups})
    now = now.astimezone(UTC)
    kept: set[datetime] = {t for t in times if t > now}
    past = [t for t in times if t <= now]
    if past:
        kept.add(past[-1])
    today = now.date()
    days = {today - timedelta(days=i) for i in range(daily)}
    weeks = {_week(today - timedelta(weeks=i)) for i in range(weekly)}
    months: set[tuple[int, int]] = set()
    year, month = today.year, today.month
    for _ in range(monthly):
        months.add((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    newest_day: dict[date, datetime] = {}
    newest_week: dict[tuple[int, int], datetime] = {}
    newest_month: dict[tuple[int, int], datetime] = {}
    for t in past:  # ascending: the last one written wins
        newest_day[t.date()] = t
        newest_week[_week(t.date())] = t
        newest_month[(t.year, t.month)] = t
    kept.update(t for d, t in newest_day.items() if d in days)
    kept.update(t for w, t in newest_week.items() if w in weeks)
    kept.update(t for m, t in newest_month.items() if m in months)
    return kept


async def _store_facts(dsn: str) -> dict[str, Any]:
    """What the backup is of, and whether the server can give one at all."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        wal_level = await conn.fetchval("SHOW wal_level")
        if wal_level == "minimal":
            raise BackupError(
                "the server runs with wal_level = minimal: set wal_level = replica (and"
                " max_wal_senders > 0, archive_mode = on with an archive_command for"
                " point-in-time recovery; deploy/compose.yaml shows them) and restart it"
            )
        senders = int(await conn.fetchval("SHOW max_wal_senders"))
        if senders < 1:
            raise BackupError("max_wal_senders is 0: set it to at least 2 and restart")
        may = await conn.fetchval(
            "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        if not may:
            raise BackupError(
                "the DATABASE_URL role has no REPLICATION permission: ALTER ROLE <role>"
                " REPLICATION (and a `host replication <role> ...` line in pg_hba.conf)"
            )
        meta = await conn.fetchrow("SELECT store_id::text AS store_id, epoch FROM store_meta")
        head = await conn.fetchval("SELECT last_position FROM log_head")
        last_ts = await conn.fetchval("SELECT max(ts) FROM events")
        version = await conn.fetchval("SHOW server_version")
    except asyncpg.UndefinedTableError:
        raise BackupError(
            "no event store in this database (store_meta is missing): run"
            " `python -m app migrate` first, or point DATABASE_URL at the store"
        ) from None
    finally:
        await conn.close()
    return {
        "store_id": meta["store_id"] if meta else None,
        "epoch": meta["epoch"] if meta else None,
        "log_head": int(head or 0),
        "last_event_ts": last_ts.isoformat() if last_ts else None,
        "server_version": version,
    }


def _explain(stderr: str) -> str:
    hints = []
    if "pg_hba.conf" in stderr and "replication" in stderr:
        hints.append("allow replication connections: a `host replication <role> ...` line")
    if "number of requested standby connections exceeds" in stderr:
        hints.append("raise max_wal_senders")
    if "must be superuser or replication role" in stderr or "permission denied" in stderr:
        hints.append("ALTER ROLE <role> REPLICATION")
    if "incompatible server version" in stderr:
        hints.append("use the pg_basebackup of the server's major version (PATH order)")
    return stderr.strip() + ("" if not hints else "\nto fix: " + "; ".join(hints))


def _end_lsn(path: Path) -> str | None:
    try:
        manifest = json.loads((path / "backup_manifest").read_text())
        ranges = manifest.get("WAL-Ranges") or []
        return str(ranges[-1]["End-LSN"]) if ranges else None
    except (OSError, ValueError, KeyError):
        return None


def _start_wal(path: Path) -> str | None:
    """The first WAL segment the backup needs (its ``backup_label``'s START WAL)."""
    try:
        with tarfile.open(path / "base.tar.gz") as tar:
            member = tar.extractfile("backup_label")
            text = member.read().decode() if member else ""
    except (OSError, KeyError, tarfile.TarError):
        return None
    for line in text.splitlines():
        if line.startswith("START WAL LOCATION:") and "(file " in line:
            return line.split("(file ", 1)[1].rstrip(")").strip()
    return None


def take(settings: Settings, *, err: TextIO, now: datetime | None = None) -> BackupInfo:
    """One base backup of ``settings.database_url``'s cluster; raises ``BackupError``."""
    dsn = settings.database_url
    started = now or datetime.now(UTC)
    try:
        facts = asyncio.run(_store_facts(dsn))
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise BackupError(
            f"cannot reach the server at {redact(dsn)} (DATABASE_URL): {exc}"
        ) from exc
    root = settings.backup_dir
    root.mkdir(parents=True, exist_ok=True)
    label = label_of(started)
    path = root / label
    if path.exists():
        raise BackupError(f"{path} exists already (two backups in the same second?)")
    command = [
        find_pg_bin("pg_basebackup"),
        "-d",
        dsn,
        "-D",
        str(path),
        "-Ft",
        "-z",
        "-Xs",
        "-c",
        "fast",
        "-P",
        "-l",
        f"atelier {label}",
    ]
    print(f"backup {label}: pg_basebackup of {redact(dsn)} into {path}", file=err, flush=True)
    clock = time.perf_counter()
    # stdout/stderr of pg_basebackup: its progress (-P) goes to our stderr as it runs.
    proc = subprocess.run(command, stdout=err, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(path, ignore_errors=True)
        raise BackupError(
            f"pg_basebackup failed (exit {proc.returncode}):\n{_explain(proc.stderr)}"
        )
    if proc.stderr:
        err.write(proc.stderr)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    manifest: dict[str, Any] = {
        "label": label,
        "start_time": started.isoformat(),
        "end_time": datetime.now(UTC).isoformat(),
        "seconds": round(time.perf_counter() - clock, 3),
        "start_wal": _start_wal(path),
        "end_lsn": _end_lsn(path),
        "size_bytes": size,
        "format": "tar.gz + streamed WAL (pg_basebackup -Ft -z -Xs)",
        **facts,
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return BackupInfo(label, path, started, manifest)


def prune(settings: Settings, *, now: datetime, out: TextIO) -> list[str]:
    """Delete the complete backups that retention does not keep; their labels."""
    backups = list_backups(settings.backup_dir)
    kept = select_kept(
        (b.taken_at for b in backups),
        now,
        settings.backup_keep_daily,
        settings.backup_keep_weekly,
        settings.backup_keep_monthly,
    )
    deleted = []
    for b in backups:
        if b.taken_at not in kept:
            shutil.rmtree(b.path)
            deleted.append(b.label)
            print(f"retention: deleted {b.label}", file=out)
    return deleted


def prune_archive(archive: Path, kept: list[BackupInfo], *, out: TextIO) -> str | None:
    """Remove the archived WAL that no kept backup needs (``pg_archivecleanup`` up to the
    oldest kept backup's first segment); that segment, or None when nothing was safe."""
    starts = [b.manifest.get("start_wal") for b in kept]
    if not kept or any(not s for s in starts):
        print("wal archive: not pruned (a kept backup has no start_wal in its manifest)", file=out)
        return None
    # pg_archivecleanup compares segment names without their timeline (the first 8).
    oldest = min((str(s) for s in starts), key=lambda name: name[8:])
    before = sum(1 for _ in archive.iterdir())
    proc = subprocess.run(
        [find_pg_bin("pg_archivecleanup"), str(archive), oldest],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BackupError(f"pg_archivecleanup failed: {proc.stderr.strip()}")
    removed = before - sum(1 for _ in archive.iterdir())
    print(f"wal archive: {removed} file(s) before {oldest} removed from {archive}", file=out)
    return oldest


def run(
    settings: Settings,
    *,
    wal_archive: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """0 when the backup was taken (and retention applied), 1 otherwise.

    With ``wal_archive``, the archived WAL older than the oldest kept backup is removed.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        info = take(settings, err=err)
    except (BackupError, FileNotFoundError) as exc:
        print(f"atelier: backup failed: {exc}", file=err)
        return 1
    m = info.manifest
    print(
        f"backup {info.label}: {m['size_bytes'] / 1e6:,.1f} MB in {m['seconds']:.1f} s;"
        f" end LSN {m['end_lsn']}; store {m['store_id']} epoch {m['epoch']};"
        f" log head {m['log_head']:,}; {info.path}",
        file=out,
    )
    prune(settings, now=datetime.now(UTC), out=out)
    kept = list_backups(settings.backup_dir)
    print(f"retention: {len(kept)} backup(s) kept in {settings.backup_dir}", file=out)
    if wal_archive is not None:
        try:
            prune_archive(wal_archive, kept, out=out)
        except (BackupError, OSError) as exc:
            print(f"atelier: the backup was taken, the WAL archive not pruned: {exc}", file=err)
            return 1
    return 0
