"""One load-test run: set up the documents, drive the client processes, check, report.

The parent process does no load itself. It creates the documents over HTTP, spawns the
client processes (``app.loadtest.client``), starts them together on one schedule
(CLOCK_MONOTONIC is one clock for every process of the machine), prints one progress
line a second, samples the server's processes from /proc when given their pids, reads
each document's final state from the server, and checks what every client saw.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import orjson

from app.loadtest import report
from app.loadtest.client import ClientSpec, Plan, child_main, elements_of
from app.loadtest.hist import Histogram
from app.loadtest.http import Http, HttpError
from app.loadtest.procstat import Sampler, machine
from app.loadtest.scenarios import Identities, Setup, build
from app.loadtest.search import find_max

__all__ = ["Options", "RunFailed", "check", "run"]

MAX_FAILURES_LISTED = 20


class RunFailed(Exception):
    """The run could not be carried out (not a failed correctness check)."""


@dataclass
class Options:
    scenario: str
    url: str
    identities: Identities
    knobs: dict[str, Any]
    processes: int = 2
    duration: float = 10.0
    warmup: float = 1.0
    out: Path = Path("loadtest-results")
    server_pids: list[int] = field(default_factory=list)
    open_concurrency: int = 50
    drain: float = 10.0
    connect_timeout: float = 30.0
    storm_bound: float = 2.0
    seed: int = 1
    progress: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)


def ws_base(url: str) -> str:
    url = url.rstrip("/")
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    return url


# -- setup --------------------------------------------------------------------------------


def create_documents(http: Http, setup: Setup, owner: str) -> dict[str, int]:
    """Each document, its first ops and its members; the version after the setup."""

    def one(doc: str) -> int:
        http.call("POST", "/api/documents", {"title": f"load test {setup.scenario}", "id": doc})
        v = 1
        for n, op in enumerate(setup.ops[doc]):
            v = int(
                http.call("POST", f"/api/documents/{doc}/ops", {"id": f"setup-{n}", "op": op})["v"]
            )
        return v

    versions = dict(zip(setup.docs, Http.each(one, setup.docs), strict=True))
    pairs = [
        (doc, user, role)
        for doc, members in setup.members.items()
        for user, role in members.items()
        if user != owner
    ]
    Http.each(
        lambda p: http.call("PUT", f"/api/documents/{p[0]}/members/{p[1]}", {"role": p[2]}), pairs
    )
    return versions


def read_state(http: Http, doc: str, min_v: int) -> dict[str, Any]:
    """``GET /api/documents/{doc}?min_v=``, retried while the read side catches up."""
    for attempt in range(4):
        try:
            answer: dict[str, Any] = http.call("GET", f"/api/documents/{doc}?min_v={min_v}")
            return answer
        except HttpError as exc:
            if exc.status != 504 or attempt == 3:
                raise
    raise AssertionError("unreachable")


# -- the client processes -------------------------------------------------------------------


class Fleet:
    """The client processes, their pipes, and what their ticks added up to."""

    def __init__(self, plans: Sequence[Plan], progress: Callable[[str], None]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.progress = progress
        self.total = sum(len(p.clients) for p in plans)
        self.latest: dict[int, dict[str, Any]] = {}
        self.series: dict[int, dict[str, Any]] = {}
        self.running = Histogram()  # deliveries so far, for the progress line
        self.sampler: Sampler | None = None
        self.start_ns = 0
        for plan in plans:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=child_main, args=(child, plan), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self.generator = Sampler([p.pid for p in self.procs if p.pid is not None])

    def collect(self, want: str, timeout: float) -> list[Any]:
        """The ``want`` message of every process (in order), handling ticks meanwhile."""
        got: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        next_line = self.next_line()
        while len(got) < len(self.conns):
            now = time.monotonic()
            if now > deadline:
                raise RunFailed(f"client processes did not report {want!r} in {timeout:.0f} s")
            if now >= next_line:
                self.line()
                next_line = self.next_line()
            waiting = [c for i, c in enumerate(self.conns) if i not in got]
            for ready in wait(waiting, timeout=min(deadline, next_line) - now):
                assert isinstance(ready, Connection)
                i = self.conns.index(ready)
                try:
                    message: tuple[Any, ...] = ready.recv()
                    kind, payload = message[0], message[1:]
                except EOFError:
                    raise RunFailed(f"client process {i} died") from None
                if kind == "tick":
                    self.tick(i, payload[0])
                elif kind == "failed":
                    raise RunFailed(payload[0])
                elif kind == want:
                    got[i] = payload[0] if len(payload) == 1 else payload
                else:
                    raise RunFailed(f"client process {i}: {kind!r} while waiting for {want!r}")
        return [got[i] for i in range(len(self.conns))]

    def next_line(self) -> float:
        """When to print: 0.2 s after the clients' ticks of each whole second of the run."""
        now = time.monotonic()
        if not self.start_ns:
            return now + 1.0
        ahead = (now * 1e9 - self.start_ns) / 1e9 - 0.2
        return now + (1.0 - ahead % 1.0 if ahead >= 0 else -ahead)

    def send(self, *message: Any) -> None:
        for conn in self.conns:
            conn.send(message)

    def tick(self, i: int, data: dict[str, Any]) -> None:
        self.latest[i] = data
        for sec, b in data["bins"].items():
            h = Histogram.from_json(b["h"])
            self.running.merge(h)
            into = self.series.setdefault(
                int(sec),
                {"ops": 0, "acks": 0, "del": 0, "pres": 0, "h": Histogram(), "ph": Histogram()},
            )
            for key in ("ops", "acks", "del", "pres"):
                into[key] += b[key]
            into["h"].merge(h)
            into["ph"].merge(Histogram.from_json(b["ph"]))

    def line(self) -> None:
        """One progress line: the last whole second's ops and deliveries (by the
        clients' clocks), the p99 so far, connections and errors now."""
        t = (time.monotonic_ns() - self.start_ns) / 1e9 if self.start_ns else 0.0
        ticks = list(self.latest.values())
        connected = sum(d["connected"] for d in ticks)
        errors = sum(sum(d["errors"].values()) for d in ticks)
        last = self.series.get(int(t) - 1, {}) if self.start_ns else {}
        server = ""
        if self.sampler is not None and (point := self.sampler.sample(t)) is not None:
            cpu = sum(point["cpu"].values())
            rss = sum(point["rss_kib"].values()) / 1024
            server = f"  server cpu {cpu:.0f}% rss {rss:.0f} MiB"
        generator = ""
        if self.start_ns and (point := self.generator.sample(t)) is not None:
            generator = f"  generator cpu {max(point['cpu'].values(), default=0):.0f}% (busiest)"
        self.progress(
            f"[{t:6.1f}s] clients {connected}/{self.total}  ops/s {last.get('ops', 0):,}  "
            f"deliveries/s {last.get('del', 0):,}  presence/s {last.get('pres', 0):,}  "
            f"p99 {self.running.percentile(0.99) / 1000:.1f} ms  errors {errors}"
            f"{server}{generator}"
        )

    def stop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(Exception):
                conn.close()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


