"""One ``python -m app ...`` process for a test, its log lines collected as they come."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["ROOT", "AppProcess", "log_records", "wait_until"]

ROOT = Path(__file__).resolve().parents[2]


class AppProcess:
    """``python -m app *argv`` in the repository with ``env`` (and nothing else)."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str = "") -> None:
        self.argv = argv
        self.env = env
        self.name = name or " ".join(argv)
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> AppProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            *self.argv,
            env=self.env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace"))

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def end(self, sig: signal.Signals = signal.SIGTERM, within: float = 15) -> int:
        """Send ``sig`` and wait for the exit status; a process still running ``within``
        seconds later is killed and the test fails with its output."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            async with asyncio.timeout(within):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(
                f"{self.name}: no stop within {within} s:\n{self.output}"
            ) from None
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self) -> None:
        """SIGTERM and wait, killing it if it lingers; for fixtures' teardown (no raise)."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader


def log_records(process: AppProcess) -> list[dict[str, Any]]:
    """The process's JSON log lines, parsed (other lines are left out)."""
    found = []
    for line in list(process.lines):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], within: float = 30.0, what: str = ""
) -> None:
    """Until ``check()`` is true, polling; fails after ``within`` seconds with ``what``."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what or check}")
        await asyncio.sleep(0.02)
