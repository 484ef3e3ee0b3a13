"""``python -m app verify [--doc ID]``: replay every stream and check I2, I5 and I6.

The checks are ``app.views.verify``'s; this runner prints the report (one line per
check, OK or its differences) on stdout and a progress bar over documents on stderr,
and exits 1 when anything differs, so a script or a restore drill can stop on it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Final, TextIO

import asyncpg
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs shipped

from app.config import Settings
from app.errors import AppError
from app.ops.migrate import redact
from app.store.pool import create_pool
from app.views.rebuild import Bar, Bars
from app.views.verify import Report, verify

__all__ = ["run"]

# One long read-only transaction: no statement limit, and time to fold between reads.
_SETTINGS: Final = {
    "application_name": "atelier-verify",
    "statement_timeout": "0",
    "idle_in_transaction_session_timeout": "600s",
    # It reads whole tables: the server's planner settings, not the servers' (pool.py).
    "enable_seqscan": None,
    "jit": None,
}


def _bars(err: TextIO) -> Bars:
    def make(desc: str, total: int | None, unit: str) -> Bar:
        bar: Bar = tqdm(
            desc=desc, total=total, unit=unit, file=err, mininterval=0.5, dynamic_ncols=True
        )
        return bar

    return make


async def _verify(
    dsn: str, doc: str | None, max_diffs: int, undo_depth: int, err: TextIO
) -> Report:
    pool = await create_pool(dsn, 1, min_size=1, server_settings=_SETTINGS)
    try:
        return await verify(pool, doc=doc, limit=max_diffs, undo_depth=undo_depth, bars=_bars(err))
    finally:
        await pool.close()


def run(
    settings: Settings,
    *,
    doc: str | None = None,
    max_diffs: int = 10,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """0 when every check passes, 1 on any difference or when the store cannot be read."""
    out = out or sys.stdout
    err = err or sys.stderr
    started = time.perf_counter()
    try:
        report = asyncio.run(
            _verify(settings.database_url, doc, max(1, max_diffs), settings.undo_depth, err)
        )
    except (OSError, TimeoutError, AppError, asyncpg.PostgresError) as exc:
        print(
            f"atelier: cannot verify the store at {redact(settings.database_url)}"
            f" (DATABASE_URL): {exc}",
            file=err,
        )
        return 1
    for line in report.lines():
        print(line, file=out)
    print(f"({time.perf_counter() - started:.1f} s)", file=out)
    return 0 if report.ok else 1