# -- the checks -----------------------------------------------------------------------------


def _same(a: object, b: object) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@dataclass
class _Tally:
    static: bool
    failures: list[str] = field(default_factory=list)
    totals: Counter[str] = field(default_factory=Counter)

    def fail(self, kind: str, cid: int, what: str) -> None:
        self.totals[kind] += 1
        if len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append(f"client {cid}: {what}")

    def versions(self, c: dict[str, Any], goal: int | None) -> None:
        cid = c["cid"]
        if not c["connected"]:
            self.fail("disconnected", cid, "not connected at the end")
        for kind in ("lost", "dup", "ooo"):
            if c[kind]:
                self.fail(kind, cid, f"{kind} {c[kind]} version(s)")
        if goal is not None and c["last_v"] != goal:
            self.fail("short", cid, f"ended at v{c['last_v']}, the server at v{goal}")
        if c["events"] + c["skipped"] != c["last_v"] - c["first_v"]:
            self.fail("count", cid, f"{c['events']} events for v{c['first_v']}..v{c['last_v']}")

    def state(self, c: dict[str, Any], server: dict[str, dict[str, Any]] | None) -> None:
        if server is None:
            return
        if c["elements"] is not None:
            self.totals["sampled"] += 1
            if not _same(c["elements"], server):
                self.fail("state", c["cid"], "folded elements differ from the server's state")
        if self.static and c["welcome_elements"] >= 0 and c["welcome_elements"] != len(server):
            self.fail("welcome", c["cid"], f"welcome held {c['welcome_elements']} elements")

    def presence(self, c: dict[str, Any], peers: list[int], final_n: dict[int, int]) -> None:
        for peer in peers:
            n = final_n.get(peer, 0)
            got = c["peers"].get(str(peer), -1)
            if peer != c["cid"] and n and got != n:
                self.fail("presence", c["cid"], f"peer {peer}: last presence {got}, sent {n}")


