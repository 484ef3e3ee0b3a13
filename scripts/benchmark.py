"""The standard set of issue 6 (docs/benchmarks.md, "The standard set"), beside the raw
ceilings of the parts measured in the same run.

Starts, on a throwaway database of the configured PostgreSQL server (migrated with
``app.store.migrate``) and a fresh Redis key prefix, the server pieces as deployed, each
its own process: ``python -m app serve`` (one gateway), ``relay``, one ``worker`` and the
``snapshotter``, with the per-connection op limits raised (``WS_OP_RATE`` and friends, see
``RAISED_LIMITS``) so that the ``max`` steps are not cut by ``rate_limited``, and the relay
lingering 5 ms as suits one gateway (``ONE_GATEWAY``). Then it runs
every scenario of the set as ``python -m app loadtest ...`` in a subprocess with
``--server-pids`` (the four pids: their CPU and RSS are sampled), and reads each run's
JSON result back.

The ceilings, in the same run, on the same database and Redis:

- PostgreSQL: plain asyncpg ``INSERT`` + ``COMMIT`` of one row per transaction
  (``scripts/bench_write.py``'s ``raw_ceiling``), with 1 connection (the latency of one
  durable commit) and with 10 (the throughput beside the ``max`` scenarios' 10 writers);
- Redis: ``XADD`` from 16 tasks (``bench_write.redis_ceiling``);
- the floor of a broadcast: ``scripts/bench_fanout.py``'s bare ``websockets`` server in
  its own process, driven by that script's own client processes at the same counts and
  rates as each hot-doc scenario (the harness cannot be pointed at it: the floor has no
  HTTP API to create documents), and its memory per idle connection.

Memory per idle connection is measured last, on a freshly started gateway, with
``bench_fanout.measure_idle`` (N connections hello, join one document and stay silent:
RSS delta / N). RLIMIT_NOFILE is raised to its hard limit in this process before
anything starts, so the gateway and every client process inherit it.

    .venv/bin/python scripts/benchmark.py [--seconds 30] [--only hot-500x20,max-1doc]
        [--quick] [--write-docs]

``--quick`` is a tiny version of every scenario (tens of clients, 2-step max, 50 idle
connections) for the smoke test. ``--write-docs`` rewrites the block between
``<!-- benchmark:start -->`` and ``<!-- benchmark:end -->`` in docs/benchmarks.md and
copies the HTML report of the hot-doc 500 x 20 run to docs/reports/hot-doc.html.

Exit status: 0 when every correctness check passed (targets may be missed: the table
says so), 1 when one failed (lost, doubled or reordered deliveries, a wrong final state),
2 on a bad command line, 3 when a run could not be carried out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvloop

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(SCRIPTS))

import bench_fanout as fanout  # noqa: E402  (the floor server, its clients, idle memory)
import bench_write  # noqa: E402  (the PostgreSQL and Redis ceilings)

from app.store.migrate import migrate  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
REPORT = ROOT / "docs" / "reports" / "hot-doc.html"
START, END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"

# Raised for the whole run (the max steps go to 1,000+ ops/s per writer); the other
# scenarios stay far below the defaults anyway.
# The paced commit ceiling: one commit every 50 ms, the rate of the hot-doc x20 rows. On
# a virtual disk a flush after an idle pause can take several times a back-to-back one
# (docs/benchmarks.md, "Commits after an idle pause"); the rows at low rates pay that.
PACED_RATE = 20.0

RAISED_LIMITS = {
    "WS_OP_RATE": "100000",
    "WS_OP_BURST": "100000",
    "WS_USER_OP_RATE": "100000",
    "WS_USER_OP_BURST": "100000",
}
# One gateway: its sessions get its commits from the commit tap, so the relay's linger
# costs them nothing and saves the relay and Redis CPU (docs/benchmarks.md, "The relay's
# linger"; the README's setting).
ONE_GATEWAY = {"RELAY_LINGER_MS": "5"}


def say(line: str) -> None:
    print(f"==> {line}", flush=True)


@dataclass
class Item:
    """One row of the standard set."""

    key: str
    label: str
    scenario: str
    knobs: dict[str, Any]
    quick: dict[str, Any]
    target: str
    sharedb: str
    floor: tuple[int, float] | None = None  # (viewers, rate) of the bench_fanout floor
    bound_ms: float | None = None  # p99 target for hot-doc and many-docs
    min_ops: float | None = None  # durable ops/s target for max


SET: list[Item] = [
    Item(
        "hot-500x20",
        "hot-doc, 500 viewers + 10 editors, 20 ops/s",
        "hot-doc",
        {"viewers": 500, "editors": 10, "rate": 20},
        {"viewers": 20, "editors": 2, "rate": 10},
        "p99 < 10 ms",
        "p99 13-18 ms",
        floor=(500, 20),
        bound_ms=10,
    ),
    Item(
        "hot-500x50",
        "hot-doc, 500 viewers + 10 editors, 50 ops/s",
        "hot-doc",
        {"viewers": 500, "editors": 10, "rate": 50},
        {"viewers": 20, "editors": 2, "rate": 20},
        "p99 < 10 ms",
        "p99 12.5 ms",
        floor=(500, 50),
        bound_ms=10,
    ),
    Item(
        "hot-500x100",
        "hot-doc, 500 viewers + 10 editors, 100 ops/s",
        "hot-doc",
        {"viewers": 500, "editors": 10, "rate": 100},
        {"viewers": 20, "editors": 2, "rate": 40},
        "p99 < 50 ms",
        "p99 464 ms",
        floor=(500, 100),
        bound_ms=50,
    ),
    Item(
        "hot-1000x20",
        "hot-doc, 1,000 viewers + 10 editors, 20 ops/s",
        "hot-doc",
        {"viewers": 1000, "editors": 10, "rate": 20},
        {"viewers": 40, "editors": 2, "rate": 10},
        "p99 < 30 ms",
        "p99 40 ms, max 200 ms",
        floor=(1000, 20),
        bound_ms=30,
    ),
    Item(
        "many-docs",
        "many-docs, 200 docs x (2 editors + 3 viewers), 1 op/s per editor",
        "many-docs",
        {"docs": 200, "editors": 2, "viewers": 3, "rate": 1},
        {"docs": 5, "editors": 2, "viewers": 3, "rate": 1},
        "p99 < 2.5 ms",
        "p99 2.7 ms",
        bound_ms=2.5,
    ),
    Item(
        "max-10docs",
        "max, 10 writers on 10 documents",
        "max",
        {"docs": 10, "editors": 1, "viewers": 0, "rate": 250, "factor": 1.5, "steps": 10},
        {"docs": 2, "editors": 1, "viewers": 0, "rate": 20, "factor": 2, "steps": 2},
        ">= 6,000 durable ops/s",
        "3,050 ops/s",
        min_ops=6000,
    ),
    Item(
        "max-1doc",
        "max, 10 writers on one document",
        "max",
        {"docs": 1, "editors": 10, "viewers": 0, "rate": 250, "factor": 1.5, "steps": 10},
        {"docs": 1, "editors": 2, "viewers": 0, "rate": 20, "factor": 2, "steps": 2},
        ">= 3,000 durable ops/s",
        "270 ops/s",
        min_ops=3000,
    ),
    Item(
        "join-storm",
        "join-storm, 500 clients, document of 5,000 elements",
        "join-storm",
        {"clients": 500, "elements": 5000},
        {"clients": 20, "elements": 200},
        "all welcomed within 2 s",
        "",
    ),
    Item(
        "idle",
        "5,000 idle connections on one gateway process",
        "idle",
        {"count": 5000},
        {"count": 50},
        "< 40 KiB each",
        "",
    ),
]
KEYS = [item.key for item in SET]


@dataclass
class Outcome:
    item: Item
    measured: str
    met: bool | None
    ratio: str
    server: str
    correct: bool | None  # None: no correctness check (idle)
    note: str = ""
    html: Path | None = None


@dataclass
class Ceilings:
    pg1: bench_write.Result | None = None
    pg10: bench_write.Result | None = None
    pg_paced: bench_write.Result | None = None  # one commit every 1 / PACED_RATE s
    redis: bench_write.Result | None = None
    floors: dict[str, fanout.RunResult] = field(default_factory=dict)
    idle_floor: fanout.IdleResult | None = None


class LoadAverage:
    """The 1-minute load average, sampled every 5 s in a thread while the set runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))
            if self._stop.wait(5.0):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def text(self) -> str:
        if not self.samples:
            return "?"
        s = self.samples
        return f"{min(s):.2f} to {max(s):.2f} (mean {sum(s) / len(s):.2f})"


