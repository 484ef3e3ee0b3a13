"""What one read of the log costs PostgreSQL, with the plan the follower's session takes
and with PostgreSQL's default (``plan_cache_mode = auto``).

    .venv/bin/python scripts/bench_follow.py [--events N] [--docs D] [--reads R]

Makes a throwaway database (migrated), fills ``events`` with N events round-robin over
D documents (one ``INSERT ... SELECT``: tests/contract/helpers.py's ``fill_log``, the
store of tests/contract/test_partition_plans.py),
analyzes it, then runs the follower's prepared read (``app.store.follow.READ``) R times
per round on two connections, one with the follower's session settings
(``app.store.follow.SESSION``) and one with the default, alternating rounds:

- at the head: the cursor 5 events behind it, what a relay, worker or snapshotter reads
  after each commit at low load (5 rows);
- a page: 500 rows from a random cursor, what they read while catching up.

For each it prints the wall time per read (the round trip included), the CPU of the
PostgreSQL backend per read (from /proc when the server runs on this machine) and how
many custom and generic plans the statement got (``pg_prepared_statements``). Beside
them, the ceiling of any read on the same connection: ``SELECT 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent))
sys.path.insert(0, str(SCRIPTS))

import bench_fanout as fanout  # noqa: E402  (throwaway databases, the machine line)

from app.store.follow import READ, SESSION  # noqa: E402
from app.store.migrate import migrate  # noqa: E402
from tests.contract.helpers import fill_log  # noqa: E402  (the contract tests' store)

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    wall_ms: list[float]
    cpu_ms: list[float]
    custom: int = 0
    generic: int = 0


def backend_cpu(pid: int) -> float | None:
    """Seconds of CPU of a local backend so far; None when it is not on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


async def fill(dsn: str, events: int, docs: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await fill_log(conn, events, docs)
    finally:
        await conn.close()


async def timed(
    conn: asyncpg.Connection, sql: str, cursors: list[int], limit: int | None
) -> tuple[float, float | None]:
    """(wall ms, backend CPU ms) per execution of ``sql`` over ``cursors``, through
    asyncpg's statement cache (prepared once per connection), as the follower runs it."""
    pid = conn.get_server_pid()
    cpu0 = backend_cpu(pid)
    start = time.perf_counter()
    for cursor in cursors:
        if limit is None:
            await conn.fetchval(sql)
        else:
            await conn.fetch(sql, cursor, limit)
    wall = (time.perf_counter() - start) / len(cursors) * 1e3
    cpu1 = backend_cpu(pid)
    cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / len(cursors) * 1e3
    return wall, cpu


async def plans(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT custom_plans, generic_plans FROM pg_prepared_statements WHERE statement = $1",
        READ,
    )
    return (0, 0) if row is None else (int(row["custom_plans"]), int(row["generic_plans"]))


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def run(args: argparse.Namespace) -> None:
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/atelier")
    name = f"atelier_bench_follow_{uuid.uuid4().hex[:8]}"
    dsn = f"{admin.rsplit('/', 1)[0]}/{name}"
    print(f"==> machine: {fanout.machine()}", flush=True)
    await fanout.throwaway_database(admin, "create", name)
    try:
        await migrate(dsn)
        started = time.perf_counter()
        await fill(dsn, args.events, args.docs)
        took = time.perf_counter() - started
        filled = f"{args.events:,} events over {args.docs:,} documents"
        print(f"==> {filled} in {took:.1f} s", flush=True)
        sessions = {"follower (generic)": SESSION, "default (auto)": {}}
        conns = {
            label: await asyncpg.connect(dsn, server_settings=dict(settings))
            for label, settings in sessions.items()
        }
        rng = random.Random(args.seed)
        shapes = {"at the head, 5 rows": 5, "a page, 500 rows": 500}
        figures = {(label, shape): Figure([], []) for label in conns for shape in shapes}
        ceiling = Figure([], [])
        try:
            for round_ in range(args.rounds):
                for shape, limit in shapes.items():
                    if limit == 5:
                        cursors = [args.events - 5] * args.reads
                    else:
                        top = args.events - limit
                        cursors = [rng.randrange(0, top) for _ in range(args.reads)]
                    order = list(conns.items())
                    if round_ % 2:
                        order.reverse()
                    for label, conn in order:
                        wall, cpu = await timed(conn, READ, cursors, limit)
                        fig = figures[(label, shape)]
                        fig.wall_ms.append(wall)
                        if cpu is not None:
                            fig.cpu_ms.append(cpu)
                conn = conns["follower (generic)"]
                wall, cpu = await timed(conn, "SELECT 1", [0] * args.reads, None)
                ceiling.wall_ms.append(wall)
                if cpu is not None:
                    ceiling.cpu_ms.append(cpu)
                print(f"==> round {round_ + 1}/{args.rounds} done", flush=True)
            for label, conn in conns.items():
                custom, generic = await plans(conn)
                for shape in shapes:
                    figures[(label, shape)].custom = custom
                    figures[(label, shape)].generic = generic
        finally:
            for conn in conns.values():
                await conn.close()
    finally:
        await fanout.throwaway_database(admin, "drop", name)

    def cpu_text(fig: Figure) -> str:
        return f"{median(fig.cpu_ms):.3f} ms" if fig.cpu_ms else "(not local)"

    print()
    print(
        f"{args.events:,} events, {args.docs:,} documents, 16 partitions; {args.reads:,} reads "
        f"a round, {args.rounds} rounds, medians"
    )
    print()
    print("| read | session | wall per read | backend CPU per read | plans (custom / generic) |")
    print("|---|---|---|---|---|")
    for (label, shape), fig in figures.items():
        print(
            f"| {shape} | {label} | {median(fig.wall_ms):.3f} ms | {cpu_text(fig)} |"
            f" {fig.custom:,} / {fig.generic:,} |"
        )
    print(
        f"| ceiling: `SELECT 1` | follower | {median(ceiling.wall_ms):.3f} ms |"
        f" {cpu_text(ceiling)} | |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events (200,000)")
    parser.add_argument("--docs", type=int, default=1_000, help="documents (1,000)")
    parser.add_argument("--reads", type=int, default=2_000, help="reads per round (2,000)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, alternating (4)")
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