def check(
    clients: Sequence[dict[str, Any]],
    final_v: dict[str, int],
    server: dict[str, dict[str, Any]],
    final_n: dict[int, int],
    *,
    static: bool,
) -> dict[str, Any]:
    """What every client saw against the server's final versions and states.

    A client fails when it lost, doubled or reordered a version; when it ended short of
    (or past) the server's version; when its count of events does not match its versions;
    when its folded elements (sampled clients) differ from the server's state; when its
    welcome's state did not hold the server's elements (``static``: join-storm); or when
    it did not get the last presence of a peer (presence).
    """
    tally = _Tally(static)
    elements = {doc: elements_of(s.get("state") or {}) for doc, s in server.items()}
    peers_of: dict[str, list[int]] = {}
    for c in clients:
        if c["peers"] is not None:
            peers_of.setdefault(c["doc"], []).append(c["cid"])
    for c in clients:
        tally.totals["clients"] += 1
        if c["first_v"] < 0:
            tally.fail("not_welcomed", c["cid"], "never welcomed")
            continue
        tally.versions(c, final_v.get(c["doc"]))
        tally.state(c, elements.get(c["doc"]))
        if c["peers"] is not None:
            tally.presence(c, peers_of.get(c["doc"], []), final_n)
    totals = tally.totals
    bad = {k: v for k, v in totals.items() if k not in ("clients", "sampled")}
    return {
        "ok": not bad,
        "clients_checked": totals["clients"],
        "sampled_states": totals["sampled"],
        "lost": totals["lost"],
        "duplicated": totals["dup"],
        "out_of_order": totals["ooo"],
        "problems": bad,
        "failures": tally.failures,
    }


# -- the run --------------------------------------------------------------------------------


def split(clients: Sequence[ClientSpec], parts: int) -> list[tuple[ClientSpec, ...]]:
    return [tuple(clients[i::parts]) for i in range(parts)]


def run(opts: Options) -> int:
    """The run ``opts`` describes; the exit status (0 passed, 1 a check failed)."""
    if opts.scenario == "max":
        return run_max(opts)
    result = run_once(opts, opts.scenario, opts.knobs)
    return finish(result, write(result, opts.out), opts.progress)


