"""Redis cut under the real processes: two gateways (``python -m app serve``) and the relay,
each reaching Redis (and PostgreSQL) through a ``TcpProxy``.

While Redis is cut, both gateways keep committing ops (acks arrive), and a viewer whose
gateway knows of a version it has not received (its own commit came after another
gateway's) fills the gap from PostgreSQL. After Redis is restored, each viewer has
received every event exactly once, in order; the relay has published what it missed
(every event once in its stream); presence flows between the gateways again; and the
processes retried with a spaced backoff, not a busy loop, without crashing."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from datetime import datetime
from functools import partial
from typing import Any

import httpx

from app.bus import Keys, Redis
from app.store.postgres import PostgresStore
from tests.support.appprocess import AppProcess
from tests.support.faultrig import FaultRig, Socket, log_events, wait_for
from tests.support.relay import assert_published_exactly

CUT_SECONDS = 3.0


def rename(n: int) -> dict[str, Any]:
    return {"kind": "doc.rename", "title": f"title {n}"}


def _stamps(process: AppProcess, text: str) -> list[datetime]:
    return [
        datetime.fromisoformat(r["timestamp"])
        for r in log_events(process)
        if str(r.get("event", "")).startswith(text)
    ]


def _assert_spaced(process: AppProcess, text: str) -> None:
    """Retries logged as ``text`` during the cut: a handful, the waits growing."""
    stamps = _stamps(process, text)
    assert stamps, f"{process.name} logged no {text!r}:\n{process.output}"
    assert len(stamps) <= 20, f"{process.name}: {len(stamps)} {text!r} in a {CUT_SECONDS} s cut"
    if len(stamps) > 1:
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
        assert max(gaps) >= 0.3, f"{process.name}: {gaps} s apart"


async def _gap_fills(url: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(url + "/metrics")).text
    found = re.search(r"^atelier_ws_gap_fills_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _in_order_once(socket: Socket, last_v: int) -> bool:
    return bool(socket.events) and socket.events[-1]["v"] >= last_v


async def test_redis_cut_and_restored_under_the_gateways_and_the_relay(
    pg_clean: str, redis_url: str, redis_prefix: str, redis: Redis, store: PostgresStore
) -> None:
    async with FaultRig(pg_clean, redis_url, redis_prefix) as rig:
        gw1, gw2, relay = await asyncio.gather(
            rig.start("serve"), rig.start("serve"), rig.start("relay")
        )
        url1, url2 = rig.urls[gw1], rig.urls[gw2]
        await wait_for(lambda: relay.said("relay lease acquired"), 30, relay.output)
        doc_id = "dredis"
        async with rig.http("alice", url=url1) as http:
            r = await http.post("/api/documents", json={"id": doc_id, "title": "Poster"})
            assert r.status_code == 201, f"{r.text}\n{gw1.output}"
        writer1 = await Socket.open(rig, doc_id, "alice", url1)
        viewer1 = await Socket.open(rig, doc_id, "alice", url1)
        writer2 = await Socket.open(rig, doc_id, "alice", url2)
        viewer2 = await Socket.open(rig, doc_id, "alice", url2)
        sockets = [writer1, viewer1, writer2, viewer2]
        try:
            for n in range(3):
                assert (await writer1.op(f"before-{n}", rename(n)))["type"] == "ack"
            v = (await store.read_stream(doc_id))[-1].v
            await wait_for(lambda: _in_order_once(viewer2, v), 20, "gateway 2 before the cut")
            fills_before = await _gap_fills(url2)

            # -- the cut: ops still commit and are acked on both gateways ------------
            rig.redis.cut()
            cut_at = time.monotonic()
            for n in range(4):
                answer = await writer1.op(f"cut1-{n}", rename(100 + n))
                assert answer["type"] == "ack", answer
            # Gateway 2 heard nothing of those (no Redis); its own commit comes after
            # them, so it knows of a gap and fills it from PostgreSQL.
            answer = await writer2.op("cut2-0", rename(200))
            assert answer["type"] == "ack", answer
            v = answer["v"]
            await wait_for(lambda: _in_order_once(viewer2, v), 20, "gateway 2 healing the gap")
            assert await _gap_fills(url2) > fills_before
            await viewer1.send_presence({"x": 1})  # lost with the cut: ephemeral
            await asyncio.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
            rig.assert_alive()
            rig.redis.restore()

            # -- after ---------------------------------------------------------------
            for n in range(4):
                assert (await writer1.op(f"after-{n}", rename(300 + n)))["type"] == "ack"
            last_v = (await store.read_stream(doc_id))[-1].v
            for socket in (viewer1, viewer2, writer2):
                await wait_for(partial(_in_order_once, socket, last_v), 30, "every event")
            for socket in sockets:
                got = [e["v"] for e in socket.events]
                assert got == list(range(socket.welcome_v + 1, last_v + 1)), got

            # Presence flows between the gateways again (the subscription came back).
            async def presence_arrives() -> bool:
                await viewer1.send_presence({"x": 2})
                await asyncio.sleep(0.3)
                return any(p.get("state") == {"x": 2} for p in viewer2.presence)

            await wait_for(presence_arrives, 20, f"presence across gateways:\n{gw2.output}")
        finally:
            for socket in sockets:
                await socket.close()

        # The relay published what it missed, each event once.
        final = await store.head()
        keys = Keys(redis_prefix)

        async def published() -> bool:
            return await redis.get(keys.relay_position) == b"%d" % final

        await wait_for(published, 30, f"the relay to publish up to {final}:\n{relay.output}")
        assert await assert_published_exactly(redis, keys, store) == final

        rig.assert_alive()
        assert relay.said("relay: redis is back"), relay.output
        _assert_spaced(relay, "relay: redis unavailable")
        for gateway in (gw1, gw2):
            _assert_spaced(gateway, "fanout redis read failed")
            assert gateway.said("fanout redis read resumed"), gateway.output
            assert gateway.said("subscription resumed"), gateway.output
        for process in rig.processes:
            bad = [r for r in log_events(process) if r.get("level") in ("error", "critical")]
            assert not bad, process.output
