"""``scripts/benchmark.py --quick``: a smoke test of the standard set's script on tiny
sizes. It starts its own server processes on a throwaway database of the session's
PostgreSQL server and a Redis prefix of its own, measures the ceilings, runs one hot-doc
row (the harness, then the bare websockets floor) and the idle-connection row, prints the
table and exits 0 when every correctness check passed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.loadtest.conftest import ROOT


def test_benchmark_quick_run(pg_dsn: str, redis_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": pg_dsn, "REDIS_URL": redis_url}
    argv = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick"]
    argv += ["--seconds", "2", "--only", "hot-500x20,idle", "--out", str(tmp_path)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=55)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "| hot-doc, 500 viewers + 10 editors, 20 ops/s (quick:" in out
    assert "the floor's p99" in out  # the floor ran and the ratio was computed
    assert "| 5,000 idle connections on one gateway process (quick:" in out
    assert "| any scenario | zero lost, duplicated or out-of-order deliveries" in out
    assert "PostgreSQL single-row `INSERT` + `COMMIT`" in out
    assert "paced at 20 commits/s" in out  # the commit after an idle pause
    assert "Redis `XADD` from 16 tasks" in out
    # the harness's own result was kept under --out, with its correctness check passed
    results = list((tmp_path / "hot-500x20").glob("loadtest-hot-doc-*.json"))
    assert len(results) == 1
    result = orjson.loads(results[0].read_bytes())
    assert result["correctness"]["ok"]
    assert result["server"]["summary"], "the server pids were sampled"
    assert results[0].with_suffix(".html").exists()
