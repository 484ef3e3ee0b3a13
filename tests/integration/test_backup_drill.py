"""``backup`` and ``restore-drill`` end to end on a scratch cluster that archives its WAL.

One cluster per module: events written through the real CommandHandler, a base
backup taken by ``python -m app backup``, two batches written after it with a known
time between them, the WAL switched and archived; then the drill restores the backup
to the latest archived WAL (every acknowledged event is back) and to the time between
the batches (only the first batch is back), each time with the epoch bumped, the
views rebuilt and ``verify`` passed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.command import CommandHandler
from app.store.migrate import migrate
from app.store.pool import create_pool
from app.store.postgres import PostgresStore
from tests.support.pgcluster import ScratchCluster, find_pg_bin

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def rect(element: str) -> dict[str, Any]:
    return {
        "kind": "element.add",
        "element": element,
        "layer": "L1",
        "shape": "rect",
        "props": {"x": 0, "y": 0, "w": 10, "h": 10},
    }


@dataclass
class Source:
    cluster: ScratchCluster
    archive: Path
    backups: Path
    env: dict[str, str]
    before_backup: int  # events acknowledged before the backup
    first_batch_head: int  # log head after the first batch
    head: int  # log head after the second batch (everything acknowledged)
    cut: datetime  # a server time between the two batches


def app(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
        env=env,
    )


async def _write(handler: CommandHandler, prefix: str, n: int) -> None:
    for i in range(n):
        await handler.submit("d1", "alice", "owner", f"{prefix}-{i}", rect(f"{prefix}{i}"))
    await handler.submit("d2", "bob", "owner", f"{prefix}-x", rect(f"{prefix}x"))


async def _head(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        head: int = await conn.fetchval("SELECT last_position FROM log_head")
        return head
    finally:
        await conn.close()


async def _populate(source: ScratchCluster, backup: Any) -> tuple[int, int, int, datetime]:
    dsn = source.dsn
    await migrate(dsn)
    pool = await create_pool(dsn, 4)
    handler = CommandHandler(PostgresStore(pool))
    await handler.start()
    try:
        for doc, owner in (("d1", "alice"), ("d2", "bob")):
            await handler.create_document(doc, owner, f"Poster {doc}")
            await handler.submit(
                doc, owner, "owner", "L", {"kind": "layer.add", "layer": "L1", "name": "a"}
            )
        await _write(handler, "zero", 10)
        before_backup = await _head(dsn)
        await asyncio.to_thread(backup)
        await _write(handler, "a", 20)
        first = await _head(dsn)
        await asyncio.sleep(1.0)
        cut: datetime = await pool.fetchval("SELECT clock_timestamp()")
        await asyncio.sleep(1.0)
        await _write(handler, "b", 20)
        head = await _head(dsn)
        # Close the segment so the archiver ships it, and wait until it did.
        segment = await pool.fetchval("SELECT pg_walfile_name(pg_switch_wal())")
        for _ in range(200):
            done = await pool.fetchval(
                "SELECT last_archived_wal >= $1 FROM pg_stat_archiver", segment
            )
            if done:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"segment {segment} was not archived")
    finally:
        await handler.close()
        await pool.close()
    return before_backup, first, head, cut


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    root = Path(tempfile.mkdtemp(prefix="atelier-backup-"))
    os.chmod(root, 0o755)
    archive = root / "archive"
    archive.mkdir()
    if os.geteuid() == 0:
        shutil.chown(archive, "postgres", "postgres")
    cluster = ScratchCluster(
        root / "cluster",
        conf={
            "wal_level": "replica",
            "max_wal_senders": "4",
            "archive_mode": "on",
            "archive_command": f"test ! -f {archive}/%f && cp %p {archive}/%f",
        },
    ).init()
    cluster.start()
    env = {
        **os.environ,
        "APP_ENV": "prod",
        "APP_SECRET": "k" * 32,
        "DATABASE_URL": cluster.dsn,
        "BACKUP_DIR": str(root / "backups"),
    }

    def backup() -> None:
        result = app("backup", env=env)
        assert result.returncode == 0, result.stderr
        assert re.search(r"backup \d{8}T\d{6}Z: .* MB", result.stdout), result.stdout

    try:
        before, first, head, cut = asyncio.run(_populate(cluster, backup))
        yield Source(cluster, archive, root / "backups", env, before, first, head, cut)
    finally:
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _row(table: str, name: str) -> str:
    found = re.search(rf"^\| {re.escape(name)}\s*\| (.*) \|$", table, re.MULTILINE)
    assert found, f"no {name!r} row in:\n{table}"
    return found.group(1)


def _kept(out: str) -> tuple[Path, int]:
    found = re.search(r"^kept: (\S+) on 127\.0\.0\.1:(\d+);", out, re.MULTILINE)
    assert found, out
    return Path(found.group(1)), int(found.group(2))


def _stop(data: Path) -> None:
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_user, find_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    shutil.rmtree(data.parent, ignore_errors=True)


async def _restored(port: int) -> tuple[int, int, int, list[str]]:
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    try:
        epoch = await conn.fetchval("SELECT epoch FROM store_meta")
        count = await conn.fetchval("SELECT count(*) FROM events")
        head = await conn.fetchval("SELECT last_position FROM log_head")
        ops = [r["op_id"] for r in await conn.fetch("SELECT op_id FROM events WHERE op_id > ''")]
        stale = await conn.fetchval(
            "SELECT count(*) FROM read.checkpoints c, store_meta m WHERE c.epoch <> m.epoch"
        )
        assert stale == 0, "every checkpoint is at the new epoch after rebuild --all"
    finally:
        await conn.close()
    return epoch, count, head, ops


def test_the_manifest_describes_the_backup(source: Source) -> None:
    (backup,) = [p for p in source.backups.iterdir() if p.is_dir()]
    manifest = json.loads((backup / "atelier.json").read_text())
    assert manifest["label"] == backup.name
    assert manifest["epoch"] == 1 and manifest["store_id"]
    assert manifest["log_head"] == source.before_backup
    assert manifest["end_lsn"] and manifest["size_bytes"] > 1_000_000
    assert {"base.tar.gz", "pg_wal.tar.gz", "backup_manifest"} <= {p.name for p in backup.iterdir()}


def test_drill_to_the_latest_wal_holds_every_acknowledged_event(source: Source) -> None:
    started = time.perf_counter()
    result = app(
        "restore-drill", "--latest", "--wal-archive", str(source.archive), "--keep",
        env=source.env,
    )  # fmt: skip
    print(result.stdout)  # the drill's report, shown with pytest -s
    data, port = _kept(result.stdout)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        table = result.stdout
        assert _row(table, "verify") == "passed"
        assert _row(table, "epoch") == "1 -> 2"
        assert _row(table, "RPO").startswith("0 events, 0.000 s")
        assert _row(table, "restored last event").startswith(f"position {source.head} at")
        rto = float(_row(table, "RTO").removesuffix(" s"))
        assert 0 < rto < time.perf_counter() - started
        epoch, count, head, ops = asyncio.run(_restored(port))
        assert (epoch, count, head) == (2, source.head, source.head)
        assert {f"b-{i}" for i in range(20)} <= set(ops)
    finally:
        _stop(data)


def test_drill_to_a_time_between_two_batches_restores_only_the_first(source: Source) -> None:
    result = app(
        "restore-drill", "--target-time", source.cut.isoformat(),
        "--wal-archive", str(source.archive), "--keep",
        env=source.env,
    )  # fmt: skip
    print(result.stdout)  # the drill's report, shown with pytest -s
    data, port = _kept(result.stdout)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert _row(result.stdout, "verify") == "passed"
        assert _row(result.stdout, "RPO").startswith("0 events")  # nothing before the cut lost
        epoch, count, head, ops = asyncio.run(_restored(port))
        assert (epoch, count, head) == (2, source.first_batch_head, source.first_batch_head)
        assert {f"a-{i}" for i in range(20)} <= set(ops)
        assert not [op for op in ops if op.startswith("b-")]
    finally:
        _stop(data)


def test_drill_without_an_archive_restores_the_backup_and_reports_the_loss(
    source: Source,
) -> None:
    """The backup alone (its streamed WAL): consistent, the epoch bumped, verify
    passes, and RPO counts every event acknowledged after the backup as lost."""
    scratch = set(Path(tempfile.gettempdir()).glob("atelier-drill-*"))
    result = app("restore-drill", env=source.env)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _row(result.stdout, "verify") == "passed"
    assert _row(result.stdout, "epoch") == "1 -> 2"
    lost = source.head - source.before_backup
    assert re.match(rf"{lost} events, \d+\.\d{{3}} s$", _row(result.stdout, "RPO"))
    assert _row(result.stdout, "restored last event").startswith(
        f"position {source.before_backup} at"
    )
    assert set(Path(tempfile.gettempdir()).glob("atelier-drill-*")) == scratch  # removed


def test_a_target_beyond_the_archive_fails_fast_with_the_server_s_reason(
    source: Source,
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    started = time.monotonic()
    result = app(
        "restore-drill", "--target-time", later.isoformat(),
        "--wal-archive", str(source.archive),
        env=source.env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "recovery ended before configured recovery target was reached" in result.stderr
    assert _row(result.stdout, "verify") == "FAILED"
    assert time.monotonic() - started < 60


def test_a_backup_of_an_unreachable_server_says_so(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "APP_SECRET": "k" * 32,
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/atelier",
        "BACKUP_DIR": str(tmp_path),
    }
    result = app("backup", env=env)
    assert result.returncode == 1
    assert "cannot reach the server at postgresql://postgres@127.0.0.1:1/atelier" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_role_without_replication_is_told_what_to_grant(source: Source, tmp_path: Path) -> None:
    async def role() -> None:
        conn = await asyncpg.connect(source.cluster.dsn)
        try:
            await conn.execute("DROP ROLE IF EXISTS plain; CREATE ROLE plain LOGIN")
        finally:
            await conn.close()

    asyncio.run(role())
    dsn = source.cluster.dsn.replace("postgres@", "plain@")
    result = app("backup", env={**source.env, "DATABASE_URL": dsn, "BACKUP_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "no REPLICATION permission: ALTER ROLE <role> REPLICATION" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_drill_without_a_backup_says_where_it_looked(tmp_path: Path) -> None:
    env = {**os.environ, "APP_SECRET": "k" * 32, "BACKUP_DIR": str(tmp_path / "none")}
    result = app("restore-drill", env=env)
    assert result.returncode == 1
    assert f"no complete backup in {tmp_path / 'none'} (BACKUP_DIR)" in result.stderr


def test_a_second_backup_prunes_the_archive_up_to_the_oldest_kept(source: Source) -> None:
    """Last in the module: it replaces the backup and removes WAL the drills above used.

    Both backups are of the same day, so retention keeps the newer one only, and the
    archive loses every segment before that backup's first."""
    (first,) = [p.name for p in source.backups.iterdir()]
    time.sleep(1.0)  # labels are seconds
    result = app("backup", "--wal-archive", str(source.archive), env=source.env)
    assert result.returncode == 0, result.stderr
    assert f"retention: deleted {first}" in result.stdout
    (kept,) = list(source.backups.iterdir())
    start = json.loads((kept / "atelier.json").read_text())["start_wal"]
    assert re.fullmatch(r"[0-9A-F]{24}", start)
    found = re.search(rf"wal archive: (\d+) file\(s\) before {start} removed", result.stdout)
    assert found and int(found.group(1)) >= 1, result.stdout
    segments = [p.name for p in source.archive.iterdir() if re.fullmatch(r"[0-9A-F]{24}", p.name)]
    assert segments and min(name[8:] for name in segments) >= start[8:]
