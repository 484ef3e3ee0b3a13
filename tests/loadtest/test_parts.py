"""The harness's pure parts: the histogram, the fold, the check, the report."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.loadtest.client import fold, make_op
from app.loadtest.hist import Histogram, bucket_high, bucket_of
from app.loadtest.report import html
from app.loadtest.runner import check
from tests.loadtest.conftest import ROOT


def test_buckets_hold_their_values_within_one_percent() -> None:
    for value in [*range(0, 600), 1000, 12_345, 999_999, 3_600_000_000]:
        index = bucket_of(value)
        assert value <= bucket_high(index) <= value * 1.008 + 1
        assert index == 0 or bucket_high(index - 1) < value


def test_percentiles_and_merge_match_a_sorted_list() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(8, 1.5)) for _ in range(20_000)]
    halves = Histogram(), Histogram()
    for i, v in enumerate(values):
        halves[i % 2].record(v)
    merged = Histogram.from_json(halves[0].to_json()).merge(halves[1])
    ordered = sorted(values)
    assert merged.count == len(values) and merged.max == ordered[-1]
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = ordered[int(q * len(ordered) + 0.999999) - 1]
        assert exact <= merged.percentile(q) <= exact * 1.008 + 1


def test_fold_follows_adds_updates_and_batches() -> None:
    elements: dict[str, dict[str, Any]] = {"r1": {"x": 0, "y": 0, "w": 4}}
    for n in range(1, 21):
        assert fold(elements, make_op(1, "r1", n))
    assert fold(elements, {"kind": "batch", "ops": [{"kind": "element.remove", "element": "a1x9"}]})
    assert set(elements) == {"r1", "a1x19"}
    assert elements["r1"]["x"] == (20 * 7) % 800 + 0.5
    assert not fold(elements, {"kind": "layer.remove", "layer": "L"})


def client(**over: Any) -> dict[str, Any]:
    base = {"cid": 1, "doc": "d", "role": "viewer", "connected": True, "first_v": 3,
            "last_v": 10, "events": 7, "lost": 0, "dup": 0, "ooo": 0, "resumes": 0,
            "skipped": 0, "welcome_elements": 1, "unanswered": 0, "elements": None,
            "peers": None}  # fmt: skip
    return {**base, **over}


def test_the_check_names_each_kind_of_failure() -> None:
    server = {"d": {"v": 10, "state": {"layers": [{"elements": [{"id": "e", "props": {"x": 1}}]}]}}}
    ok = check(
        [client(), client(cid=2, elements={"e": {"x": 1.0}})], {"d": 10}, server, {}, static=False
    )
    assert ok["ok"] and ok["sampled_states"] == 1
    bad = check(
        [
            client(lost=1, events=6),
            client(cid=2, last_v=9, events=6),
            client(cid=3, elements={"e": {"x": 2}}),
            client(cid=4, peers={"5": 3}),
            client(cid=5, peers={"4": 4}),
        ],
        {"d": 10},
        server,
        {4: 4, 5: 4},
        static=False,
    )
    assert not bad["ok"]
    assert bad["problems"] == {"lost": 1, "count": 1, "short": 1, "state": 1, "presence": 1}


def test_the_report_is_one_page_without_scripts() -> None:
    summary = Histogram().summary()
    result = {
        "scenario": "hot-doc", "started_at": "now", "bounds": {},
        "config": {"url": "u", "knobs": {}, "duration_s": 1, "warmup_s": 0, "processes": 1},
        "machine": {}, "correctness": {"ok": True, "problems": {}, "failures": []},
        "stats": {"clients": 1, "documents": 1, "ops_sent": 1, "ops_acked": 1, "ops_per_s": 1,
                  "deliveries": 1, "deliveries_per_s": 1, "errors": {},
                  **{k: summary for k in ("latency_ms", "ack_ms", "presence_ms", "connect_ms",
                                          "join_ms", "welcome_after_start_ms")}},
        "series": [{"t": 0, "ops": 1, "acks": 1, "deliveries": 1, "p50": 1, "p90": 1, "p99": 2,
                    "max": 3, "presence": 0, "presence_p50": 0, "presence_p99": 0,
                    "presence_max": 0}],
        "histogram_ms": [[1.0, 1]], "presence_histogram_ms": [], "welcome_histogram_ms": [],
        "server": {"series": [{"t": 1, "cpu": {"9": 50.0}, "rss_kib": {"9": 2048}}]},
    }  # fmt: skip
    page = html(result)
    assert page.count("<svg") == 6 and "<script" not in page and "passed" in page


def test_exit_statuses_without_a_run(tmp_path: Path) -> None:
    def status(*args: str) -> int:
        argv = [sys.executable, "-m", "app", "loadtest", *args, "--out", str(tmp_path)]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=30).returncode

    assert status("presence", "--secret", "s", "--hz", "0") == 2  # a bad knob
    assert status("hot-doc", "--secret", "s", "--url", "http://127.0.0.1:9") == 3  # no server
    assert not list(tmp_path.iterdir())
