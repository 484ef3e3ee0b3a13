"""A short chaos run: `python -m app chaos` for 45 s with every fault kind once (a fixed
seed), its own PostgreSQL, Redis and app processes; every check must pass."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.chaos.faults import KINDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_short_chaos_run_passes_every_check(tmp_path: Path) -> None:
    report = tmp_path / "chaos.json"
    argv = [
        sys.executable, "-m", "app", "chaos", "--duration", "45", "--seed", "11",
        "--every", "5", "--editors", "4", "--viewers", "2", "--reconnecting", "2",
        "--docs", "2", "--json", str(report),
    ]  # fmt: skip
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    figures: dict[str, Any] = orjson.loads(report.read_bytes())
    assert figures["ok"] is True
    assert {kind: figures["faults"].get(kind, 0) >= 1 for kind in KINDS} == dict.fromkeys(
        KINDS, True
    ), said
    assert all(item["error"] is None for item in figures["injected"]), said
    assert figures["ops"]["acked"] > 0
    assert figures["lost"] == 0
    assert figures["duplicates"] == 0
    assert figures["not_converged"] == 0
    assert figures["delivery_faults"] == 0
    assert figures["ops"]["unanswered"] == 0
    assert figures["process_exits"] == {}
    assert "chaos: every check passed" in done.stdout
    folder = re.search(r"run folder (\S+)", done.stdout)
    assert folder is not None and not Path(folder[1]).exists()  # torn down


@pytest.mark.timeout(60)
def test_a_bad_fault_kind_is_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "chaos", "--faults", "cut-pg,kill-all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 2
    assert "unknown fault 'kill-all'" in done.stderr