# -- the servers -------------------------------------------------------------------------


async def start_servers(servers: fanout.Servers) -> None:
    servers.start("relay", "relay")
    servers.start("worker", "worker", [sys.executable, "-m", "app", "worker", "--id", "bench"])
    servers.start("snapshotter", "snapshotter")
    await servers.start_gateway()


def server_pids(servers: fanout.Servers) -> dict[int, str]:
    return {servers.pid(n): n for n in ("gateway", "relay", "worker", "snapshotter")}


def server_text(result: dict[str, Any], pids: dict[int, str]) -> str:
    """CPU (mean % of one core) and peak RSS of each server process over the run."""
    summary = result.get("server", {}).get("summary", {})
    parts = []
    for pid, name in pids.items():
        s = summary.get(str(pid))
        if not s or s.get("cpu_mean") is None:
            continue
        short = {"gateway": "gw", "relay": "relay", "worker": "worker", "snapshotter": "snap"}
        rss = (s.get("rss_max_kib") or 0) / 1024
        parts.append(f"{short[name]} {s['cpu_mean']:.0f}% {rss:.0f} MiB")
    return ", ".join(parts)


# -- one loadtest run --------------------------------------------------------------------


def run_loadtest(
    item: Item, args: argparse.Namespace, url: str, secret: str, pids: dict[int, str], out: Path
) -> dict[str, Any]:
    knobs = item.quick if args.quick else item.knobs
    duration = args.seconds
    if item.scenario == "max":
        duration = max(2.0, args.seconds / 3)  # per step; up to 8 steps
    elif item.scenario == "join-storm":
        duration = 2.0  # the storm is at the start; the load after it is not the point
    warmup = min(2.0, duration / 4)
    argv = [sys.executable, "-m", "app", "loadtest", item.scenario, "--url", url]
    argv += ["--secret", secret, "--duration", f"{duration:g}", "--warmup", f"{warmup:g}"]
    argv += ["--out", str(out), "--server-pids", ",".join(str(p) for p in pids)]
    if args.quick:
        argv += ["--drain", "5"]
    for knob, value in knobs.items():
        argv += [f"--{knob.replace('_', '-')}", f"{value:g}"]
    shown = " ".join(a for a in argv[3:] if a != secret)
    say(f"{item.key}: python -m app {shown}")
    steps = int(knobs.get("steps", 1))
    timeout = steps * (duration + 120) + 300
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, timeout=timeout, check=False)
    results = sorted(out.glob("loadtest-*.json"))
    if not results:
        raise RuntimeError(f"{item.key}: the harness wrote no result (exit {done.returncode})")
    result: dict[str, Any] = orjson.loads(results[-1].read_bytes())
    result["_exit"] = done.returncode
    result["_html"] = str(results[-1].with_suffix(".html"))
    say(f"{item.key}: done in {time.monotonic() - started:.0f} s, harness exit {done.returncode}")
    return result


