"""The ``chaos`` subcommand's arguments and their checks (app/cli.py calls these)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.chaos.faults import KINDS, parse_kinds

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=float, default=60, metavar="S", help="seconds of load (60)"
    )
    parser.add_argument(
        "--seed", type=int, metavar="N", default=1, help="seed of the faults and the load (1)"
    )
    parser.add_argument(
        "--gateways", type=int, metavar="N", default=2, help="gateway processes (2)"
    )
    parser.add_argument("--editors", type=int, metavar="N", default=6, help="editor clients (6)")
    parser.add_argument("--viewers", type=int, metavar="N", default=4, help="viewer clients (4)")
    parser.add_argument(
        "--reconnecting",
        type=int,
        metavar="N",
        default=2,
        help="viewers that drop their connection every few seconds and resume (2)",
    )
    parser.add_argument(
        "--docs", type=int, metavar="N", default=3, help="documents the clients share (3)"
    )
    parser.add_argument(
        "--rate", type=float, metavar="OPS", default=4.0, help="ops a second each editor makes (4)"
    )
    parser.add_argument(
        "--every", type=float, default=6.0, metavar="S", help="seconds between faults (6)"
    )
    parser.add_argument(
        "--faults",
        default=",".join(KINDS),
        metavar="KIND,...",
        help=f"faults to inject, each at least once (all: {','.join(KINDS)})",
    )
    parser.add_argument(
        "--settle", type=float, default=90, metavar="S", help="longest settle phase (90)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's folder (logs, data) afterwards"
    )


def run(args: argparse.Namespace) -> int:
    """Check the arguments (exit 2 on a bad one), then run."""
    try:
        faults = parse_kinds(args.faults)
    except ValueError as exc:
        print(f"atelier chaos: {exc}", file=sys.stderr)
        return 2
    for name in ("duration", "gateways", "docs", "every", "settle"):
        if getattr(args, name) <= 0:
            print(f"atelier chaos: --{name} must be above 0", file=sys.stderr)
            return 2
    for name in ("editors", "viewers", "reconnecting", "rate"):
        if getattr(args, name) < 0:
            print(f"atelier chaos: --{name} must not be negative", file=sys.stderr)
            return 2
    if args.editors and not args.rate:
        print("atelier chaos: --rate must be above 0 when there are editors", file=sys.stderr)
        return 2
    from app.chaos.runner import Options
    from app.chaos.runner import run as run_chaos

    opts = Options(
        duration=args.duration,
        seed=args.seed,
        faults=faults,
        gateways=args.gateways,
        editors=args.editors,
        viewers=args.viewers,
        reconnecting=args.reconnecting,
        docs=args.docs,
        rate=args.rate,
        every=args.every,
        settle=args.settle,
        json_path=Path(args.json) if args.json else None,
        keep=args.keep,
    )
    return run_chaos(opts)
