"""The fault plan of a chaos run: which fault, when, on what, for how long (pure).

``plan`` draws from a seeded ``random.Random`` only, so one seed gives one plan. Every
kind asked for comes at least once, in a random order, in the first part of the run;
the rest of the run draws kinds at random. Faults never overlap: the run injects one,
holds it, restores, then waits for the next, so the plan gives each its slot.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

__all__ = ["KINDS", "Fault", "parse_kinds", "plan"]

# kind -> (what it does, shortest hold s, longest hold s)
KINDS: Final[dict[str, tuple[str, float, float]]] = {
    "kill-gateway": ("SIGKILL a gateway, start it again after the hold", 0.5, 2.0),
    "kill-relay": ("SIGKILL the relay, start it again after the hold", 0.5, 2.0),
    "kill-worker": ("SIGKILL a read worker, start it again after the hold", 0.5, 2.0),
    "redis-restart-empty": ("SIGKILL Redis, start it again empty after the hold", 0.2, 1.5),
    "pg-restart-fast": ("pg_ctl stop -m fast, start again after the hold", 0.5, 2.0),
    "pg-restart-immediate": ("pg_ctl stop -m immediate, start again after the hold", 0.5, 2.0),
    "cut-client": ("break every client connection of one gateway (they may reconnect)", 0, 0),
    "cut-pg": ("cut every PostgreSQL connection and refuse new ones for the hold", 1.0, 4.0),
    "cut-redis": ("cut every Redis connection and refuse new ones for the hold", 1.0, 4.0),
}


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # seconds after the start of the load
    kind: str
    target: int  # which gateway or worker (0 for the others)
    hold: float  # seconds the fault lasts before it is restored

    def describe(self, gateways: int, workers: int) -> str:
        if self.kind == "kill-gateway" and gateways > 1:
            return f"{self.kind} gateway-{self.target}"
        if self.kind == "kill-worker" and workers > 1:
            return f"{self.kind} worker-{self.target}"
        if self.kind == "cut-client" and gateways > 1:
            return f"{self.kind} gateway-{self.target}"
        return self.kind


def parse_kinds(text: str) -> list[str]:
    """``kill-gateway,cut-pg``: the kinds, in order, each once; ValueError for an unknown one."""
    kinds: list[str] = []
    for raw in text.split(","):
        kind = raw.strip()
        if not kind:
            continue
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def plan(
    seed: int,
    duration: float,
    kinds: list[str],
    *,
    gateways: int = 1,
    workers: int = 1,
    every: float = 6.0,
    quiet_tail: float = 0.1,
) -> list[Fault]:
    """The faults of a run of ``duration`` s: one every ``every`` s on average (closer
    when needed to fit every kind once), none in the last ``quiet_tail`` of the run."""
    if not kinds or duration <= 0:
        return []
    rng = random.Random(seed)
    window = duration * (1 - quiet_tail)
    count = max(len(kinds), int(window / every))
    slot = window / count
    order = list(kinds)
    rng.shuffle(order)
    order += [rng.choice(kinds) for _ in range(count - len(kinds))]
    faults: list[Fault] = []
    for i, kind in enumerate(order):
        _, low, high = KINDS[kind]
        at = i * slot + rng.uniform(0.1, 0.4) * slot
        target = 0
        if kind in ("kill-gateway", "cut-client"):
            target = rng.randrange(gateways)
        elif kind == "kill-worker":
            target = rng.randrange(workers)
        hold = round(min(rng.uniform(low, high), slot * 0.5), 2)
        faults.append(Fault(round(at, 2), kind, target, hold))
    return faults
