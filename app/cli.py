"""The command line: parse argv, build ``Settings`` once, call one runner.

    python -m app serve       the gateway (HTTP API and websockets) on APP_HOST:APP_PORT
    python -m app relay       publish committed events to the Redis streams (one at a time)
    python -m app worker      keep the read side's views up to the log (run one or more)
    python -m app dev         the development processes under a supervisor (make run)
    python -m app migrate     create the database if missing, apply migrations
    python -m app token       print a signed token for a user
    python -m app settings    print every setting as a markdown table
    python -m app rebuild     rebuild views from the events, blue-green (VIEW... or --all)
    python -m app verify      replay every stream; check I2, I5, I6; non-zero on a difference
    python -m app backup      base backup of the store's cluster into BACKUP_DIR, retention
    python -m app restore-drill  restore a backup into a scratch cluster, verify, RTO/RPO
    python -m app loadtest    load-test a deployment by URL (docs/loadtest.md)
    python -m app chaos       a whole deployment of its own under load and random faults

Each runner is imported inside its branch, so a command only pays for what it uses and
a broken layer does not take the others down with it. A bad setting is a one-line
message on stderr and exit status 2; nothing else reads the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from app import __version__
from app.config import VARIABLES, Settings
from app.errors import AppError, ConfigError
from app.views.schema import VIEWS

__all__ = ["main", "settings_table"]

_PROG = "atelier"


def settings_table() -> str:
    """Every setting, its default and its meaning, as a markdown table (the README's)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, (default, meaning) in VARIABLES.items():
        shown = "(none)" if default is None else f"`{default}`" if default else "(empty)"
        cell = meaning.replace("|", r"\|")
        lines.append(f"| `{name}` | {shown} | {cell} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Atelier: real-time collaboration server. Settings come from the "
        "environment; `atelier settings` lists them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run the gateway (HTTP API and websockets)")
    sub.add_parser("relay", help="publish committed events to Redis streams (one at a time)")
    worker = sub.add_parser("worker", help="keep the read views up to the log (run one or more)")
    worker.add_argument(
        "--id", dest="worker_id", metavar="NAME", help="worker name (default: host-pid)"
    )
    sub.add_parser("dev", help="run the development processes under a supervisor")
    sub.add_parser("migrate", help="create the database if missing and apply migrations")
    sub.add_parser("snapshotter", help="follow the log and write document snapshots")
    token = sub.add_parser("token", help="print a signed token for a user")
    token.add_argument("--user", required=True, help="user id: 1-64 of [A-Za-z0-9_.@-]")
    token.add_argument("--name", help="display name (default: the user id)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds of validity (3600)")
    sub.add_parser("settings", help="print every setting as a markdown table")
    rebuild = sub.add_parser("rebuild", help="rebuild views from the events, blue-green")
    rebuild.add_argument("views", nargs="*", metavar="VIEW", help=f"one of {', '.join(VIEWS)}")
    rebuild.add_argument("--all", action="store_true", help="every view, with one fold")
    rebuild.add_argument("--keep-old", action="store_true", help="keep the old generation's table")
    rebuild.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the progress at METRICS_HOST:PORT/metrics while it runs (0: any free port)",
    )
    verify = sub.add_parser("verify", help="replay every stream and check I2, I5 and I6")
    verify.add_argument("--doc", help="check this document only")
    verify.add_argument(
        "--max-diffs", type=int, default=10, help="differences listed per check (10)"
    )
    backup = sub.add_parser("backup", help="base backup of the store's cluster, then retention")
    backup.add_argument(
        "--wal-archive",
        metavar="DIR",
        help="also remove the archived WAL older than the oldest kept backup",
    )
    drill = sub.add_parser(
        "restore-drill", help="restore a backup into a scratch cluster, verify, print RTO/RPO"
    )
    drill.add_argument("--backup", metavar="LABEL", help="backup to restore (default: newest)")
    when = drill.add_mutually_exclusive_group()
    when.add_argument(
        "--target-time", metavar="ISO", help="replay WAL up to this time (with a zone)"
    )
    when.add_argument("--latest", action="store_true", help="replay all archived WAL (default)")
    drill.add_argument("--wal-archive", metavar="DIR", help="folder of the archived WAL")
    drill.add_argument("--port", type=int, help="port of the scratch cluster (default: free)")
    drill.add_argument("--keep", action="store_true", help="leave the scratch cluster running")
    from app.loadtest.cli import add_arguments as loadtest_arguments

    loadtest_arguments(
        sub.add_parser("loadtest", help="load-test a deployment by URL (docs/loadtest.md)")
    )
    from app.chaos.cli import add_arguments as chaos_arguments

    chaos_arguments(
        sub.add_parser(
            "chaos", help="load and random faults on a deployment of its own; check I1..I6"
        )
    )
    return parser