def fmt_ms(value: float) -> str:
    return f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"


def outcome_of(
    item: Item, result: dict[str, Any], ceilings: Ceilings, pids: dict[int, str]
) -> Outcome:
    stats = result["stats"]
    corr = result["correctness"]
    correct = bool(corr["ok"])
    errors = stats.get("errors") or {}
    note = f"{item.key}: correctness {'ok' if correct else 'FAILED'}"
    note += f" ({corr['clients_checked']} clients checked, lost {corr['lost']}, "
    note += f"dup {corr['duplicated']}, out of order {corr['out_of_order']})"
    if errors:
        note += f"; errors {errors}"
    html = Path(result["_html"])
    server = server_text(result, pids)
    if item.scenario in ("hot-doc", "many-docs"):
        lat = stats["latency_ms"]
        p99 = float(lat["p99"])
        measured = f"p99 {fmt_ms(p99)} (p50 {fmt_ms(lat['p50'])}, max {fmt_ms(lat['max'])})"
        assert item.bound_ms is not None
        met = p99 < item.bound_ms and correct
        ratio = ""
        floor = ceilings.floors.get(item.key)
        if floor is not None and floor.latencies:
            fp99 = floor.pct(0.99)
            ratio = f"{p99 / fp99:.1f}x the floor's p99 ({fmt_ms(fp99)})"
            if fp99 > 1000 and p99 < fp99:  # the floor fell behind its own load
                ratio = f"the floor fell behind (p99 {fmt_ms(fp99)}): no ratio"
        elif item.scenario == "many-docs" and ceilings.pg1 is not None:
            cp99 = ceilings.pg1.pct(0.99)
            ratio = f"{p99 / cp99:.1f}x one commit's p99 ({fmt_ms(cp99)})"
        note += (
            f"; {stats['ops_acked']:,} ops acked, {stats['deliveries_per_s']:,.0f} deliveries/s, "
            f"ack p99 {fmt_ms(stats['ack_ms']['p99'])}"
        )
        return Outcome(item, measured, met, ratio, server, correct, note, html)
    if item.scenario == "max":
        info = result["max"]
        steps = info["steps"]
        correct = all(s["correct"] for s in steps)
        best = info["best"]
        ops = float(best["acked_per_s"]) if best else 0.0
        measured = f"{ops:,.0f} durable ops/s"
        if best:
            measured += f" (ack p99 {fmt_ms(best['ack_p99_ms'])})"
        assert item.min_ops is not None
        met = ops >= item.min_ops and correct
        ratio = ""
        if ceilings.pg10 is not None:
            ratio = f"{ops / ceilings.pg10.rate:.2f}x 10 raw commits ({ceilings.pg10.rate:,.0f}/s)"
        missed = [s for s in steps if not s["ok"]]
        low = min(missed, key=lambda s: float(s["rate"])) if missed else {}
        stop = (
            ""
            if not low
            else (
                f"; the lowest rate missed, {low['rate']:,.0f} ops/s asked: "
                f"{low['acked_per_s']:,.0f} acked, ack p99 {fmt_ms(low['ack_p99_ms'])}, "
                f"delivery p99 {fmt_ms(low['delivery_p99_ms'])}"
                f"{', errors ' + str(low['errors']) if low['errors'] else ''}"
            )
        )

        def listed(group: list[dict[str, Any]]) -> str:
            return ", ".join(f"{s['rate']:,.0f}{'' if s['ok'] else ' (no)'}" for s in group)

        grown = [s for s in steps if not s.get("refine")]
        refined = [s for s in steps if s.get("refine")]
        note = (
            f"{item.key}: correctness {'ok' if correct else 'FAILED'} in every step; steps "
            + listed(grown)
            + (
                f", then between the last kept and the first missed {listed(refined)}"
                if refined
                else ""
            )
            + f" ops/s, bound p99 {info['bound_ms']:g} ms{stop}"
        )
        return Outcome(item, measured, met, ratio, server, correct, note, html)
    # join-storm
    bound = result["bounds"]["join_storm"]
    clients = stats["clients"]
    measured = f"{bound['welcomed']}/{clients} welcomed, slowest {bound['slowest_s']:.2f} s"
    w = stats["welcome_after_start_ms"]
    note += f"; welcome after the start p50 {w['p50']:.0f} ms, p99 {w['p99']:.0f} ms"
    return Outcome(item, measured, bool(bound["met"]) and correct, "", server, correct, note, html)


