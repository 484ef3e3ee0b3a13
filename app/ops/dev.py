"""``python -m app dev``: the development processes under one supervisor (``make run``).

The supervisor starts each child (``python -m app serve``, ``relay``, one read
``worker`` and, unless snapshots are off, ``snapshotter``), restarts a child
that dies, with a backoff that doubles from 0.5 s to 30 s and resets once a child has
stayed up for 10 s, and prints the URL of the web page once the gateway accepts
connections.

Signals: SIGINT (Ctrl-C) and SIGTERM stop everything cleanly. Children run in their own
process group, so a Ctrl-C in the terminal reaches only the supervisor, which forwards
the same signal once to each child and waits for it to drain (uvicorn treats a second
SIGINT as "exit now", which is why the terminal's copy must not reach the children
too). A child still running ``stop_timeout`` seconds later is killed; a second signal to
the supervisor kills at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import structlog

from app.config import Settings

__all__ = ["Child", "Supervisor", "children", "page_url", "run"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Child:
    """One supervised process: its name, its argv and the address that answers once ready."""

    name: str
    argv: tuple[str, ...]
    ready: tuple[str, int] | None = None


def _connect_host(host: str) -> str:
    """The address to reach a server bound to ``host`` from this machine."""
    if host in {"", "0.0.0.0"}:
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def page_url(settings: Settings) -> str:
    """The URL of the web page served by the gateway of ``settings``."""
    host = _connect_host(settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/"


def children(settings: Settings) -> tuple[Child, ...]:
    """The processes of a development setup."""
    python = (sys.executable, "-m", "app")
    serve = Child("serve", (*python, "serve"), ready=(_connect_host(settings.host), settings.port))
    relay = Child("relay", (*python, "relay"))
    worker = Child("worker", (*python, "worker"))
    if settings.snapshot_every == 0:
        return (serve, relay, worker)
    return (serve, relay, worker, Child("snapshotter", (*python, "snapshotter")))


def _answers(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=0.5):
            return True
    except OSError:
        return False


class Supervisor:
    """Keep ``children`` running until ``stop()``; see the module docstring."""

    def __init__(
        self,
        children: Sequence[Child],
        *,
        url: str | None = None,
        out: TextIO | None = None,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        stable_after: float = 10.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self._children = tuple(children)
        self._url = url
        self._out = out or sys.stdout
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._stable_after = stable_after
        self._stop_timeout = stop_timeout
        self._stopping = asyncio.Event()
        self._signal = signal.SIGTERM
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self.starts: dict[str, int] = {child.name: 0 for child in self._children}

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop every child with ``sig``; called a second time, kill them now."""
        if self._stopping.is_set():
            log.warning("killing_children", signal=sig.name)
            for proc in self._procs.values():
                if proc.returncode is None:
                    proc.kill()
            return
        log.info("stopping", signal=sig.name)
        self._signal = sig
        self._stopping.set()

    async def run(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; 0 after a clean stop, 1 when the gateway port is taken."""
        for child in self._children:
            if child.ready is not None and await asyncio.to_thread(_answers, child.ready):
                host, port = child.ready
                print(
                    f"atelier: something already listens on {host}:{port}; stop it or set "
                    "APP_PORT to a free port",
                    file=sys.stderr,
                )
                return 1
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop, sig)
        try:
            async with asyncio.TaskGroup() as group:
                for child in self._children:
                    group.create_task(self._keep(child))
        finally:
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        log.info("stopped")
        return 0

    async def _keep(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        backoff = self._initial_backoff
        while not self._stopping.is_set():
            started = loop.time()
            code = await self._run_once(child)
            if code is None:  # stopped by us
                return
            ran = loop.time() - started
            if ran >= self._stable_after:
                backoff = self._initial_backoff
            log.warning(
                "child_exited",
                child=child.name,
                code=code,
                ran_seconds=round(ran, 1),
                restart_in_seconds=backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _run_once(self, child: Child) -> int | None:
        """Start ``child`` and wait: its exit code, or None once it was stopped by us."""
        # process_group=0: the child is not in the terminal's foreground group, so only
        # the supervisor receives Ctrl-C and each child gets exactly one signal.
        proc = await asyncio.create_subprocess_exec(
            *child.argv, stdin=subprocess.DEVNULL, process_group=0
        )
        self._procs[child.name] = proc
        self.starts[child.name] += 1
        log.info("child_started", child=child.name, pid=proc.pid)
        exited = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(self._stopping.wait())
        announce = (
            asyncio.ensure_future(self._announce(child.ready, proc))
            if child.ready is not None
            else None
        )
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if proc.returncode is None:
                await self._terminate(child, proc)
                return None
            return None if self._stopping.is_set() else proc.returncode
        finally:
            for task in (exited, stopping, announce):
                if task is not None:
                    task.cancel()
            if proc.returncode is None:  # cancelled or crashed: never leave an orphan
                proc.kill()
                await proc.wait()

    async def _terminate(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        proc.send_signal(self._signal)
        try:
            code = await asyncio.wait_for(proc.wait(), self._stop_timeout)
        except TimeoutError:
            log.warning("child_killed", child=child.name, after_seconds=self._stop_timeout)
            proc.kill()
            code = await proc.wait()
        log.info("child_stopped", child=child.name, code=code)

    async def _announce(self, address: tuple[str, int], proc: asyncio.subprocess.Process) -> None:
        while proc.returncode is None:
            if await asyncio.to_thread(_answers, address):
                if self._url is not None:
                    print(f"Atelier is running at {self._url}", file=self._out, flush=True)
                return
            await asyncio.sleep(0.1)


def run(settings: Settings) -> int:
    """Supervise the development processes until SIGINT or SIGTERM."""
    supervisor = Supervisor(children(settings), url=page_url(settings))
    return asyncio.run(supervisor.run())
