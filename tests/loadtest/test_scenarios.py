"""Short runs of every scenario through the command line, against a real deployment
(gateway, relay and read worker as processes): exit 0, zero lost or doubled deliveries,
a JSON result and an HTML report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.loadtest.conftest import SECRET, Deployment, Outcome, run_loadtest

pytestmark = pytest.mark.slow

COMMON = ("--secret", SECRET, "--processes", "2", "--warmup", "0.5", "--drain", "8")


def passed(outcome: Outcome) -> dict[str, object]:
    assert outcome.status == 0, outcome.stdout + outcome.stderr
    result = outcome.result
    assert result is not None, outcome.stderr
    correctness = result["correctness"]
    assert correctness["ok"], correctness
    assert correctness["lost"] == correctness["duplicated"] == correctness["out_of_order"] == 0
    assert outcome.html is not None and "<svg" in outcome.html.read_text()
    assert "correctness: OK" in outcome.stdout
    assert "[" in outcome.stderr and "p99" in outcome.stderr  # the progress lines
    stats: dict[str, object] = result["stats"]
    return stats


def test_hot_doc(deployment: Deployment, tmp_path: Path) -> None:
    pids = ",".join(str(p) for p in deployment.pids)
    outcome = run_loadtest(
        deployment.url,
        tmp_path,
        "hot-doc",
        *COMMON,
        "--duration",
        "3",
        "--viewers",
        "30",
        "--editors",
        "3",
        "--rate",
        "20",
        "--server-pids",
        pids,
    )
    stats = passed(outcome)
    assert stats["ops_acked"] == stats["ops_sent"] > 40
    assert stats["deliveries"] > 0
    assert outcome.result is not None
    assert outcome.result["correctness"]["sampled_states"] >= 2
    assert outcome.result["server"]["series"]
