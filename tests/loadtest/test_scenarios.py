"""Short runs of every scenario through the command line, against a real deployment
(gateway, relay and read worker as processes): exit 0, zero lost or doubled deliveries,
a JSON result and an HTML report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.tokens import issue_token
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


def test_many_docs(deployment: Deployment, tmp_path: Path) -> None:
    outcome = run_loadtest(
        deployment.url, tmp_path, "many-docs", *COMMON, "--duration", "3",
        "--docs", "8", "--editors", "2", "--viewers", "2", "--rate", "2",
    )  # fmt: skip
    stats = passed(outcome)
    assert stats["documents"] == 8
    assert stats["ops_acked"] == stats["ops_sent"] > 60
    assert outcome.result is not None and outcome.result["correctness"]["sampled_states"] == 16


def test_join_storm(deployment: Deployment, tmp_path: Path) -> None:
    outcome = run_loadtest(
        deployment.url, tmp_path, "join-storm", *COMMON, "--duration", "1.5",
        "--clients", "40", "--elements", "300", "--bound", "10",
    )  # fmt: skip
    stats = passed(outcome)
    welcome = stats["welcome_after_start_ms"]
    assert isinstance(welcome, dict) and welcome["count"] == 40
    assert outcome.result is not None
    assert outcome.result["bounds"]["join_storm"]["met"] is True
    assert "join storm: 40 welcomed" in outcome.stdout


def test_presence(deployment: Deployment, tmp_path: Path) -> None:
    outcome = run_loadtest(
        deployment.url, tmp_path, "presence", *COMMON, "--duration", "2.5",
        "--clients", "12", "--hz", "5",
    )  # fmt: skip
    stats = passed(outcome)
    presence = stats["presence_ms"]
    # Each peer's first cursor after a welcome is its state on join, not timed; and the
    # server may coalesce: at least some moves are timed, and the check saw every last one.
    assert isinstance(presence, dict) and presence["count"] > 0
    assert "presence:" in outcome.stdout


def test_reconnect_with_a_token_list(deployment: Deployment, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    users = ["owner", *(f"tl{i}" for i in range(12))]
    tokens.write_text(
        "\n".join(issue_token(SECRET, u, name=None, ttl=600, now=time.time()) for u in users)
    )
    outcome = run_loadtest(
        deployment.url, tmp_path / "out", "reconnect", "--tokens", str(tokens),
        "--processes", "2", "--warmup", "0.5", "--drain", "8", "--duration", "3",
        "--editors", "3", "--viewers", "6", "--rate", "30", "--drop-every", "1",
    )  # fmt: skip
    stats = passed(outcome)
    assert stats["ops_acked"] == stats["ops_sent"] > 60
    assert outcome.result is not None
    assert stats["clients"] == 9
    assert isinstance(stats["resumes"], int) and stats["resumes"] >= 9  # each dropped twice


def test_soak(deployment: Deployment, tmp_path: Path) -> None:
    outcome = run_loadtest(
        deployment.url, tmp_path, "soak", *COMMON, "--duration", "3",
        "--docs", "4", "--editors", "2", "--viewers", "3", "--rate", "3", "--hz", "4",
        "--drop-every", "1.2",
    )  # fmt: skip
    stats = passed(outcome)
    assert stats["ops_acked"] == stats["ops_sent"] > 60
    assert isinstance(stats["resumes"], int) and stats["resumes"] >= 4
    presence = stats["presence_ms"]
    assert isinstance(presence, dict) and presence["count"] > 0


def test_max(deployment: Deployment, tmp_path: Path) -> None:
    outcome = run_loadtest(
        deployment.url, tmp_path, "max", *COMMON, "--duration", "1.5",
        "--docs", "3", "--rate", "30", "--factor", "2", "--steps", "2", "--bound-ms", "2000",
    )  # fmt: skip
    passed(outcome)
    assert outcome.result is not None
    steps = outcome.result["max"]["steps"]
    assert [s["rate"] for s in steps] == [30, 60] and all(s["ok"] for s in steps)
    assert outcome.result["max"]["best"]["rate"] == 60
    assert "durable ops/s" in outcome.stdout