# -- the floor and idle memory (bench_fanout's) ----------------------------------------


async def floor_run(
    item: Item, args: argparse.Namespace, servers: fanout.Servers, users: fanout.Users
) -> fanout.RunResult:
    assert item.floor is not None
    viewers, rate = item.floor
    if args.quick:
        viewers, rate = int(item.quick["viewers"]), float(item.quick["rate"])
    scenario = fanout.Scenario(item.key, viewers, rate, item.bound_ms or 0)
    ns = argparse.Namespace(seconds=args.seconds, warmup=min(2.0, args.seconds / 4))
    clients = fanout.Clients()
    try:
        return await fanout.run_target("floor", scenario, viewers, ns, servers, clients, users)
    finally:
        clients.stop()


async def idle_run(
    target: str, count: int, servers: fanout.Servers, users: fanout.Users
) -> fanout.IdleResult:
    clients = fanout.Clients()
    try:
        return await fanout.measure_idle(target, count, servers, clients, users)
    finally:
        clients.stop()


# -- the report ------------------------------------------------------------------------

HEAD = [
    "| scenario | measured | target | met? | ratio to the ceiling | ShareDB here | "
    "server CPU / peak RSS (gateway, relay, worker, snapshotter) |",
    "|---|---|---|---|---|---|---|",
]