def run_once(opts: Options, scenario: str, knobs: dict[str, Any]) -> dict[str, Any]:
    """One run of ``scenario`` with ``knobs``: its result."""
    say = opts.progress
    setup = build(scenario, knobs, opts.identities, opts.seed)
    owner, owner_token = opts.identities.owner()
    http = Http(opts.url, owner_token)
    started_at = time.time()
    say(
        f"loadtest {scenario}: {len(setup.docs)} document(s), {len(setup.clients)} "
        f"clients over {opts.processes} process(es) against {opts.url}"
    )
    t0 = time.monotonic()
    base_v = create_documents(http, setup, owner)
    say(f"setup: documents, ops and members in {time.monotonic() - t0:.1f} s")
    parts = max(1, min(opts.processes, len(setup.clients)))
    plans = [
        Plan(
            ws_base(opts.url),
            i,
            clients,
            open_concurrency=opts.open_concurrency,
            connect_timeout=opts.connect_timeout,
            drain_s=opts.drain,
        )
        for i, clients in enumerate(split(setup.clients, parts))
    ]
    fleet = Fleet(plans, say)
    try:
        t0 = time.monotonic()
        ready = fleet.collect("ready", opts.connect_timeout + 30)
        say(
            f"connected {sum(r['connected'] for r in ready)} clients in "
            f"{time.monotonic() - t0:.1f} s; running {opts.duration:g} s"
        )
        fleet.sampler = Sampler(opts.server_pids) if opts.server_pids else None
        start_ns = time.monotonic_ns() + 300_000_000
        measure_ns = start_ns + int(opts.warmup * 1e9)
        end_ns = start_ns + int(opts.duration * 1e9)
        fleet.start_ns = start_ns
        fleet.send("go", start_ns, measure_ns, end_ns)
        sent = fleet.collect("sent", opts.duration + opts.drain + opts.connect_timeout + 30)
        acked: dict[str, int] = {}
        final_n: dict[int, int] = {}
        for part in sent:
            for doc, v in part["acked_v"].items():
                acked[doc] = max(acked.get(doc, 0), v)
            final_n.update({int(k): v for k, v in part["presence_n"].items()})
        server, final_v, read_errors = final_states(http, setup.docs, base_v, acked)
        doc_of = {c.cid: c.doc for c in setup.clients}
        by_doc: dict[str, dict[int, int]] = {}
        for cid, n in final_n.items():
            by_doc.setdefault(doc_of[cid], {})[cid] = n
        fleet.send("expect", final_v, by_doc)
        done = fleet.collect("done", opts.drain + 60)
    finally:
        fleet.stop()
    result = assemble(opts, setup, started_at, fleet, done, sent, server, final_v, final_n)
    if read_errors:
        result["correctness"]["ok"] = False
        result["correctness"]["failures"] += read_errors
    return result


def run_max(opts: Options) -> int:
    """Raise the op rate step by step (many-docs runs of ``--duration`` each, by
    ``--factor``) while every step keeps its acks and deliveries within ``--bound-ms`` at
    p99, gets at least 95 % of its rate acknowledged, and passes its correctness check;
    then narrow the rate between the last step kept and the first missed ``--refine``
    times (``app.loadtest.search``)."""
    k = opts.knobs
    writers = k["docs"] * k["editors"]
    result: dict[str, Any] = {}

    def measure(rate: float, label: str) -> dict[str, Any]:
        nonlocal result
        opts.progress(f"max: {label}: {rate:,.0f} ops/s over {writers} writers")
        knobs = {"docs": k["docs"], "editors": k["editors"], "viewers": k["viewers"]}
        result = run_once(opts, "many-docs", {**knobs, "rate": rate / writers})
        s = result["stats"]
        counted = max(opts.duration - opts.warmup, 1e-9)
        step = {
            "rate": round(rate, 1),
            "acked_per_s": round(s["ack_ms"]["count"] / counted, 1),
            "ack_p99_ms": s["ack_ms"]["p99"],
            "delivery_p99_ms": s["latency_ms"]["p99"],
            "errors": s["errors"],
            "correct": result["correctness"]["ok"],
        }
        step["ok"] = (
            step["correct"]
            and max(step["ack_p99_ms"], step["delivery_p99_ms"]) <= k["bound_ms"]
            and step["acked_per_s"] >= 0.95 * rate
        )
        opts.progress(f"max: {label}: {step}")
        return step

    steps, best = find_max(
        measure,
        start=float(k["rate"]),
        factor=float(k["factor"]),
        steps=int(k["steps"]),
        refine=int(k["refine"]),
    )
    result["scenario"] = "max"
    result["config"]["knobs"] = dict(k)
    result["max"] = {"bound_ms": k["bound_ms"], "steps": steps, "best": best}
    status = finish(result, write(result, opts.out), opts.progress)
    if best is None:
        print(f"max: no step kept p99 under {k['bound_ms']:g} ms", flush=True)
    else:
        print(
            f"max: {best['acked_per_s']:,.0f} durable ops/s (rate {best['rate']:,.0f}) with "
            f"p99 ack {best['ack_p99_ms']} ms, delivery {best['delivery_p99_ms']} ms "
            f"(bound {k['bound_ms']:g} ms)",
            flush=True,
        )
    return status if all(s["correct"] for s in steps) else 1


