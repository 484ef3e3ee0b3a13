"""``python -m app rebuild VIEW... | --all``: blue-green rebuild of views from the events.

The work is ``app.views.rebuild``'s; this runner owns what an operator sees: progress
bars with their rates on stderr (tqdm), and on stdout what changed and how fast. The
same progress is counted in ``atelier_rebuild_*`` metrics, served while the rebuild
runs at ``METRICS_HOST:PORT/metrics`` when ``--metrics-port PORT`` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import Final, TextIO

import asyncpg
from prometheus_client import Counter
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs shipped

from app.config import Settings
from app.errors import AppError
from app.observability import metrics
from app.observability.exporter import exporting
from app.ops.migrate import redact
from app.store.pool import create_pool
from app.views.rebuild import Bar, Bars, RebuildError, Summary, rebuild
from app.views.schema import VIEWS, View

__all__ = ["run"]

# A rebuild reads for as long as the fold takes; its statements are long by nature.
_SETTINGS: Final = {
    "application_name": "atelier-rebuild",
    "statement_timeout": "0",
    # It reads whole tables: the server's planner settings, not the servers' (pool.py).
    "enable_seqscan": None,
    "jit": None,
}


class _Counted:
    """A bar whose updates are also counted in a metric."""

    def __init__(self, bar: Bar, counter: Counter) -> None:
        self._bar = bar
        self._counter = counter

    def update(self, n: int = 1) -> None:
        self._bar.update(n)
        self._counter.inc(n)

    def close(self) -> None:
        self._bar.close()


def _bars(err: TextIO) -> Bars:
    position = 0

    def _bar(desc: str, total: int | None, unit: str) -> Bar:
        nonlocal position
        bar: Bar = tqdm(
            desc=desc,
            total=total,
            unit=unit,
            unit_scale=True,
            file=err,
            position=position,
            leave=True,
            mininterval=0.5,
            dynamic_ncols=True,
        )
        position += 1
        return bar

    def make(desc: str, total: int | None, unit: str) -> Bar:
        bar = _bar(desc, total, unit)
        if desc == "fold":
            metrics.rebuild_fold_events.set(total or 0)
            return _Counted(bar, metrics.rebuild_folded_events_total)
        if desc == "load":
            return _Counted(bar, metrics.rebuild_loaded_rows_total)
        return bar

    return make


async def _rebuild(
    dsn: str, names: list[View], keep_old: bool, err: TextIO, lock_timeout: float
) -> Summary:
    pool = await create_pool(dsn, len(names) + 2, min_size=1, server_settings=_SETTINGS)
    try:
        return await rebuild(
            pool,
            names,
            keep_old=keep_old,
            bars=_bars(err),
            lock_timeout=lock_timeout,
        )
    finally:
        await pool.close()


def run(
    settings: Settings,
    *,
    views: Sequence[str],
    keep_old: bool = False,
    lock_timeout: float = 2.0,
    metrics_port: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Rebuild ``views`` (names of ``VIEWS``) with one fold; 0 when every one switched.
    ``metrics_port``: serve the progress metrics there while it runs (None: no listener)."""
    out = out or sys.stdout
    err = err or sys.stderr
    unknown = [name for name in views if name not in VIEWS]
    if unknown or not views:
        print(
            f"atelier: rebuild what? views are {', '.join(VIEWS)} (or --all); got {unknown}",
            file=err,
        )
        return 2
    names: list[View] = [name for name in VIEWS if name in views]
    listener = (
        contextlib.nullcontext()
        if metrics_port is None
        else exporting(settings.metrics_host, metrics_port, process="rebuild")
    )
    try:
        with listener:
            summary = asyncio.run(
                _rebuild(settings.database_url, names, keep_old, err, lock_timeout)
            )
    except RebuildError as exc:
        print(f"atelier: rebuild failed, nothing serving changed: {exc}", file=err)
        return 1
    except (OSError, TimeoutError, AppError, asyncpg.PostgresError) as exc:
        print(
            f"atelier: rebuild failed at {redact(settings.database_url)} (DATABASE_URL): {exc}",
            file=err,
        )
        return 1
    for r in summary.views:
        old = f"g{r.old} dropped" if r.dropped else f"g{r.old} kept"
        print(
            f"rebuilt {r.view}: g{r.new} serves ({r.rows:,} rows), {old};"
            f" tail {r.tail:,} events, {r.locked_tail:,} of them under the lock",
            file=out,
        )
    rate = summary.events / summary.fold_seconds if summary.fold_seconds > 0 else 0.0
    print(
        f"folded {summary.events:,} events of {summary.documents:,} documents in"
        f" {summary.fold_seconds:.1f} s ({rate:,.0f} events/s); views locked"
        f" {summary.switch_seconds * 1000:.0f} ms; {summary.seconds:.1f} s in all",
        file=out,
    )
    return 0
