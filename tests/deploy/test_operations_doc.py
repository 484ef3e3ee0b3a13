"""docs/operations.md stays true to the code: every metric it names is one the
processes' registry exposes, every ``python -m app`` command it names exists, and
every log event its table lists is one the code logs."""

from __future__ import annotations

import re
from pathlib import Path

from app.cli import _parser
from app.observability.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text()

_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", ""),
    "summary": ("", "_sum", "_count"),
}


def test_every_metric_named_is_exposed() -> None:
    exposed = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in _SUFFIXES.get(family.type, ("",))
    }
    named = set(re.findall(r"\b(?:atelier|process)_\w+", DOC))
    assert named, "the doc names no metric"
    unknown = sorted(named - exposed)
    assert not unknown, f"docs/operations.md names metrics no process exposes: {unknown}"


def test_every_command_named_exists() -> None:
    commands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    named = set(re.findall(r"python -m app ([a-z][\w-]*)", DOC))
    assert {"rebuild", "verify", "serve"} <= named
    unknown = sorted(named - commands)
    assert not unknown, f"docs/operations.md names commands the CLI lacks: {unknown}"


def test_every_log_event_in_the_table_is_logged() -> None:
    table = DOC.split("### What one op and one connection leave in the logs", 1)[1]
    table = table.split("### Tracing one op", 1)[0]
    events = re.findall(r"^\| `([^`]+)` \| (?:debug|info|warning|error) \|", table, re.M)
    assert len(events) >= 9, events
    code = "\n".join(p.read_text() for p in (ROOT / "app").rglob("*.py"))
    missing = [e for e in events if f'"{e}"' not in code]
    assert not missing, f"logged nowhere in app/: {missing}"