def final_states(
    http: Http, docs: list[str], base_v: dict[str, int], acked: dict[str, int]
) -> tuple[dict[str, dict[str, Any]], dict[str, int], list[str]]:
    targets = {doc: max(base_v[doc], acked.get(doc, 0)) for doc in docs}
    errors: list[str] = []

    def one(doc: str) -> dict[str, Any] | None:
        try:
            return read_state(http, doc, targets[doc])
        except (HttpError, OSError) as exc:
            errors.append(f"document {doc}: the server's state could not be read: {exc}")
            return None

    server = {doc: s for doc, s in zip(docs, Http.each(one, docs), strict=True) if s is not None}
    final_v = {doc: int(server[doc]["v"]) if doc in server else targets[doc] for doc in docs}
    return server, final_v, errors[:MAX_FAILURES_LISTED]


def assemble(
    opts: Options,
    setup: Setup,
    started_at: float,
    fleet: Fleet,
    done: list[dict[str, Any]],
    sent: list[dict[str, Any]],
    server: dict[str, dict[str, Any]],
    final_v: dict[str, int],
    final_n: dict[int, int],
) -> dict[str, Any]:
    hist = {
        key: Histogram.merged(Histogram.from_json(d[key]) for d in done)
        for key in ("latency", "ack", "presence", "connect", "join", "storm")
    }
    errors: Counter[str] = Counter()
    for d in done:
        errors.update(d["errors"])
    unanswered = sum(p["unanswered"] for p in sent)
    if unanswered:
        errors["unanswered"] += unanswered
    clients = [c for d in done for c in d["clients"]]
    correctness = check(clients, final_v, server, final_n, static=setup.scenario == "join-storm")
    if unanswered:
        correctness["ok"] = False
        correctness["failures"].append(f"{unanswered} op(s) got neither an ack nor a reject")
    counted = max(opts.duration - opts.warmup, 1e-9)
    sent_ops = sum(d["sent"] for d in done)
    stats = {
        "clients": len(setup.clients),
        "documents": len(setup.docs),
        "ops_sent": sent_ops,
        "ops_acked": sum(d["acked"] for d in done),
        "ops_per_s": round(sent_ops / opts.duration, 1),
        "deliveries": sum(d["deliveries"] for d in done),
        "deliveries_per_s": round(sum(d["deliveries"] for d in done) / counted, 1),
        "presence_deliveries": sum(d["presences"] for d in done),
        "resumes": sum(c["resumes"] for c in clients),
        "errors": dict(errors),
        "latency_ms": hist["latency"].summary(),
        "ack_ms": hist["ack"].summary(),
        "presence_ms": hist["presence"].summary(),
        "connect_ms": hist["connect"].summary(),
        "join_ms": hist["join"].summary(),
        "welcome_after_start_ms": hist["storm"].summary(),
    }
    bounds: dict[str, Any] = {}
    if setup.scenario == "join-storm":
        storm = hist["storm"]
        met = storm.count == len(setup.clients) and storm.max <= opts.storm_bound * 1e6
        bounds["join_storm"] = {
            "bound_s": opts.storm_bound,
            "welcomed": storm.count,
            "slowest_s": round(storm.max / 1e6, 3),
            "met": met,
        }
    series = [
        {
            "t": sec,
            "ops": b["ops"],
            "acks": b["acks"],
            "deliveries": b["del"],
            **{k: b["h"].summary()[k] for k in ("p50", "p90", "p99", "max")},
            "presence": b["pres"],
            **{f"presence_{k}": b["ph"].summary()[k] for k in ("p50", "p99", "max")},
        }
        for sec, b in sorted(fleet.series.items())
    ]
    return {
        "harness": "atelier loadtest",
        "scenario": setup.scenario,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        "config": {
            "url": opts.url,
            "processes": len(fleet.procs),
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "knobs": setup.knobs,
            "documents": setup.docs[:10],
            "server_pids": opts.server_pids,
        },
        "machine": machine(),
        "stats": stats,
        "bounds": bounds,
        "correctness": correctness,
        "final_versions": dict(list(final_v.items())[:50]),
        "histogram_ms": [[v / 1000, n] for v, n in hist["latency"].buckets()],
        "presence_histogram_ms": [[v / 1000, n] for v, n in hist["presence"].buckets()],
        "welcome_histogram_ms": [[v / 1000, n] for v, n in hist["storm"].buckets()],
        "series": series,
        "server": {
            "series": fleet.sampler.series if fleet.sampler else [],
            "summary": fleet.sampler.summary() if fleet.sampler else {},
        },
        "generator": {"series": fleet.generator.series, "summary": fleet.generator.summary()},
    }


