"""``python -m app chaos``: set up, load, inject faults, settle, check, tear down.

The run's folder (a temp dir) holds the PostgreSQL cluster, Redis's files and each app
process's log; everything started is stopped and the folder removed at the end, on
failure or Ctrl-C too (``--keep`` leaves the folder for a look at the logs).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg
import orjson

from app.chaos.checks import Check, check_clients, check_ops, check_versions, check_views
from app.chaos.clients import Ledger, Tally, WsClient
from app.chaos.faults import Fault, plan
from app.chaos.procs import Proc
from app.chaos.proxy import TcpProxy
from app.chaos.services import PgCluster, RedisServer
from app.loadtest.http import Http, HttpError
from app.ops.pgtools import free_port
from app.store.migrate import ensure_database, migrate
from app.tokens import issue_token

__all__ = ["Options", "run"]

WORKERS = 2


@dataclass(frozen=True, slots=True)
class Options:
    duration: float
    seed: int
    faults: list[str]
    gateways: int = 2
    editors: int = 6
    viewers: int = 4
    reconnecting: int = 2
    docs: int = 3
    rate: float = 4.0  # ops a second per editor
    every: float = 6.0  # seconds between faults on average
    settle: float = 90.0  # seconds the settle phase may take at most
    json_path: Path | None = None
    keep: bool = False
    log_level: str = "info"
    undo_depth: int = 100


@dataclass(slots=True)
class Injected:
    fault: Fault
    started: float  # seconds after the start of the load
    took: float
    error: str = ""


@dataclass(slots=True)
class Deployment:
    root: Path
    pg: PgCluster
    redis: RedisServer
    pg_proxy: TcpProxy | None = None
    redis_proxy: TcpProxy | None = None
    gateway_ports: list[int] = field(default_factory=list)
    client_proxies: list[TcpProxy] = field(default_factory=list)
    gateways: list[Proc] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)
    relay: Proc | None = None
    snapshotter: Proc | None = None

    @property
    def procs(self) -> list[Proc]:
        singles = [p for p in (self.relay, self.snapshotter) if p is not None]
        return [*self.gateways, *singles, *self.workers]


class Run:
    def __init__(self, opts: Options, out: TextIO) -> None:
        self.opts = opts
        self.out = out
        self.rng = random.Random(opts.seed)
        self.tally = Tally()
        self.ledger = Ledger()
        self.clients: list[WsClient] = []
        self.injected: list[Injected] = []
        self.t0 = time.monotonic()
        self.load_t0 = 0.0
        self.secret = secrets.token_urlsafe(32)
        self.checks: list[Check] = []
        self.figures: dict[str, Any] = {}
        self.not_ready: list[str] = []  # gateways whose /readyz stayed 503 after the faults

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        print(f"{stamp} [{time.monotonic() - self.t0:6.1f}s] {text}", file=self.out, flush=True)

    # -- set-up --------------------------------------------------------------------------

    async def deploy(self, dep: Deployment) -> None:
        self.say(f"run folder {dep.root}")

        async def pg() -> None:
            await dep.pg.init()
            await dep.pg.start()

        await asyncio.gather(pg(), dep.redis.start())
        dep.pg_proxy = await TcpProxy("127.0.0.1", dep.pg.port).start()
        dep.redis_proxy = await TcpProxy("127.0.0.1", dep.redis.port).start()
        self.say(
            f"PostgreSQL on :{dep.pg.port} (proxy :{dep.pg_proxy.port}),"
            f" Redis on :{dep.redis.port} (proxy :{dep.redis_proxy.port})"
        )
        await ensure_database(dep.pg.dsn())
        applied = await migrate(dep.pg.dsn())
        self.say(f"migrated ({len(applied)} migrations)")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "APP_ENV": "prod",
            "APP_SECRET": self.secret,
            "DATABASE_URL": dep.pg.dsn(dep.pg_proxy.port),
            "REDIS_URL": f"redis://127.0.0.1:{dep.redis_proxy.port}/0",
            "REDIS_PREFIX": "chaos:",
            "APP_HOST": "127.0.0.1",
            "APP_DATA_DIR": str(dep.root / "data"),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": self.opts.log_level,
            "UNDO_DEPTH": str(self.opts.undo_depth),
            "DB_POOL_SIZE": "4",
            "SNAPSHOT_EVERY": "50",
            "RELAY_METRICS_PORT": "off",
            "SNAPSHOTTER_METRICS_PORT": "off",
            "WORKER_METRICS_PORT": "off",
        }
        logs = dep.root / "logs"
        for i in range(self.opts.gateways):
            port = free_port()
            dep.gateway_ports.append(port)
            dep.gateways.append(
                Proc(
                    f"gateway-{i}",
                    ["serve"],
                    {**env, "APP_PORT": str(port)},
                    logs / f"gateway-{i}.log",
                )
            )
            dep.client_proxies.append(await TcpProxy("127.0.0.1", port).start())
        dep.relay = Proc("relay", ["relay"], env, logs / "relay.log")
        dep.snapshotter = Proc("snapshotter", ["snapshotter"], env, logs / "snapshotter.log")
        for i in range(WORKERS):
            dep.workers.append(
                Proc(f"worker-{i}", ["worker", "--id", f"chaos-{i}"], env, logs / f"worker-{i}.log")
            )
        for proc in dep.procs:
            await proc.start()
        for said in await asyncio.gather(*(self.wait_ready(port) for port in dep.gateway_ports)):
            if said:
                raise RuntimeError(said)
        self.say(
            f"{len(dep.gateways)} gateways, relay, {len(dep.workers)} workers, snapshotter running"
        )

    async def wait_ready(self, port: int, within: float = 120) -> str:
        """Wait for ``/readyz`` 200; "" once ready, else the last answer after ``within`` s."""
        deadline = time.monotonic() + within
        url = f"http://127.0.0.1:{port}/readyz"

        def ask() -> str:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    return "" if answer.status == 200 else f"{answer.status}"
            except urllib.error.HTTPError as exc:
                return f"{exc.code} {exc.read().decode(errors='replace')[:300]}"
            except (OSError, urllib.error.URLError) as exc:
                return f"{type(exc).__name__}: {exc}"

        while said := await asyncio.to_thread(ask):
            if time.monotonic() > deadline:
                return f"the gateway on :{port} was not ready in {within:.0f} s: {said}"
            await asyncio.sleep(0.2)
        return ""

    def token(self, user: str) -> str:
        return issue_token(self.secret, user, name=None, ttl=24 * 3600, now=time.time())

    async def populate(self, dep: Deployment) -> None:
        """Documents, a layer, each editor's rectangle, members; then the clients."""
        opts = self.opts
        http = Http(f"http://127.0.0.1:{dep.gateway_ports[0]}", self.token("owner"), timeout=30)
        docs = [f"chaos-{i}" for i in range(opts.docs)]
        editors = [(f"ed{i}", docs[i % len(docs)]) for i in range(opts.editors)]
        viewers = [(f"vw{i}", docs[i % len(docs)]) for i in range(opts.viewers)]
        movers = [(f"rc{i}", docs[i % len(docs)]) for i in range(opts.reconnecting)]

        def setup(doc: str) -> None:
            http.call("POST", "/api/documents", {"title": f"chaos {doc}", "id": doc})
            ops: list[tuple[str, dict[str, Any]]] = [
                ("setup-layer", {"kind": "layer.add", "layer": "L", "name": "chaos"})
            ]
            for name, d in editors:
                if d == doc:
                    ops.append(
                        (
                            f"setup-{name}",
                            {
                                "kind": "element.add",
                                "element": f"e-{name}",
                                "layer": "L",
                                "shape": "rect",
                                "props": {"x": 0, "y": 0, "w": 20, "h": 20},
                            },
                        )
                    )
            for op_id, op in ops:
                v = int(
                    http.call("POST", f"/api/documents/{doc}/ops", {"id": op_id, "op": op})["v"]
                )
                self.ledger.ack(doc, "owner", op_id, v)
            for name, d in editors:
                if d == doc:
                    http.call("PUT", f"/api/documents/{doc}/members/{name}", {"role": "editor"})
            for name, d in [*viewers, *movers]:
                if d == doc:
                    http.call("PUT", f"/api/documents/{doc}/members/{name}", {"role": "viewer"})

        for doc in docs:
            await asyncio.to_thread(setup, doc)
        urls = [f"ws://127.0.0.1:{p.port}" for p in dep.client_proxies]

        def client(name: str, doc: str, **kw: Any) -> WsClient:
            rng = random.Random(f"{opts.seed}-{name}")
            return WsClient(
                name, doc, name, self.token(name), urls, rng, self.tally, self.ledger, **kw
            )

        self.clients = [
            *(client(n, d, rate=opts.rate, element=f"e-{n}") for n, d in editors),
            *(client(n, d) for n, d in viewers),
            *(client(n, d, drop_every=3.0) for n, d in movers),
        ]
        self.say(
            f"{len(docs)} documents; {len(editors)} editors at {opts.rate:g} ops/s,"
            f" {len(viewers)} viewers, {len(movers)} reconnecting viewers"
        )

    # -- faults --------------------------------------------------------------------------

    async def inject(self, dep: Deployment, faults: list[Fault]) -> None:
        for fault in faults:
            await asyncio.sleep(max(0.0, self.load_t0 + fault.at - time.monotonic()))
            started = time.monotonic()
            what = fault.describe(len(dep.gateways), len(dep.workers))
            self.say(f"inject {what} (hold {fault.hold:g} s)")
            error = ""
            try:
                await self.apply(dep, fault)
            except Exception as exc:  # a fault that could not be applied is reported
                error = f"{type(exc).__name__}: {exc}"
                self.say(f"  {what} failed: {error}")
            took = time.monotonic() - started
            self.injected.append(Injected(fault, started - self.load_t0, took, error))
            if not error:
                self.say(f"  {what} restored after {took:.1f} s")

    async def apply(self, dep: Deployment, fault: Fault) -> None:
        kind, hold = fault.kind, fault.hold
        assert dep.pg_proxy is not None and dep.redis_proxy is not None
        if kind.startswith("kill-"):
            proc = {
                "kill-gateway": dep.gateways[fault.target % len(dep.gateways)],
                "kill-worker": dep.workers[fault.target % len(dep.workers)],
                "kill-relay": dep.relay,
            }[kind]
            assert proc is not None
            await proc.kill()
            await asyncio.sleep(hold)
            await proc.start()
        elif kind == "redis-restart-empty":
            await dep.redis.kill()
            await asyncio.sleep(hold)
            await dep.redis.start()
        elif kind.startswith("pg-restart-"):
            try:
                await dep.pg.stop(kind.removeprefix("pg-restart-"))
                await asyncio.sleep(hold)
            finally:
                await dep.pg.start()
        elif kind == "cut-client":
            dep.client_proxies[fault.target % len(dep.client_proxies)].drop()
        elif kind in ("cut-pg", "cut-redis"):
            proxy = dep.pg_proxy if kind == "cut-pg" else dep.redis_proxy
            proxy.cut()
            try:
                await asyncio.sleep(hold)
            finally:
                proxy.restore()
        else:
            raise ValueError(f"unknown fault {kind}")

    # -- load and settle -----------------------------------------------------------------

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(10)
            t = self.tally
            connected = sum(1 for c in self.clients if c.ready.is_set())
            self.say(
                f"load: {t.sent} ops sent, {t.acked} acked, {t.unavailable} unavailable,"
                f" {t.resent} re-sent, {t.reconnects} reconnects,"
                f" {connected}/{len(self.clients)} connected"
            )

    async def wait_for(self, what: str, done: Any, within: float) -> bool:
        deadline = time.monotonic() + within
        while not done():
            if time.monotonic() > deadline:
                self.say(f"settle: gave up waiting for {what} after {within:.0f} s")
                return False
            await asyncio.sleep(0.2)
        return True

    async def settle(self, dep: Deployment) -> dict[str, int]:
        """Everything restored and running, answers in, clients caught up; final versions."""
        assert dep.pg_proxy is not None and dep.redis_proxy is not None
        for proxy in (dep.pg_proxy, dep.redis_proxy, *dep.client_proxies):
            proxy.restore()
        for proc in dep.procs:
            if not proc.running:
                await proc.start()
        started = time.monotonic()
        for i, said in enumerate(
            await asyncio.gather(
                *(self.wait_ready(port, self.opts.settle) for port in dep.gateway_ports)
            )
        ):
            if said:
                self.not_ready.append(f"gateway-{i}: {said}")
                self.say(said)
        budget = self.opts.settle
        await self.wait_for(
            "every op's answer", lambda: not any(c.pending for c in self.clients), budget
        )
        async with asyncio.timeout(60):
            conn = await asyncpg.connect(dep.pg.dsn())
        try:
            rows = await conn.fetch("SELECT id, v FROM documents")
        finally:
            await conn.close()
        final = {str(r["id"]): int(r["v"]) for r in rows}
        left = max(10.0, budget - (time.monotonic() - started))
        await self.wait_for(
            "the clients to catch up",
            lambda: all(c.ready.is_set() and c.last_v >= final[c.doc] for c in self.clients),
            left,
        )
        self.say(f"settled in {time.monotonic() - started:.1f} s")
        return final

    async def read_states(self, dep: Deployment, final: dict[str, int]) -> dict[str, Any]:
        http = Http(f"http://127.0.0.1:{dep.gateway_ports[0]}", self.token("owner"), timeout=30)
        states: dict[str, Any] = {}
        for doc, v in final.items():
            deadline = time.monotonic() + self.opts.settle
            while True:
                try:
                    states[doc] = await asyncio.to_thread(
                        http.call, "GET", f"/api/documents/{doc}?min_v={v}"
                    )
                    break
                except (HttpError, OSError) as exc:
                    if time.monotonic() > deadline:
                        self.say(f"read side: {doc} not at v{v}: {exc}")
                        break
                    await asyncio.sleep(0.5)
        return states

    # -- the whole run ---------------------------------------------------------------------

    async def main(self, root: Path) -> int:
        opts = self.opts
        dep = Deployment(root, PgCluster(root / "pg"), RedisServer(root / "redis"))
        tasks: list[asyncio.Task[None]] = []
        # SIGTERM stops the run as Ctrl-C does (asyncio.run cancels on SIGINT): the
        # teardown below runs either way.
        main = asyncio.current_task()
        assert main is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        try:
            try:
                await self.deploy(dep)
                await self.populate(dep)
            except (OSError, RuntimeError, HttpError, asyncpg.PostgresError) as exc:
                print(f"\n!!! CHAOS RUN FAILED: set-up: {exc}", file=self.out)
                for proc in dep.procs:
                    if proc.exits or not proc.running:
                        print(f"--- {proc.name} (last lines)\n{proc.tail()}", file=self.out)
                return 1
            faults = plan(
                opts.seed,
                opts.duration,
                opts.faults,
                gateways=len(dep.gateways),
                workers=len(dep.workers),
                every=opts.every,
            )
            self.say(f"load for {opts.duration:g} s with {len(faults)} faults (seed {opts.seed})")
            self.load_t0 = time.monotonic()
            drops: list[asyncio.Task[None]] = []
            for c in self.clients:
                tasks.append(asyncio.create_task(c.run()))
                if c.rate:
                    tasks.append(asyncio.create_task(c.edit()))
                if c.drop_every:
                    drops.append(asyncio.create_task(c.drop_loop()))
            tasks += drops
            ticker = asyncio.create_task(self.ticker())
            tasks.append(ticker)
            injector = asyncio.create_task(self.inject(dep, faults))
            tasks.append(injector)
            await asyncio.sleep(opts.duration)
            for c in self.clients:
                c.stopping = True
            await injector
            for task in (ticker, *drops):
                task.cancel()
            self.say("load over; settling (restore everything, answers, catch-up)")
            final = await self.settle(dep)
            states = await self.read_states(dep, final)
            checked = time.monotonic()
            await self.check(dep, states)
            self.say(f"checked in {time.monotonic() - checked:.1f} s")
            return self.report(dep)
        finally:
            for task in tasks:
                task.cancel()
            await self.teardown(dep, tasks)

    async def check(self, dep: Deployment, states: dict[str, Any]) -> None:
        pool = await asyncpg.create_pool(dep.pg.dsn(), min_size=1, max_size=2)
        try:
            async with pool.acquire() as conn:
                ops_check, ops = await check_ops(conn, self.ledger)
                versions_check, versions = await check_versions(conn)
            clients_check, clients = check_clients(self.clients, states)
            views_check = await check_views(pool, self.opts.undo_depth)
        finally:
            await pool.close()
        unanswered = sum(len(c.pending) for c in self.clients)
        exits = {p.name: p.exits for p in dep.procs if p.exits}
        injected_errors = [f"{i.fault.kind}: {i.error}" for i in self.injected if i.error]
        self.checks = [
            ops_check,
            versions_check,
            clients_check,
            views_check,
            Check(
                "every op answered",
                unanswered == 0,
                f"{unanswered} ops without a final answer after the settle phase",
                [
                    f"{c.name} ({'connected' if c.ready.is_set() else 'not connected'}):"
                    f" {', '.join(list(c.pending)[:5])}"
                    for c in self.clients
                    if c.pending
                ],
            ),
            Check(
                "every gateway ready after the faults",
                not self.not_ready,
                f"{len(self.not_ready)} of {len(dep.gateways)} gateways not ready (/readyz)",
                self.not_ready,
            ),
            Check(
                "no process died on its own",
                not exits,
                f"{sum(len(v) for v in exits.values())} exits nobody asked for",
                [f"{name}: exit statuses {codes}" for name, codes in exits.items()],
            ),
            Check(
                "every fault applied",
                not injected_errors,
                f"{len(self.injected)} injected, {len(injected_errors)} failed",
                injected_errors,
            ),
        ]
        t = self.tally
        self.figures = {
            "duration_s": self.opts.duration,
            "seed": self.opts.seed,
            "gateways": len(dep.gateways),
            "workers": len(dep.workers),
            "clients": {
                "editors": self.opts.editors,
                "viewers": self.opts.viewers,
                "reconnecting": self.opts.reconnecting,
                "docs": self.opts.docs,
                "rate": self.opts.rate,
            },
            "ops": {
                "sent": t.sent,
                "acked": t.acked,
                "acked_with_setup": ops["acked"],
                "reacked": t.reacked,
                "in_doubt": t.in_doubt,
                "unavailable": t.unavailable,
                "resent": t.resent,
                "rejected": dict(t.rejects),
                "unanswered": unanswered,
            },
            "errors": dict(t.errors),
            "reconnects": t.reconnects,
            "drops": t.drops,
            "faults": dict(Counter(i.fault.kind for i in self.injected)),
            "injected": [
                {
                    "at_s": round(i.started, 2),
                    "kind": i.fault.kind,
                    "target": i.fault.target,
                    "hold_s": i.fault.hold,
                    "took_s": round(i.took, 2),
                    "error": i.error or None,
                }
                for i in self.injected
            ],
            "versions": sum(versions.values()),
            "lost": ops["lost"],
            "duplicates": ops["duplicates"],
            "wrong_v": ops["wrong_v"],
            "ack_mismatch": ops["ack_mismatch"],
            "not_converged": clients["not_converged"],
            "delivery_faults": clients["delivery"],
            "process_exits": {k: v for k, v in exits.items()},
            "process_starts": {p.name: p.starts for p in dep.procs},
            "failed_starts": {p.name: p.failed_starts for p in dep.procs if p.failed_starts},
            "checks": [
                {"name": c.name, "ok": c.ok, "figure": c.figure, "details": c.details}
                for c in self.checks
            ],
        }
        self.figures["ok"] = all(c.ok for c in self.checks)

    def report(self, dep: Deployment) -> int:
        f = self.figures
        ops = f["ops"]
        rows = [
            ("load", f"{f['duration_s']:g} s, seed {f['seed']}, {f['gateways']} gateways"),
            ("ops sent / acked", f"{ops['sent']} / {ops['acked']}"),
            ("in doubt at a lost connection", str(ops["in_doubt"])),
            (
                "load held",
                f"{ops['acked'] / f['duration_s']:.1f} acked ops/s"
                f" ({f['clients']['editors'] * f['clients']['rate']:g} ops/s asked for)",
            ),
            ("unavailable answers", str(ops["unavailable"])),
            ("re-sends (same id)", str(ops["resent"])),
            ("final rejects", ", ".join(f"{k} {v}" for k, v in ops["rejected"].items()) or "0"),
            ("reconnects", f"{f['reconnects']} ({f['drops']} on purpose)"),
            ("faults", ", ".join(f"{k} {v}" for k, v in sorted(f["faults"].items())) or "0"),
            (
                "failed starts",
                ", ".join(f"{k} {v}" for k, v in f["failed_starts"].items()) or "0",
            ),
            ("lost / duplicates", f"{f['lost']} / {f['duplicates']}"),
            ("not converged", str(f["not_converged"])),
        ]
        width = max(len(k) for k, _ in rows)
        print("", file=self.out)
        for key, value in rows:
            print(f"  {key:<{width}}  {value}", file=self.out)
        print("", file=self.out)
        for check in self.checks:
            mark = "ok  " if check.ok else "FAIL"
            print(f"  {mark} {check.name}: {check.figure}", file=self.out)
            for line in check.details:
                print(f"         {line}", file=self.out)
        if self.opts.json_path is not None:
            self.opts.json_path.write_bytes(orjson.dumps(f, option=orjson.OPT_INDENT_2))
        if not f["ok"]:
            bad = ", ".join(c.name for c in self.checks if not c.ok)
            print(f"\n!!! CHAOS RUN FAILED: {bad}", file=self.out)
            for proc in dep.procs:
                for code, words in zip(proc.exits, proc.last_words, strict=True):
                    print(f"--- {proc.name} exited {code}; its last lines:\n{words}", file=self.out)
            return 1
        print("\nchaos: every check passed", file=self.out)
        return 0

    async def teardown(self, dep: Deployment, tasks: list[asyncio.Task[None]]) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
                await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(p.stop() for p in dep.procs), return_exceptions=True)
        for proxy in (dep.pg_proxy, dep.redis_proxy, *dep.client_proxies):
            if proxy is not None:
                with contextlib.suppress(Exception):
                    await proxy.close()
        with contextlib.suppress(Exception):
            await dep.redis.kill()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(dep.pg.stop_now)
        if self.opts.keep:
            self.say(f"torn down; kept the run folder {dep.root}")
        else:
            shutil.rmtree(dep.root, ignore_errors=True)
            self.say("torn down")


def run(opts: Options, out: TextIO | None = None) -> int:
    """0 when every check passed, 1 when one failed."""
    root = Path(tempfile.mkdtemp(prefix="atelier-chaos-"))
    root.chmod(0o755)  # the cluster's owner (postgres, when we are root) goes through
    (root / "logs").mkdir()
    try:
        return asyncio.run(Run(opts, out or sys.stdout).main(root))
    except asyncio.CancelledError:  # SIGTERM: stopped, and torn down
        print("chaos: stopped (SIGTERM)", file=out or sys.stdout)
        return 143
