"""A local Redis Cluster of three masters (no replicas) on free loopback ports.

    cluster = start_cluster(root)     # root: a folder of the caller's, created if missing
    cluster.url                       # redis://127.0.0.1:<first port>/0 (any node seeds)
    cluster.settings_env()            # {"REDIS_URL": ..., "REDIS_CLUSTER": "on"}
    cluster.slot_owner(key)           # the port of the master that holds ``key``
    cluster.client()                  # app.bus.create_redis(url, cluster=True)
    cluster.flush_all()               # FLUSHALL on every master
    cluster.restart_master(port)      # SIGKILL one master, start it again empty
    cluster.move_slot(slot, port)     # migrate one slot and its keys to another master
    cluster.stop()                    # kill every node, remove the folder (idempotent)

Each node is ``redis-server --cluster-enabled yes`` with nothing persisted; the slots
are assigned by ``redis-cli --cluster create … --cluster-replicas 0 --cluster-yes``, and
``start_cluster`` returns once every node reports ``cluster_state:ok`` and agrees on the
slot map. tests/conftest.py wraps it in fixtures (``redis_cluster`` per module,
``cluster_redis`` and ``cluster_prefix`` per test); a test that needs the cluster for a
whole session can call ``start_cluster`` from a fixture of its own (a plain function).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.bus import Redis, create_redis

__all__ = ["RedisCluster", "start_cluster"]

_MASTERS = 3
_START_WAIT = 30.0


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports whose cluster-bus port (+10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _cli(port: int, *args: str, timeout: float = 10.0) -> str:
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result.stdout


@dataclass
class RedisCluster:
    """A running cluster; ``stop()`` ends it and removes its folder."""

    root: Path
    ports: list[int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A URL of one node: the cluster client finds the others from it."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def settings_env(self) -> dict[str, str]:
        """The settings that point the app at this cluster."""
        return {"REDIS_URL": self.url, "REDIS_CLUSTER": "on"}

    def keyslot(self, key: str) -> int:
        return int(_cli(self.ports[0], "CLUSTER", "KEYSLOT", key).strip())

    def slot_owner(self, key: str) -> int:
        """The port of the master that serves ``key``'s slot, from the slot map."""
        slot = self.keyslot(key)
        for start, end, port in self.slot_map():
            if start <= slot <= end:
                return port
        raise AssertionError(f"slot {slot} of {key!r} is not served")

    def owners(self, keys: Iterable[str]) -> set[int]:
        """The masters (ports) that hold ``keys``."""
        return {self.slot_owner(key) for key in keys}

    def client(self) -> Redis:
        """A cluster client of ``app.bus.create_redis`` (bytes); the caller closes it."""
        return create_redis(self.url, cluster=True, socket_timeout=5, connect_timeout=2)

    def slot_map(self) -> list[tuple[int, int, int]]:
        """``(first slot, last slot, master port)`` of every range (CLUSTER SHARDS)."""
        lines = _cli(self.ports[0], "CLUSTER", "NODES").splitlines()
        ranges: list[tuple[int, int, int]] = []
        for line in lines:
            parts = line.split()
            if len(parts) < 8 or "master" not in parts[2]:
                continue
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            for span in parts[8:]:
                if span.startswith("["):
                    continue  # a slot being migrated
                first, _, last = span.partition("-")
                ranges.append((int(first), int(last or first), port))
        return sorted(ranges)

    def spawn(self, port: int) -> subprocess.Popen[bytes]:
        """Start the node of ``port`` (its folder and ``nodes.conf`` under ``root``)."""
        node_dir = self.root / str(port)
        return subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node_dir / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
                "--appendonly",
                "no",
                "--save",
                "",
                "--dir",
                str(node_dir),
                "--logfile",
                str(node_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def node_id(self, port: int) -> str:
        return _cli(port, "CLUSTER", "MYID").strip()

    def restart_master(self, port: int) -> None:
        """SIGKILL the master on ``port`` and start it again at once: it comes back
        with its slots (``nodes.conf``) and none of its data (nothing persisted)."""
        index = self.ports.index(port)
        proc = self.procs[index]
        proc.kill()
        proc.wait(10)
        self.procs[index] = self.spawn(port)
        deadline = time.monotonic() + _START_WAIT
        _wait_port(self.procs[index], port, deadline)
        _wait_ready(self, deadline)

    def move_slot(self, slot: int, to_port: int) -> None:
        """Move ``slot`` and its keys to the master on ``to_port`` (what ``redis-cli
        --cluster reshard`` does for one slot); clients get ``ASK``, then ``MOVED``."""
        from_port = next(port for first, last, port in self.slot_map() if first <= slot <= last)
        if from_port == to_port:
            return
        source, target = self.node_id(from_port), self.node_id(to_port)
        _cli(to_port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source)
        _cli(from_port, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target)
        while True:
            keys = _cli(from_port, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split()
            if not keys:
                break
            # REPLACE: an entry written at the target under ASK meanwhile is older.
            _cli(
                from_port,
                "MIGRATE",
                "127.0.0.1",
                str(to_port),
                "",
                "0",
                "5000",
                "REPLACE",
                "KEYS",
                *keys,
            )
        for port in (to_port, from_port, *self.ports):
            _cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target)
        _wait_ready(self, time.monotonic() + _START_WAIT)

    def flush_all(self) -> None:
        """FLUSHALL on every master (what a cluster that lost its data looks like)."""
        for port in self.ports:
            _cli(port, "FLUSHALL")

    def stop(self) -> None:
        procs, self.procs = self.procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def _wait_port(proc: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    while True:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.02)


def _ready(cluster: RedisCluster) -> bool:
    """Every node says ``cluster_state:ok`` and sees every slot assigned."""
    for port in cluster.ports:
        info = _cli(port, "CLUSTER", "INFO")
        if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
            return False
        if f"cluster_known_nodes:{len(cluster.ports)}" not in info:
            return False
    return True


def _wait_ready(cluster: RedisCluster, deadline: float) -> None:
    while not _ready(cluster):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster on {cluster.ports} did not reach state ok")
        time.sleep(0.05)


def start_cluster(root: Path, masters: int = _MASTERS) -> RedisCluster:
    """Start ``masters`` nodes under ``root`` and join them into one cluster."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server or redis-cli is not installed")
    root.mkdir(parents=True, exist_ok=True)
    cluster = RedisCluster(root, _free_ports(masters))
    try:
        deadline = time.monotonic() + _START_WAIT
        for port in cluster.ports:
            (root / str(port)).mkdir()
            cluster.procs.append(cluster.spawn(port))
        for proc, port in zip(cluster.procs, cluster.ports, strict=True):
            _wait_port(proc, port, deadline)
        created = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in cluster.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=_START_WAIT,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}")
        _wait_ready(cluster, deadline)
    except BaseException:
        cluster.stop()
        raise
    return cluster
