"""``python -m app loadtest`` and the ``atelier-loadtest`` script: the command line.

Light on imports: ``app.cli`` builds its parser from ``add_arguments`` for every
command, and the harness itself is imported only when a load test runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULTS", "add_arguments", "main", "run"]

SCENARIOS = ("hot-doc", "many-docs", "join-storm", "presence", "reconnect", "soak", "max")

# Each scenario's knobs and their defaults (the issue's standard set).
DEFAULTS: dict[str, dict[str, Any]] = {
    "hot-doc": {"viewers": 500, "editors": 10, "rate": 20.0},
    "many-docs": {"docs": 200, "editors": 2, "viewers": 3, "rate": 1.0},
    "join-storm": {"clients": 500, "elements": 5000},
    "presence": {"clients": 50, "hz": 10.0},
    "reconnect": {"viewers": 20, "editors": 5, "rate": 20.0, "drop_every": 2.0},
    "soak": {"docs": 20, "editors": 2, "viewers": 5, "rate": 1.0, "hz": 2.0, "drop_every": 30.0},
    "max": {
        "docs": 10,
        "editors": 1,
        "viewers": 0,
        "rate": 500.0,
        "factor": 1.5,
        "bound_ms": 50.0,
        "steps": 8,
        "refine": 2,
    },
}

KNOB_HELP = {
    "viewers": "viewers (per document in many-docs)",
    "editors": "editors (per document in many-docs)",
    "rate": "ops/s: in total (hot-doc, reconnect; max: the first step) or per editor "
    "(many-docs, soak)",
    "docs": "documents (many-docs)",
    "clients": "clients (join-storm, presence)",
    "elements": "elements of the document (join-storm)",
    "hz": "cursor moves a second per client (presence)",
    "drop_every": "seconds between a client's drops and resumes (reconnect, soak)",
    "factor": "max: each step's rate is the last one's times this",
    "bound_ms": "max: the p99 (ack and delivery) a step must keep",
    "steps": "max: at most this many steps",
    "refine": "max: then narrow the rate between the last step kept and the first missed "
    "this many times (0: no)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", choices=SCENARIOS, help="what to run")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the deployment's base URL")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--secret", help="the server's APP_SECRET: the harness mints its tokens")
    who.add_argument(
        "--tokens",
        type=Path,
        metavar="FILE",
        help="tokens, one a line; the first is the owner of the documents the run creates",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="client processes (one event loop each; default min(4, cores))",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (10)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="first seconds not counted in latencies (1)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("loadtest-results"), help="where the JSON and HTML go"
    )
    parser.add_argument(
        "--server-pids",
        default="",
        metavar="PID,...",
        help="server processes on this machine to sample (CPU, RSS) from /proc",
    )
    for knob, text in KNOB_HELP.items():
        kind = (
            int
            if knob in ("viewers", "editors", "docs", "clients", "elements", "steps", "refine")
            else float
        )
        parser.add_argument(f"--{knob.replace('_', '-')}", type=kind, help=text)
    parser.add_argument(
        "--bound", type=float, default=2.0, help="join-storm: every welcome within S s (2)"
    )
    parser.add_argument(
        "--drain", type=float, default=10.0, help="seconds to wait for acks and deliveries (10)"
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=30.0, help="seconds per connection (30)"
    )
    parser.add_argument(
        "--open-concurrency",
        type=int,
        default=50,
        help="handshakes in flight per process while connecting (50)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random phases of the schedule")


def knobs_of(args: argparse.Namespace) -> dict[str, Any]:
    knobs = dict(DEFAULTS[args.scenario])
    for knob in knobs:
        given = getattr(args, knob, None)
        if given is not None:
            knobs[knob] = given
    return knobs


def _validate(args: argparse.Namespace, knobs: dict[str, Any]) -> str | None:
    for knob, value in knobs.items():
        if value <= 0 and not (knob in ("viewers", "refine") and value == 0):
            return f"--{knob.replace('_', '-')} must be positive"
    if args.scenario == "max" and knobs["factor"] <= 1:
        return "--factor must be above 1"
    if args.duration <= 0 or args.processes < 1:
        return "--duration and --processes must be positive"
    if not 0 <= args.warmup < args.duration:
        return "--warmup must be at least 0 and below --duration"
    return None


def run(args: argparse.Namespace) -> int:
    """Run the load test that ``args`` describes; the exit status."""
    from app.errors import AppError
    from app.loadtest.http import HttpError, token_user
    from app.loadtest.runner import Options, RunFailed
    from app.loadtest.runner import run as run_load
    from app.loadtest.scenarios import Identities
    from app.tokens import issue_token

    knobs = knobs_of(args)
    problem = _validate(args, knobs)
    if problem:
        print(f"loadtest: {problem}", file=sys.stderr)
        return 2
    ttl = int(args.duration + args.drain + 3600)
    try:
        if args.secret is not None:
            secret: str = args.secret
            ids = Identities(
                lambda user: issue_token(secret, user, name=None, ttl=ttl, now=time.time()),
                [],
                token_user,
            )
        else:
            tokens = [t.strip() for t in args.tokens.read_text().splitlines() if t.strip()]
            if not tokens:
                print(f"loadtest: no tokens in {args.tokens}", file=sys.stderr)
                return 2
            ids = Identities(None, tokens, token_user)
        pids = [int(p) for p in args.server_pids.split(",") if p.strip()]
    except (OSError, ValueError, AppError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    options = Options(
        scenario=args.scenario,
        url=args.url,
        identities=ids,
        knobs=knobs,
        processes=args.processes,
        duration=args.duration,
        warmup=args.warmup,
        out=args.out,
        server_pids=pids,
        open_concurrency=args.open_concurrency,
        drain=args.drain,
        connect_timeout=args.connect_timeout,
        storm_bound=args.bound,
        seed=args.seed,
    )
    try:
        return run_load(options)
    except RunFailed as exc:
        print(f"loadtest: the run failed: {exc}", file=sys.stderr)
        return 3
    except (OSError, HttpError) as exc:  # no deployment there, or an HTTP setup call failed
        print(f"loadtest: {exc}", file=sys.stderr)
        return 3


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``atelier-loadtest`` script."""
    parser = argparse.ArgumentParser(
        prog="atelier-loadtest", description="Load-test an Atelier deployment (docs/loadtest.md)."
    )
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130
