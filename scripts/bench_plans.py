"""What the servers' reads of the log cost once a new store has grown, with the plans
they made while it was empty: the servers' session settings against PostgreSQL's.

    .venv/bin/python scripts/bench_plans.py [--events N] [--docs D] [--reads R]

A prepared statement keeps the generic plan it was given after its first runs (the
followers force one from the first), made from the statistics of that moment. This
script makes a throwaway database, migrates it and analyzes it empty (a new store);
on one connection per session it prepares each read and runs it 10 times (past
``plan_cache_mode = auto``'s five custom plans); then it writes N events round-robin
over D documents without analyzing (tests/contract/helpers.py's ``fill_log``), and
runs each kept statement R times per round, sessions alternating. The sessions:

- servers: ``app.store.pool.SERVER_SETTINGS`` (the pool of the gateway, the snapshotter
  and the worker's writes), and for the log's read ``app.store.follow.SESSION`` (the
  relay's, the workers' and the snapshotter's follow);
- defaults: PostgreSQL's settings (for the log's read: its generic plan forced, as the
  followers' session did before it turned sequential scans off).

It prints, per read and session: the wall time per read, the backend's CPU per read
(from /proc when the server runs on this machine), and whether the kept plan holds a
sequential scan (``EXPLAIN EXECUTE`` of the same statement, named, in the same session).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import asyncpg

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS.parent))
sys.path.insert(0, str(SCRIPTS))

import bench_fanout as fanout  # noqa: E402  (throwaway databases, the machine line)
from bench_follow import backend_cpu, median  # noqa: E402

from app.store._rows import EVENT_COLUMNS  # noqa: E402
from app.store.follow import READ, SESSION  # noqa: E402
from app.store.migrate import migrate  # noqa: E402
from app.store.pool import SERVER_SETTINGS  # noqa: E402
from tests.contract.helpers import fill_log  # noqa: E402  (the contract tests' store)

# name: (SQL, parameter types, arguments while empty, arguments once grown; {top} is
# the last position, {v} a version near the top of doc-0). The follow is the followers'.
READS = {
    "follow (the log at the head)": (
        READ,
        "(bigint, bigint)",
        "(0, 500)",
        "({top} - 5, 500)",
    ),
    "read_stream (a document after v)": (
        f"SELECT {EVENT_COLUMNS} FROM events WHERE doc_id = $1 AND v > $2 ORDER BY v LIMIT $3",
        "(text, bigint, bigint)",
        "('doc-0', 0, 100)",
        "('doc-0', {v} - 5, 100)",
    ),
    "read_log (the log at the head)": (
        f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
        "(bigint, bigint)",
        "(0, 500)",
        "({top} - 5, 500)",
    ),
    "lag probe (positions)": (
        "SELECT position, atelier_ms(ts) AS ts FROM events WHERE position = ANY($1::bigint[])",
        "(bigint[])",
        "(ARRAY[1]::bigint[])",
        "(ARRAY[{top}]::bigint[])",
    ),
}
FOLLOW = "follow (the log at the head)"


def settings(session: str, read: str) -> dict[str, str]:
    if read == FOLLOW:
        return dict(SESSION) if session == "servers" else {"plan_cache_mode": "force_generic_plan"}
    return dict(SERVER_SETTINGS) if session == "servers" else {}


async def run(args: argparse.Namespace) -> None:
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/atelier")
    name = f"atelier_bench_plans_{uuid.uuid4().hex[:8]}"
    dsn = f"{admin.rsplit('/', 1)[0]}/{name}"
    print(f"==> machine: {fanout.machine()}", flush=True)
    await fanout.throwaway_database(admin, "create", name)
    conns: dict[tuple[str, str], asyncpg.Connection] = {}
    try:
        await migrate(dsn)
        admin_conn = await asyncpg.connect(dsn)
        await admin_conn.execute("ANALYZE")  # a new store: the statistics say empty
        for read, (sql, types, empty, _) in READS.items():
            for session in ("servers", "defaults"):
                conn = await asyncpg.connect(dsn, server_settings=settings(session, read))
                conns[(read, session)] = conn
                await conn.execute(f"PREPARE r{types} AS {sql}")
                for _ in range(10):
                    await conn.execute(f"EXECUTE r{empty}")
        print("==> plans made on the empty store", flush=True)
        started = time.perf_counter()
        await fill_log(admin_conn, args.events, args.docs, analyze=False)
        await admin_conn.close()
        took = time.perf_counter() - started
        filled = f"{args.events:,} events over {args.docs:,} documents"
        print(f"==> {filled} in {took:.1f} s, not analyzed", flush=True)
        top, v = args.events, args.events // args.docs
        walls: dict[tuple[str, str], list[float]] = {key: [] for key in conns}
        cpus: dict[tuple[str, str], list[float]] = {key: [] for key in conns}
        for round_ in range(args.rounds):
            for (read, session), conn in sorted(conns.items(), reverse=bool(round_ % 2)):
                call = f"EXECUTE r{READS[read][3].format(top=top, v=v)}"
                pid = conn.get_server_pid()
                cpu0 = backend_cpu(pid)
                start = time.perf_counter()
                for _ in range(args.reads):
                    await conn.execute(call)
                walls[(read, session)].append((time.perf_counter() - start) / args.reads * 1e3)
                cpu1 = backend_cpu(pid)
                if cpu0 is not None and cpu1 is not None:
                    cpus[(read, session)].append((cpu1 - cpu0) / args.reads * 1e3)
            print(f"==> round {round_ + 1}/{args.rounds} done", flush=True)
        seq: dict[tuple[str, str], bool] = {}
        for (read, session), conn in conns.items():
            call = f"EXPLAIN EXECUTE r{READS[read][3].format(top=top, v=v)}"
            seq[(read, session)] = any("Seq Scan" in r[0] for r in await conn.fetch(call))
    finally:
        for conn in conns.values():
            await conn.close()
        await fanout.throwaway_database(admin, "drop", name)

    print()
    print(
        f"{args.events:,} events, {args.docs:,} documents; plans made on the empty store; "
        f"{args.reads:,} reads a round, {args.rounds} rounds, medians"
    )
    print()
    print("| read | session | wall per read | backend CPU per read | kept plan |")
    print("|---|---|---|---|---|")
    for read in READS:
        for session in ("servers", "defaults"):
            key = (read, session)
            cpu = f"{median(cpus[key]):.3f} ms" if cpus[key] else "(not local)"
            plan = "sequential scan" if seq[key] else "index scans"
            print(f"| {read} | {session} | {median(walls[key]):.3f} ms | {cpu} | {plan} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events (20,000)")
    parser.add_argument("--docs", type=int, default=10, help="documents (10)")
    parser.add_argument("--reads", type=int, default=200, help="reads per round (200)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, alternating (4)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