def table(outcomes: Sequence[Outcome], quick: bool = False) -> list[str]:
    lines = list(HEAD)
    for o in outcomes:
        met = "?" if o.met is None else ("yes" if o.met else "**no**")
        label = o.item.label + (f" (quick: {o.item.quick})" if quick else "")
        lines.append(
            f"| {label} | {o.measured} | {o.item.target} | {met} | {o.ratio} | "
            f"{o.item.sharedb} | {o.server} |"
        )
    checked = [o for o in outcomes if o.correct is not None]
    bad = [o.item.key for o in checked if not o.correct]
    verdict = (
        "zero lost, duplicated or out-of-order deliveries"
        if not bad
        else (f"**FAILED in {', '.join(bad)}**")
    )
    lines.append(
        f"| any scenario | {verdict} ({len(checked)} runs checked) | zero lost, duplicated or "
        f"out-of-order deliveries | {'yes' if not bad else '**no**'} |  |  |  |"
    )
    return lines


def ceiling_lines(c: Ceilings) -> list[str]:
    out = []
    if c.pg1 is not None and c.pg10 is not None:
        out.append(
            f"- PostgreSQL single-row `INSERT` + `COMMIT`: {c.pg1.rate:,.0f}/s from 1 "
            f"connection (p50 {c.pg1.pct(0.5):.2f} ms, p99 {c.pg1.pct(0.99):.2f} ms), "
            f"{c.pg10.rate:,.0f}/s from 10 (p99 {c.pg10.pct(0.99):.2f} ms)."
        )
    if c.pg_paced is not None:
        p = c.pg_paced
        out.append(
            f"- The same, from 1 connection paced at {PACED_RATE:g} commits/s (hot-doc's "
            f"x20 rate; the disk and the processes idle between commits): p50 "
            f"{p.pct(0.5):.2f} ms, p99 {p.pct(0.99):.2f} ms over {len(p.latencies):,} commits."
        )
    if c.redis is not None:
        out.append(
            f"- Redis `XADD` from 16 tasks: {c.redis.rate:,.0f}/s (p99 {c.redis.pct(0.99):.2f} ms)."
        )
    for key, f in c.floors.items():
        out.append(
            f"- Bare `websockets` broadcast floor (scripts/bench_fanout.py's server and client "
            f"processes), {key}: {f.viewers} viewers + {fanout.EDITORS} editors, "
            f"p50 {f.pct(0.5):.1f} ms, p99 {f.pct(0.99):.1f} ms, max {f.pct(1.0):.1f} ms, "
            f"floor CPU {f.cpu.get('floor', 0):.0f}%, lost {f.lost}, dup {f.dup}."
        )
    if c.idle_floor is not None:
        i = c.idle_floor
        out.append(
            f"- Floor process, {i.count:,} idle connections: {i.per_connection:.1f} KiB each."
        )
    return out


