"""What a commit costs after an idle pause, beside the same commit back to back.

    .venv/bin/python scripts/bench_idle_commit.py [--count N] [--gaps 0,1,5,20,50]
        [--fsync-dir DIR]

At low op rates (hot-doc at 20 ops/s: one commit every 50 ms) every commit comes after
the disk, PostgreSQL's backend and this process have been idle. On a virtual machine a
flush and a wake-up after such a pause can cost several times what they cost back to
back, which a closed-loop ceiling never shows. For each gap (ms slept between two
calls; 0 is back to back), N calls of each, on a throwaway database (migrated) and one
connection:

- ``SELECT 1``: a round trip to an idle backend, no disk;
- ``INSERT`` + ``COMMIT`` of one row: the raw commit of scripts/benchmark's ceilings;
- one op through ``PostgresStore.append`` (the ``atelier_append`` of the gateway's group
  commit, from a pool, as the gateway calls it);
- ``fdatasync`` of an 8 KiB write to a file in ``--fsync-dir`` (no PostgreSQL: the
  disk's own flush; default: PostgreSQL's data directory when this user can write
  there, else a temporary directory, which may sit on another disk).

Prints p50, p90 and p99 in ms. Traffic goes to the configured PostgreSQL only; the
database and the file are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import uvloop

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent))
sys.path.insert(0, str(SCRIPTS))

from bench_fanout import throwaway_database  # noqa: E402

from app.store.migrate import migrate  # noqa: E402
from app.store.pool import create_pool  # noqa: E402
from app.store.ports import AppendRequest, NewEvent  # noqa: E402
from app.store.postgres import PostgresStore  # noqa: E402

Call = Callable[[int], Awaitable[None]]


def pct(data: list[float], q: float) -> float:
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def timed(call: Call, count: int, gap_ms: float) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - started)
        if gap_ms:
            await asyncio.sleep(gap_ms / 1000)
    return out


def fsync_dir(asked: str | None, data_directory: str | None) -> Path:
    for candidate in (asked, data_directory):
        if candidate and os.access(candidate, os.W_OK):
            return Path(candidate)
    return Path(tempfile.gettempdir())


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="calls per gap and kind")
    parser.add_argument("--gaps", default="0,1,5,20,50", help="ms between calls")
    parser.add_argument("--fsync-dir", default=None)
    args = parser.parse_args()
    gaps = [float(g) for g in args.gaps.split(",")]
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/atelier")
    db = f"atelier_bench_idle_{uuid.uuid4().hex[:8]}"
    dsn = f"{admin.rsplit('/', 1)[0]}/{db}"
    await throwaway_database(admin, "create", db)
    conn = pool = None
    fd = -1
    path: Path | None = None
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        pool = await create_pool(dsn, 2)
        store = PostgresStore(pool)
        await conn.execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, x int)")
        await conn.fetchrow(
            "SELECT * FROM atelier_create_document($1, $2, $3, $4, $5, $6, $7::bytea, $8::bytea)",
            "d1", "bench", "u", "u", None, "doc.create", b"{}", b"{}",
        )  # fmt: skip
        data_directory = None
        with contextlib.suppress(asyncpg.PostgresError):  # not a superuser: a temp dir
            data_directory = await conn.fetchval("SHOW data_directory")
        where = fsync_dir(args.fsync_dir, data_directory)
        path = where / f".bench_idle_commit_{uuid.uuid4().hex[:8]}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        version = [1]

        async def select_1(i: int) -> None:
            await conn.fetchval("SELECT 1")

        async def insert(i: int) -> None:
            await conn.execute("INSERT INTO bench_raw (x) VALUES ($1)", i)

        async def append(i: int) -> None:
            event = NewEvent("u", f"op-{version[0]}", "doc.rename", b'{"title":"t"}', b"{}")
            (result,) = await store.append([AppendRequest("d1", version[0], event)])
            assert result.status == "ok", result
            version[0] += 1

        block = b"x" * 8192

        async def flush(i: int) -> None:
            os.pwrite(fd, block, (i % 64) * 8192)
            os.fdatasync(fd)

        kinds: list[tuple[str, Call]] = [
            ("SELECT 1", select_1),
            ("INSERT + COMMIT", insert),
            ("append (1 op)", append),
            (f"fdatasync ({where})", flush),
        ]
        print(f"{args.count} calls per row; p50 / p90 / p99 in ms", flush=True)
        print(f"| gap | {' | '.join(name for name, _ in kinds)} |")
        print("|---|" + "---|" * len(kinds))
        for gap in gaps:
            cells = []
            for _, call in kinds:
                data = await timed(call, args.count, gap)
                cells.append(f"{pct(data, 0.5):.2f} / {pct(data, 0.9):.2f} / {pct(data, 0.99):.2f}")
            label = "back to back" if not gap else f"{gap:g} ms"
            print(f"| {label} | {' | '.join(cells)} |", flush=True)
    finally:
        if fd >= 0:
            os.close(fd)
        if path is not None:
            path.unlink(missing_ok=True)
        if conn is not None:
            await conn.close()
        if pool is not None:
            await pool.close()
        await throwaway_database(admin, "drop", db)
    return 0


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