def write(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = result["started_at"].replace(":", "").replace("-", "")
    stem = out / f"loadtest-{result['scenario']}-{stamp}"
    json_path, html_path = stem.with_suffix(".json"), stem.with_suffix(".html")
    json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    html_path.write_text(report.html(result))
    return json_path, html_path


def finish(result: dict[str, Any], paths: tuple[Path, Path], say: Callable[[str], None]) -> int:
    s, c = result["stats"], result["correctness"]
    lat = s["latency_ms"]
    print(
        f"{result['scenario']}: {s['clients']} clients, {s['ops_sent']:,} ops "
        f"({s['ops_per_s']:,.1f}/s), {s['deliveries']:,} deliveries "
        f"({s['deliveries_per_s']:,.0f}/s); latency ms p50 {lat['p50']} p90 {lat['p90']} "
        f"p99 {lat['p99']} p99.9 {lat['p99.9']} max {lat['max']}; ack p99 "
        f"{s['ack_ms']['p99']} ms; errors {s['errors'] or 0}",
        flush=True,
    )
    busiest = max((g["cpu_mean"] or 0 for g in result["generator"]["summary"].values()), default=0)
    if busiest > 85:
        print(
            f"WARNING: a client process used {busiest:.0f}% of a core: the generator may be "
            "the bottleneck; add --processes or run it on another machine",
            flush=True,
        )
    if s["presence_ms"]["count"]:
        p = s["presence_ms"]
        print(f"presence: {p['count']:,} deliveries, p50 {p['p50']} p99 {p['p99']} ms")
    if s["welcome_after_start_ms"]["count"]:
        w = s["welcome_after_start_ms"]
        print(f"join storm: {w['count']} welcomed, p50 {w['p50']} p99 {w['p99']} max {w['max']} ms")
    print(f"result: {paths[0]}\nreport: {paths[1]}", flush=True)
    status = 0
    for name, bound in result["bounds"].items():
        if not bound["met"]:
            print(f"BOUND MISSED: {name}: {bound}", flush=True)
            status = 1
    if not c["ok"]:
        print("!" * 72, file=sys.stderr)
        print(f"CORRECTNESS CHECK FAILED: {c['problems']}", file=sys.stderr)
        for line in c["failures"]:
            print(f"  {line}", file=sys.stderr)
        print("!" * 72, file=sys.stderr, flush=True)
        return 1
    print(
        f"correctness: OK ({c['clients_checked']} clients: every version once, in order, "
        f"no gap, ending at the server's; {c['sampled_states']} folded states equal the "
        "server's)",
        flush=True,
    )
    return status
