"""The rebuild's progress as metrics: ``atelier_rebuild_fold_events`` (what the fold
reads in all), ``atelier_rebuild_folded_events_total`` and
``atelier_rebuild_loaded_rows_total``, served while it runs with ``--metrics-port``."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys

import orjson

from app.config import Settings
from app.observability.metrics import REGISTRY
from app.ops.rebuild import run
from app.store.postgres import PostgresStore
from app.views.schema import VIEWS
from app.views.writer import catch_up
from tests.integration.test_rebuild import ROOT, workload


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_the_rebuild_counts_what_it_folds_and_loads(
    store: PostgresStore, pg_clean: str
) -> None:
    await workload(store, docs=3, ops=60)
    await catch_up(store.pool)
    events = int(await store.pool.fetchval("SELECT count(*) FROM events"))
    assert events > 0
    folded = sample("atelier_rebuild_folded_events_total")
    loaded = sample("atelier_rebuild_loaded_rows_total")
    settings = Settings.from_env(
        {"APP_ENV": "prod", "APP_SECRET": "s" * 40, "DATABASE_URL": pg_clean}
    )
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(run, settings, views=list(VIEWS), out=out, err=err)
    assert code == 0, err.getvalue()
    assert sample("atelier_rebuild_fold_events") == events
    assert sample("atelier_rebuild_folded_events_total") - folded == events
    rows = 0
    for name in VIEWS:
        rows += int(await store.pool.fetchval(f"SELECT count(*) FROM read.{name}"))
    # No worker ran meanwhile: every row of the new tables came by COPY.
    assert sample("atelier_rebuild_loaded_rows_total") - loaded == rows


async def test_the_rebuild_command_serves_its_metrics_when_asked(
    store: PostgresStore, pg_clean: str
) -> None:
    await workload(store, docs=2, ops=20)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LANG": "C.UTF-8",
        "APP_ENV": "prod",
        "APP_SECRET": "s" * 40,
        "DATABASE_URL": pg_clean,
        "LOG_FORMAT": "json",
        "METRICS_HOST": "127.0.0.1",
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app", "rebuild", "--all", "--metrics-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = []
    for line in result.stderr.splitlines():
        try:
            lines.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # the progress bars
    listening = [r for r in lines if isinstance(r, dict) and r.get("event") == "metrics listening"]
    assert len(listening) == 1 and listening[0]["process"] == "rebuild", result.stderr
    assert listening[0]["url"].startswith("http://127.0.0.1:")
