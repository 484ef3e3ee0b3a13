"""``python -m app relay`` and ``python -m app snapshotter`` as processes, scraped at the
``/metrics`` each serves on a port of its own (``*_METRICS_PORT=0``: a free one, logged)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from app.store.postgres import PostgresStore
from tests.support.relay import Writer, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """One ``python -m app <command>`` with its JSON log lines collected as they come."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.command = command
        self.env = env
        self.lines: list[dict[str, object]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Process:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            self.command,
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
            try:
                self.lines.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                self.lines.append({"event": line.decode(errors="replace")})

    def said(self, event: str) -> dict[str, object] | None:
        return next((line for line in self.lines if line.get("event") == event), None)

    async def metrics_url(self) -> str:
        await wait_until(lambda: self.said("metrics listening") is not None, what=self.lines)
        line = self.said("metrics listening")
        assert line is not None and line["process"] == self.command, line
        return str(line["url"])

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"no stop within 15 s: {self.lines}") from None
        if self._reader is not None:
            await self._reader
        return code


def environment(dsn: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": dsn,
        "APP_ENV": "prod",
        "APP_SECRET": "s" * 40,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "METRICS_HOST": "127.0.0.1",
        **extra,
    }


async def scrape(url: str) -> dict[str, float]:
    """Every sample of the exposition, by name and labels (``name{a="b"}``)."""
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


async def test_the_relay_process_serves_its_metrics(
    store: PostgresStore, pg_clean: str, redis_url: str, redis_prefix: str
) -> None:
    env = environment(
        pg_clean, REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix, RELAY_METRICS_PORT="0"
    )
    relay = await Process("relay", env).start()
    try:
        url = await relay.metrics_url()
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(url.replace("/metrics", "/healthz"))).status_code == 200
        before = await scrape(url)
        assert before["atelier_relay_published_total"] == 0
        assert "atelier_relay_lag_events" in before
        assert "atelier_relay_lag_seconds" in before
        await wait_until(lambda: relay.said("relay lease acquired") is not None, what=relay.lines)

        async with Writer(store) as writer:
            await writer.documents("d1", "d2")
            await writer.edits(["d1", "d2"], 6)
        head = await store.head()
        assert head == writer.acked == 10

        async def caught_up() -> bool:
            now = await scrape(url)
            return (
                now["atelier_relay_published_total"] == head
                and now["atelier_relay_position"] == head
                and now["atelier_relay_lag_events"] == 0  # head read at the next heartbeat
            )

        await wait_until(caught_up, what="the relay's metrics to reach the head")
        after = await scrape(url)
        assert after["atelier_relay_lease_held"] == 1
        assert after["atelier_relay_lag_seconds"] == 0
        assert after["process_cpu_seconds_total"] > 0  # the process's own collector
    finally:
        assert await relay.stop() == 0, relay.lines
    assert relay.said("relay stopped") is not None


async def test_the_snapshotter_process_serves_its_metrics(
    store: PostgresStore, pg_clean: str
) -> None:
    env = environment(pg_clean, SNAPSHOT_EVERY="5", SNAPSHOTTER_METRICS_PORT="0")
    snapshotter = await Process("snapshotter", env).start()
    try:
        url = await snapshotter.metrics_url()
        await wait_until(
            lambda: snapshotter.said("snapshotter following") is not None, what=snapshotter.lines
        )
        assert (await scrape(url))["atelier_snapshots_written_total"] == 0
        async with Writer(store) as writer:
            await writer.documents("d1")
            await writer.edits(["d1"], 10)
        head = await store.head()

        async def wrote() -> bool:
            now = await scrape(url)
            return (
                now["atelier_snapshots_written_total"] >= 1
                and now["atelier_snapshotter_position"] == head
            )

        await wait_until(wrote, what="a snapshot counted and the position at the head")
    finally:
        assert await snapshotter.stop() == 0, snapshotter.lines
