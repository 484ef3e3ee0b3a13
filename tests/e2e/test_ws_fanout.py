"""Fan-out: the Redis stream path, gap filling from PostgreSQL, and the channel's rules.

The relay is not running in these tests: entries are XADDed here in its format
(app/bus/keys.py: ``{prefix}doc:{<doc_id>}``, id ``<position>-0``, fields ``v``,
``epoch``, ``e``), so that what reaches the sockets can only have come through the
stream reader or the healer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as redis

from app.bus import Keys
from app.gateway.fanout import Channel, Fanout, wire
from app.protocol import WireEvent
from app.store.postgres import PostgresStore
from tests.e2e.conftest import Gateway
from tests.e2e.ws_client import make_doc, open_ws, rename


def stream_key(gateway: Gateway, doc_id: str) -> str:
    return Keys(gateway.settings.redis_prefix).doc_stream(doc_id)


@pytest.fixture
async def rds(gateway: Gateway) -> AsyncIterator[redis.Redis]:
    client = redis.from_url(gateway.settings.redis_url)
    keys: list[str] = []
    client.test_keys = keys  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def publish(
    rds: redis.Redis, key: str, event: Any, *, position: int | None = None, epoch: int = 1
) -> None:
    """XADD one stored event the way the relay does."""
    rds.test_keys.append(key)  # type: ignore[attr-defined]
    body = wire(event).body
    fields = {"v": str(event.v), "epoch": str(epoch), "e": body}
    await rds.xadd(key, fields, id=f"{position or event.position}-0")  # type: ignore[arg-type]


async def test_stream_entries_reach_the_sockets_and_a_jump_is_filled(
    make_gateway: Any, store: PostgresStore, rds: redis.Redis
) -> None:
    here, there = await make_gateway(), await make_gateway()
    doc = await make_doc(here, bob="editor")
    key = stream_key(here, doc)
    client = await open_ws(here, doc)
    assert (await client.hello(here.token("alice")))["v"] == 1
    async with there.client("bob") as http:  # committed by another gateway process
        for i in range(3):
            r = await http.post(
                f"/api/documents/{doc}/ops", json={"id": f"b{i}", "op": rename(str(i))}
            )
            assert r.status_code == 200
    events = await store.read_stream(doc)
    assert [e.v for e in events] == [1, 2, 3, 4]
    # Only the last one reaches the stream: the channel sees a jump from 1 to 4 and
    # reads 2 and 3 from PostgreSQL before it delivers anything.
    await publish(rds, key, events[3])
    got: list[dict[str, Any]] = []
    while sum(len(m["events"]) if m["type"] == "events" else 1 for m in got) < 3:
        got.append(await client.recv())
    versions = [e["v"] for m in got for e in (m["events"] if m["type"] == "events" else [m])]
    assert versions == [2, 3, 4]
    # The next event comes straight from the stream; a repeat of it is dropped, and a
    # malformed entry is skipped without harm.
    async with there.client("bob") as http:
        r = await http.post(f"/api/documents/{doc}/ops", json={"id": "b9", "op": rename("9")})
        assert r.json() == {"v": 5}
    fifth = (await store.read_stream(doc, after_v=4))[0]
    await publish(rds, key, fifth)
    event = await client.recv()
    assert (event["type"], event["v"], event["id"], event["actor"]) == ("event", 5, "b9", "bob")
    await publish(rds, key, fifth, position=fifth.position + 1000)
    await rds.xadd(key, {"v": "x", "e": "[]"}, id=f"{fifth.position + 1001}-0")
    # an entry of another epoch (another history of the store) is never delivered
    other_history = replace(fifth, v=6, op_id="ghost")
    await publish(rds, key, other_history, position=fifth.position + 1002, epoch=2)
    await client.quiet(0.5)
    await client.send({"type": "ping", "t": 1})
    assert await client.recv() == {"type": "pong", "t": 1}


async def test_an_ack_waits_for_its_event_behind_a_gap(make_gateway: Any) -> None:
    here, there = await make_gateway(), await make_gateway()
    doc = await make_doc(here, bob="editor")
    client = await open_ws(here, doc)
    await client.hello(here.token("alice"))
    async with there.client("bob") as http:  # v2, never published to the stream
        r = await http.post(f"/api/documents/{doc}/ops", json={"id": "b1", "op": rename("b")})
        assert r.json() == {"v": 2}
    await client.op("a1", rename("a"))  # v3: this process knows it first, 2 is missing
    got = await client.until("ack")
    versions = [e["v"] for m in got if m["type"] != "ack" for e in m.get("events", [m])]
    assert versions == [2, 3]
    assert got[-1] == {"type": "ack", "id": "a1", "v": 3}


# -- the channel's rules, without sockets ---------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.runs: list[tuple[list[int], str]] = []

    def __call__(self, events: Sequence[WireEvent], frame: str) -> None:
        self.runs.append(([e.v for e in events], frame))

    @property
    def versions(self) -> list[int]:
        return [v for run, _ in self.runs for v in run]


def ev(v: int) -> WireEvent:
    return WireEvent.encode(v, b'{"kind":"doc.rename","title":"t"}', "u", None, v)


def channel(cursor: int) -> Channel:
    # not started: no reader, no healer; the gap event is only set
    fanout = Fanout(None, None, lambda d: d)  # type: ignore[arg-type]
    return Channel(fanout, "d", cursor)


def test_offer_delivers_in_order_once_with_one_frame_for_all() -> None:
    ch = channel(3)
    a, b = Recorder(), Recorder()
    assert ch.join(a, 3)
    assert ch.join(b, 3)
    ch.offer([ev(5)])  # early: held
    assert a.runs == []
    ch.offer([ev(3), ev(4)])  # 3 is old; 4 opens the run 4, 5
    ch.offer([ev(4), ev(5)])  # repeats
    assert a.versions == b.versions == [4, 5]
    assert a.runs[0][1] is b.runs[0][1]  # the same str for every socket
    ch.offer([ev(6)])
    assert a.runs[-1][1] is ev(6).frame or a.runs[-1][1] == ev(6).frame
    assert ch.cursor == 6


def test_a_late_joiner_gets_the_events_it_missed_from_the_ring() -> None:
    ch = channel(1)
    first = Recorder()
    ch.join(first, 1)
    ch.offer([ev(2), ev(3), ev(4)])
    late = Recorder()
    assert ch.join(late, 2)
    assert late.versions == [3, 4]
    ch.offer([ev(5)])
    assert late.versions == [3, 4, 5]


def test_a_joiner_the_ring_cannot_serve_is_told_to_read() -> None:
    ch = channel(1)
    ch.join(Recorder(), 1)
    ch.offer([ev(v) for v in range(2, 1100)])
    late = Recorder()
    assert not ch.join(late, 5)
    assert late.runs == []
    assert late not in ch.sinks


def test_a_joiner_ahead_of_the_channel_makes_it_catch_up() -> None:
    ch = channel(2)
    ahead = Recorder()
    assert ch.join(ahead, 5)
    assert ch.known_head == 5
    assert ch._gap.is_set()


def test_sinks_with_ops_in_flight_are_served_first() -> None:
    ch = channel(1)
    order: list[str] = []

    def sink(name: str) -> Callable[[Sequence[WireEvent], str], None]:
        return lambda events, frame: order.append(name)

    viewers = [sink(f"v{i}") for i in range(3)]
    author = sink("author")
    for s in (*viewers, author):
        ch.join(s, 1)
    ch.offer([ev(2)])
    assert order == ["v0", "v1", "v2", "author"]
    ch.authoring(author, 1)
    ch.authoring(author, 1)
    ch.authoring(viewers[1], 1)
    order.clear()
    ch.offer([ev(3)])
    assert order == ["author", "v1", "v0", "v2"]  # each once
    ch.authoring(author, -1)  # one op of two answered: still first
    ch.authoring(viewers[1], -1)
    order.clear()
    ch.offer([ev(4)])
    assert order == ["author", "v0", "v1", "v2"]
    ch.authoring(author, -1)
    order.clear()
    ch.offer([ev(5)])
    assert order == ["v0", "v1", "v2", "author"]
    assert ch.authors == {}
    # A sink that leaves is forgotten as an author too.
    ch.fanout._channels["d"] = ch
    ch.authoring(viewers[0], 1)
    ch.fanout.leave("d", viewers[0])
    assert viewers[0] not in ch.authors


async def test_stop_ends_the_tasks(gateway: Gateway) -> None:
    class Store:
        async def epoch(self) -> int:
            return 1

    client = redis.from_url(gateway.settings.redis_url)
    fanout = Fanout(Store(), client, lambda d: f"t:{d}")  # type: ignore[arg-type]
    assert fanout.join("x", Recorder(), 1)
    await asyncio.sleep(0.01)
    await fanout.close()
    assert fanout.channel("x") is None
    await fanout.redis.aclose()


def test_a_failing_sink_does_not_cost_the_others_their_events() -> None:
    ch = channel(1)

    def broken(events: Sequence[WireEvent], frame: str) -> None:
        raise RuntimeError("bug")

    good = Recorder()
    ch.join(broken, 1)
    ch.join(good, 1)
    ch.offer([ev(2)])
    assert good.versions == [2]
    assert ch.cursor == 2