def _run(command: str, settings: Settings, args: argparse.Namespace) -> int:
    if command == "token":
        from app.ops import token

        return token.run(settings, user=args.user, name=args.name, ttl=args.ttl)

    from app.observability import configure_logging

    configure_logging(settings)
    if command == "serve":
        from app.gateway.server import run as serve

        serve(settings)
        return 0
    if command == "relay":
        from app.relay import runner

        return runner.run(settings)
    if command == "worker":
        from app.workers import runner as worker_runner

        return worker_runner.run(settings, args.worker_id)
    if command == "dev":
        from app.ops import dev

        return dev.run(settings)
    if command == "migrate":
        from app.ops import migrate

        return migrate.run(settings)
    if command == "snapshotter":
        from app.snapshots import worker

        return worker.run(settings)
    if command == "rebuild":
        from app.ops import rebuild

        if args.all and args.views:
            print(f"{_PROG}: rebuild takes VIEW... or --all, not both", file=sys.stderr)
            return 2
        return rebuild.run(
            settings,
            views=list(VIEWS) if args.all else args.views,
            keep_old=args.keep_old,
            metrics_port=args.metrics_port,
        )
    if command == "verify":
        from app.ops import verify

        return verify.run(settings, doc=args.doc, max_diffs=args.max_diffs)
    if command in {"backup", "restore-drill"}:
        return _recovery(command, settings, args)
    raise AssertionError(f"no runner for {command!r}")  # argparse only admits the above


def _recovery(command: str, settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    if command == "backup":
        from app.ops import backup

        return backup.run(
            settings, wal_archive=Path(args.wal_archive) if args.wal_archive else None
        )

    from app.ops import restore_drill

    return restore_drill.run(
        settings,
        backup=args.backup,
        target_time=restore_drill.parse_target(args.target_time),
        wal_archive=Path(args.wal_archive) if args.wal_archive else None,
        port=args.port,
        keep=args.keep,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m app`` and the ``atelier`` script; returns the exit status."""
    args = _parser().parse_args(argv)
    command: str = args.command
    if command == "loadtest":  # a client of any deployment: no server settings needed
        from app.loadtest.cli import run as loadtest

        try:
            return loadtest(args)
        except KeyboardInterrupt:
            return 130
    if command == "chaos":  # a deployment of its own: its settings are the run's
        from app.chaos.cli import run as chaos

        try:
            return chaos(args)
        except KeyboardInterrupt:
            return 130
    if command == "settings":
        try:
            print(settings_table(), flush=True)
        except BrokenPipeError:  # `atelier settings | head`: the reader had enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    try:
        settings = Settings.from_env(os.environ)
        return _run(command, settings, args)
    except ConfigError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    except AppError as exc:  # bad command-line input, e.g. an invalid user id
        print(f"{_PROG}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C, or SIGINT from `app dev`: uvicorn drains, then re-raises the signal it
        # caught, which asyncio.run turns into KeyboardInterrupt. The stop was clean;
        # a traceback would say otherwise.
        return 130
