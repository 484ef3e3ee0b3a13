"""Helpers of the relay tests (tests/integration/test_relay*.py): a relay in a task,
a writer through the real command handler, and the exactly-once comparison of every
stream with the events table."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from app.bus import Entry, Keys, Redis, read_range, to_entry
from app.command import CommandHandler
from app.relay import Relay, RelayConfig
from app.store.postgres import PostgresStore
from tests.support.appprocess import wait_until

__all__ = [
    "RunningRelay",
    "Writer",
    "assert_published_exactly",
    "fast_config",
    "stream_contents",
    "wait_until",
]


def fast_config(dsn: str, prefix: str, **overrides: Any) -> RelayConfig:
    """A relay configuration with test-sized intervals."""
    settings: dict[str, Any] = {
        "lease_poll": 0.05,
        "check_interval": 0.1,
        "poll_interval": 0.5,
        "max_backoff": 0.2,
        **overrides,
    }
    return RelayConfig(dsn=dsn, keys=Keys(prefix), **settings)


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where ``task`` is waiting, innermost last (for a relay that would not stop)."""
    lines = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return "\n".join(lines)


class RunningRelay:
    """``async with RunningRelay(relay):`` runs ``relay.run()`` in a task; leaving (or
    ``stop()``) cancels it and re-raises anything that had stopped it before."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.task: asyncio.Task[None] | None = None

    def start(self) -> RunningRelay:
        self.task = asyncio.create_task(self.relay.run())
        return self

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        where = awaiting(task)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert done, "the relay did not stop within 5 s of its cancellation at:\n" + where

    async def caught_up(self, store: PostgresStore, within: float = 10.0) -> None:
        """Wait until the relay has published everything committed so far."""
        head = await store.head()

        def done() -> bool:
            if self.task is not None and self.task.done():
                self.task.result()  # raise what stopped it
            return self.relay.position >= head and self.relay.holding

        await wait_until(done, within, f"relay at {self.relay.position}, head {head}")

    async def __aenter__(self) -> RunningRelay:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Writer:
    """Edits through the real CommandHandler: documents, then renames round-robin."""

    def __init__(self, store: PostgresStore) -> None:
        self.handler = CommandHandler(store)
        self._ids = itertools.count(1)
        self.acked = 0

    async def __aenter__(self) -> Writer:
        await self.handler.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.handler.close()

    async def documents(self, *doc_ids: str) -> None:
        for doc_id in doc_ids:
            await self.handler.create_document(doc_id, "alice", f"Poster {doc_id}")
            await self.handler.submit(
                doc_id, "alice", "owner", "L1", {"kind": "layer.add", "layer": "L1", "name": "a"}
            )
            self.acked += 2

    async def edit(self, doc_id: str) -> None:
        n = next(self._ids)
        await self.handler.submit(
            doc_id, "alice", "owner", f"r{n}", {"kind": "doc.rename", "title": f"title {n}"}
        )
        self.acked += 1

    async def edits(self, doc_ids: list[str], count: int) -> None:
        """``count`` edits spread over ``doc_ids``, the documents' ops concurrently."""
        await asyncio.gather(
            *(self.edit(doc_ids[i % len(doc_ids)]) for i in range(count)),
        )

    async def keep_editing(self, doc_ids: list[str], stop: asyncio.Event) -> None:
        """Edit until ``stop`` is set, a few ops at a time."""
        while not stop.is_set():
            await self.edits(doc_ids, 2 * len(doc_ids))
            await asyncio.sleep(0.005)


async def stream_contents(redis: Redis, keys: Keys) -> dict[str, list[Entry]]:
    """Every document stream under ``keys``: all its entries, oldest first."""
    found: dict[str, list[Entry]] = {}
    async for key in redis.scan_iter(match=keys.doc_stream_pattern, count=500):
        doc_id = keys.doc_id_of(key)
        found[doc_id] = await read_range(redis, keys, doc_id, 0)
    return found


async def assert_published_exactly(
    redis: Redis, keys: Keys, store: PostgresStore, *, epoch: int = 1, after: int = 0
) -> int:
    """Each document's stream holds exactly its events after position ``after``, once
    each, with id = position, in version order, the same bytes as from the store.
    Returns how many events were compared."""
    events = await store.read_log(after, 10**9)
    expected: dict[str, list[Entry]] = {}
    for event in events:
        expected.setdefault(event.doc_id, []).append(to_entry(event, epoch))
    actual = await stream_contents(redis, keys)
    actual = {doc: [e for e in entries if e.position > after] for doc, entries in actual.items()}
    actual = {doc: entries for doc, entries in actual.items() if entries}
    assert set(actual) == set(expected), (sorted(actual), sorted(expected))
    for doc_id, entries in expected.items():
        got = actual[doc_id]
        assert [e.position for e in got] == [e.position for e in entries], doc_id
        assert got == entries, doc_id
        versions = [e.v for e in got]
        assert versions == list(range(versions[0], versions[0] + len(versions))), doc_id
    return len(events)
