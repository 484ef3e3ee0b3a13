"""CPU and memory of processes and of the machine, from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["Sampler", "machine"]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine() -> dict[str, Any]:
    """The machine the harness runs on: cores, CPU model, memory, kernel, Python."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, StopIteration):
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem = next(ln for ln in meminfo if ln.startswith("MemTotal"))
        info["memory_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    return info


class Sampler:
    """Per sample: CPU (% of one core since the last sample) and RSS of each pid."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.last: dict[int, tuple[float, int]] = {}
        self.series: list[dict[str, Any]] = []
        for pid in self.pids:
            with contextlib.suppress(OSError):
                self.last[pid] = (time.monotonic(), cpu_ticks(pid))

    def sample(self, t: float) -> dict[str, Any] | None:
        """A sample at ``t`` seconds into the run (None when there are no pids)."""
        if not self.pids:
            return None
        point: dict[str, Any] = {"t": round(t, 2), "cpu": {}, "rss_kib": {}}
        for pid in self.pids:
            try:
                now, ticks = time.monotonic(), cpu_ticks(pid)
                rss = rss_kib(pid)
            except OSError:
                continue
            before = self.last.get(pid)
            self.last[pid] = (now, ticks)
            if before is not None and now > before[0]:
                cpu = (ticks - before[1]) / CLK_TCK / (now - before[0]) * 100
                point["cpu"][str(pid)] = round(cpu, 1)
            point["rss_kib"][str(pid)] = rss
        self.series.append(point)
        return point

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for pid in self.pids:
            key = str(pid)
            cpu = [p["cpu"][key] for p in self.series if key in p["cpu"]]
            rss = [p["rss_kib"][key] for p in self.series if key in p["rss_kib"]]
            out[key] = {
                "cpu_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
                "cpu_max": max(cpu) if cpu else None,
                "rss_max_kib": max(rss) if rss else None,
            }
        return out