def write_docs(lines: list[str], argv: Sequence[str]) -> None:
    text = DOCS.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{DOCS}: the {START} / {END} markers are missing")
    head, rest = text.split(START, 1)
    _old, tail = rest.split(END, 1)
    command = " ".join([".venv/bin/python scripts/benchmark.py", *argv])
    body = [f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; `{command}`.", ""]
    DOCS.write_text(head + START + "\n\n" + "\n".join(body + lines) + "\n\n" + END + tail)
    say(f"wrote {DOCS.relative_to(ROOT)}")


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per scenario (30)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {','.join(KEYS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument(
        "--write-docs", action="store_true", help="rewrite the block in docs/benchmarks.md"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the harness's JSON and HTML here"
    )
    args = parser.parse_args(argv)
    only = [k for k in args.only.split(",") if k]
    unknown = set(only) - set(KEYS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {KEYS}")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    args.items = [i for i in SET if not only or i.key in only]
    return args


async def ceilings_run(dsn: str, redis_url: str, seconds: float) -> Ceilings:
    c = Ceilings()
    say(f"ceilings: PostgreSQL INSERT + COMMIT from 1 and 10 connections, {seconds:g} s each")
    c.pg1 = await bench_write.raw_ceiling(dsn, 1, seconds)
    c.pg10 = await bench_write.raw_ceiling(dsn, 10, seconds)
    say(f"ceilings: {c.pg1.rate:,.0f}/s from 1, {c.pg10.rate:,.0f}/s from 10")
    say(f"ceilings: the same from 1 connection paced at {PACED_RATE:g}/s, {seconds:g} s")
    c.pg_paced = await bench_write.raw_ceiling(dsn, 1, seconds, PACED_RATE)
    say(f"ceilings: paced p50 {c.pg_paced.pct(0.5):.2f} ms, p99 {c.pg_paced.pct(0.99):.2f} ms")
    say("ceilings: Redis XADD")
    c.redis = await bench_write.redis_ceiling(redis_url, seconds)
    say(f"ceilings: Redis XADD {c.redis.rate:,.0f}/s")
    return c


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C cancels this task, so that the finally below stops the servers, drops the
    # database and deletes the Redis keys (a harness run in flight gets the SIGINT too).
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, task.cancel)
    fanout.raise_nofile()  # inherited by the gateway, the harness and the floor's clients
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/atelier")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    tag = uuid.uuid4().hex[:8]
    db, prefix = f"atelier_benchmark_{tag}", f"atelier-benchmark-{tag}:"
    dsn = f"{admin.rsplit('/', 1)[0]}/{db}"
    logs = Path(tempfile.mkdtemp(prefix="benchmark_"))
    out = args.out or logs / "results"
    users = fanout.Users(secrets.token_hex(32))
    env = {
        **os.environ,
        "APP_ENV": "prod",
        "APP_SECRET": users.secret,
        "DATABASE_URL": dsn,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(fanout.free_port()),
        "APP_DATA_DIR": str(logs),
        "LOG_LEVEL": "warning",
        "RELAY_METRICS_PORT": "off",
        "SNAPSHOTTER_METRICS_PORT": "off",
        "WORKER_METRICS_PORT": "off",
        **RAISED_LIMITS,
        **ONE_GATEWAY,
    }
    machine = fanout.machine()
    say(f"machine: {machine}; load average {os.getloadavg()[0]:.2f}")
    say(f"database {db}, Redis prefix {prefix}, logs and results in {logs}")
    load = LoadAverage()
    load.start()
    await fanout.throwaway_database(admin, "create", db)
    servers = fanout.Servers(env, logs)
    outcomes: list[Outcome] = []
    ceilings = Ceilings()
    failed_run = False
    try:
        await migrate(dsn)
        ceilings = await ceilings_run(dsn, redis_url, 1.0 if args.quick else min(10, args.seconds))
        await start_servers(servers)
        pids = server_pids(servers)
        url = f"http://127.0.0.1:{servers.port}"
        say(f"servers up: {', '.join(f'{n} {p}' for p, n in pids.items())}; {url}")
        idle_item: Item | None = None
        for item in args.items:
            if item.scenario == "idle":
                idle_item = item
                continue
            try:
                result = await asyncio.to_thread(
                    run_loadtest, item, args, url, users.secret, pids, out / item.key
                )
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                say(f"{item.key}: the run could not be carried out: {exc}")
                failed_run = True
                continue
            outcome = outcome_of(item, result, ceilings, pids)
            outcomes.append(outcome)
            say(f"{item.key}: {outcome.measured} (target {item.target})")
            if item.floor is not None:
                say(f"{item.key}: the bare websockets floor at the same counts and rate")
                await servers.start_floor()
                try:
                    ceilings.floors[item.key] = await floor_run(item, args, servers, users)
                finally:
                    servers.stop_floor()
                outcome = outcome_of(item, result, ceilings, pids)  # now with its ratio
                outcomes[-1] = outcome
                say(f"{item.key}: floor p99 {ceilings.floors[item.key].pct(0.99):.1f} ms")
        if idle_item is not None:
            count = int((idle_item.quick if args.quick else idle_item.knobs)["count"])
            say(f"idle: {count:,} connections on a fresh gateway, then on a fresh floor")
            await fanout.setup_document(url, dsn, users, 0, count)
            await servers.stop("gateway")
            await servers.start_gateway()
            gw = servers.pid("gateway")
            idle = await idle_run("atelier", count, servers, users)
            await servers.start_floor()
            try:
                ceilings.idle_floor = await idle_run("floor", count, servers, users)
            finally:
                servers.stop_floor()
            per = idle.per_connection
            fl = ceilings.idle_floor.per_connection
            outcomes.append(
                Outcome(
                    idle_item,
                    f"{per:.1f} KiB each (RSS {idle.before_kib / 1024:.0f} → "
                    f"{idle.after_kib / 1024:.0f} MiB)",
                    per < 40,
                    f"{per / fl:.1f}x the floor's {fl:.1f} KiB",
                    f"gw {idle.after_kib / 1024:.0f} MiB (pid {gw})",
                    None,
                    f"idle: {count:,} connections said hello and joined one document; kernel "
                    f"TCP buffers (both ends, not in RSS) {idle.tcp_kib:+,} KiB",
                )
            )
            say(f"idle: {per:.1f} KiB per connection (floor {fl:.1f})")
    finally:
        load.stop()
        await servers.stop_all()
        await fanout.throwaway_database(admin, "drop", db)
        await fanout.delete_keys(redis_url, prefix)
    lines = table(outcomes, args.quick)
    lines += ["", f"Machine: {machine}. Load average (1 min) during the run: {load.text()}.", ""]
    lines += ["Ceilings measured in the same run:", ""]
    lines += ceiling_lines(ceilings)
    lines += ["", "Notes:", ""]
    lines += [f"- {o.note}" for o in outcomes if o.note]
    print("\n".join(lines), flush=True)
    hot = next((o for o in outcomes if o.item.key == "hot-500x20"), None)
    if args.write_docs:
        write_docs(lines, sys.argv[1:] if argv is None else argv)
        if hot is not None and hot.html is not None and hot.html.exists():
            REPORT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(hot.html, REPORT)
            say(f"copied {hot.html.name} to {REPORT.relative_to(ROOT)}")
    bad = [o.item.key for o in outcomes if o.correct is False]
    if args.out is None and not bad and not failed_run:
        shutil.rmtree(logs, ignore_errors=True)
    else:
        say(f"logs and results kept in {logs}")
    if bad:
        print(f"CORRECTNESS CHECK FAILED: {', '.join(bad)}", file=sys.stderr, flush=True)
        return 1
    return 3 if failed_run else 0


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
