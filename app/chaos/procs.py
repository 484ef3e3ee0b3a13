"""The app's processes of a chaos run: ``python -m app ROLE`` each, its output in a file.

A ``Proc`` can be SIGKILLed and started again. One that exits without being told to
is counted as a finding (``exits``: a process should ride out a lost connection by
reconnecting, not die) and started again after a short pause, as a supervisor would;
except a gateway whose start-up failed because its store did not answer, which fails
fast by design (``failed_starts``, reported, not a finding).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["Proc"]

_REPO = Path(__file__).resolve().parents[2]
_START = "--- chaos: start "
_LAST_LINES = 25
# uvicorn's line when the gateway's start-up (its pool's first connections) failed: the
# gateway fails fast by design (app/store/pool.py) and its supervisor starts it again.
_STARTUP_FAILED = "Application startup failed"


class Proc:
    """One app process: ``python -m app *argv`` with ``env`` only, logs in ``log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0
        self.exits: list[int] = []  # exit statuses of exits nobody asked for
        self.last_words: list[str] = []  # the log's last lines before each such exit
        self.failed_starts = 0  # exits while starting (a gateway fails fast without its store)
        self._expected = False
        self._watch: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"{_START}{self.starts + 1}\n".encode())
            out.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app",
                *self.argv,
                env=self.env,
                cwd=_REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,  # Ctrl-C reaches the run only; it stops us
            )
        self.starts += 1
        self._expected = False
        self._watch = asyncio.create_task(self._watch_exit(self.proc))

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._expected or self._closing or proc is not self.proc:
            return
        said = self.since_start()
        if _STARTUP_FAILED in said:
            self.failed_starts += 1
        else:
            self.exits.append(code)
            self.last_words.append("\n".join(said.splitlines()[-_LAST_LINES:]))
        await asyncio.sleep(1.0)
        if not self._closing and proc is self.proc:
            await self.start()

    async def kill(self) -> None:
        """SIGKILL and wait; ``start`` brings it back."""
        if self.proc is not None and self.proc.returncode is None:
            self._expected = True
            self.kills += 1
            self.proc.kill()
            await self.proc.wait()

    async def stop(self, within: float = 15) -> None:
        """SIGTERM, then SIGKILL after ``within`` s; never raises (teardown)."""
        self._closing = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(within):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    def since_start(self) -> str:
        """The log since the latest start."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text[text.rfind(_START) :]

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
