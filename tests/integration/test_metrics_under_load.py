"""The metrics of every long-running process move under a short real load.

Two gateways, the relay, a read worker and the snapshotter run as processes; editors
and viewers on both gateways edit two documents for a few seconds (with a rejected op,
an idempotent replay, presence and a close the server asks for); each process's
``/metrics`` is scraped before and after and parsed with prometheus_client. Then every
metric the Grafana dashboard queries must be one of the names these processes expose.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.deploy.test_deploy_files import dashboard_exprs, promql_metrics
from tests.support.appprocess import AppProcess
from tests.support.appstack import AppStack, Samples, scrape, wait_for

LOAD_SECONDS = 3.0
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
_TYPES: dict[str, str] = {}  # family -> type, as the expositions said


def value(samples: Samples, family: str, sample: str = "", **labels: str) -> float:
    """One sample (0 when the family has not got it yet)."""
    key = (sample or family, tuple(sorted(labels.items())))
    return samples.get(family, {}).get(key, 0.0)


def total(samples: Samples, family: str, sample: str) -> float:
    """The sum of one sample over every label set (a counter's children, say)."""
    return sum(v for (name, _), v in samples.get(family, {}).items() if name == sample)


async def scrape_typed(url: str) -> Samples:
    return await scrape(url, _TYPES)


async def welcomed(stack: AppStack, url: str, doc_id: str, user: str) -> ClientConnection:
    ws = await connect(f"{url}/ws/documents/{doc_id}", open_timeout=10, close_timeout=2)
    await ws.send(orjson.dumps({"type": "hello", "token": stack.token(user)}).decode())
    welcome = orjson.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws


async def drain(ws: ClientConnection, seen: list[dict[str, Any]]) -> None:
    """Read every frame until the socket closes (a viewer, or an editor's answers)."""
    try:
        async for frame in ws:
            seen.append(orjson.loads(frame))
    except ConnectionClosed:
        pass


async def edit(ws: ClientConnection, answers: list[dict[str, Any]], name: str) -> int:
    """Ops as fast as they are answered for LOAD_SECONDS, presence now and then;
    returns how many were sent."""
    sent = 0
    deadline = time.monotonic() + LOAD_SECONDS
    while time.monotonic() < deadline:
        op_id = f"{name}-{sent}"
        op = {"kind": "doc.rename", "title": f"{name} {sent}"}
        await ws.send(orjson.dumps({"type": "op", "id": op_id, "op": op}).decode())
        sent += 1
        if sent % 5 == 0:
            presence = {"type": "presence", "state": {"x": sent}}
            await ws.send(orjson.dumps(presence).decode())
        await wait_for(lambda op_id=op_id: any(a.get("id") == op_id for a in answers), 20, op_id)
    return sent


async def test_every_process_s_metrics_move_under_load(
    pg_clean: str, redis_url: str, redis_prefix: str
) -> None:
    async with AppStack(pg_clean, redis_url, redis_prefix, SNAPSHOT_EVERY="5") as stack:
        started = await asyncio.gather(
            *(stack.start(c) for c in ("serve", "serve", "relay", "worker", "snapshotter"))
        )
        gateways, (relay, worker, snapshotter) = started[:2], started[2:]
        urls = [
            stack.metrics_url(g).removesuffix("/metrics").replace("http://", "ws://")
            for g in gateways
        ]
        processes: dict[str, AppProcess] = {
            "gateway-1": gateways[0],
            "gateway-2": gateways[1],
            "relay": relay,
            "worker": worker,
            "snapshotter": snapshotter,
        }
        docs = []
        async with stack.http("alice") as http:
            for _ in range(2):
                doc_id = "d" + uuid.uuid4().hex[:12]
                r = await http.post("/api/documents", json={"id": doc_id, "title": "Load"})
                assert r.status_code == 201, r.text
                for user, role in (("carol", "editor"), ("bob", "viewer"), ("dave", "viewer")):
                    r = await http.put(
                        f"/api/documents/{doc_id}/members/{user}", json={"role": role}
                    )
                    assert r.status_code == 200, r.text
                docs.append(doc_id)
        before = {name: await scrape_typed(stack.metrics_url(p)) for name, p in processes.items()}

        # Two editors of each document, one on each gateway (their ops race: version
        # conflicts); two viewers of each, one on each gateway.
        sockets: list[ClientConnection] = []
        readers: list[asyncio.Task[None]] = []
        editors: list[tuple[ClientConnection, list[dict[str, Any]], str]] = []
        for doc_id in docs:
            for n, (user, url) in enumerate([("alice", urls[0]), ("carol", urls[1])]):
                ws = await welcomed(stack, url, doc_id, user)
                seen: list[dict[str, Any]] = []
                sockets.append(ws)
                readers.append(asyncio.create_task(drain(ws, seen)))
                editors.append((ws, seen, f"{doc_id}-{user}-{n}"))
            for user, url in (("bob", urls[0]), ("dave", urls[1])):
                ws = await welcomed(stack, url, doc_id, user)
                sockets.append(ws)
                readers.append(asyncio.create_task(drain(ws, [])))
        try:
            sent = await asyncio.gather(*(edit(ws, seen, name) for ws, seen, name in editors))
            ws, seen, name = editors[0]
            # An idempotent replay, and an op that cannot apply (rejected, `conflict`).
            await ws.send(
                orjson.dumps(
                    {"type": "op", "id": f"{name}-0", "op": {"kind": "doc.rename", "title": "x"}}
                ).decode()
            )
            missing = {"kind": "element.remove", "element": "nothing"}
            await ws.send(orjson.dumps({"type": "op", "id": "bad", "op": missing}).decode())
            await wait_for(lambda: any(a.get("id") == "bad" for a in seen), 20, "the reject")
            replays = [a for a in seen if a.get("id") == f"{name}-0" and a["type"] == "ack"]
            assert len(replays) == 2 and replays[0]["v"] == replays[1]["v"], replays
            # A close the server asks for: a document that does not exist (4404).
            lost = await welcomed_or_closed(stack, urls[1], "no-such-doc", "alice")
            assert lost == 4404
        finally:
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*readers)

        ops = sum(sent)  # events committed since the first scrape
        # The relay, the worker and the snapshotter follow the log to its head.
        await wait_for(
            lambda: _reached(stack, relay, "atelier_relay_published", before["relay"], ops),
            30,
            "the relay to publish the load",
        )
        await wait_for(
            lambda: _reached(stack, worker, "atelier_worker_events_applied", before["worker"], ops),
            30,
            "the worker to apply the load",
        )
        await wait_for(
            lambda: _snapshots_caught_up(stack, snapshotter, relay),
            30,
            "the snapshotter to reach the relay's position",
        )
        await wait_for(
            lambda: _all_closed(stack, gateways), 30, "the gateways to count every socket closed"
        )
        after = {name: await scrape_typed(stack.metrics_url(p)) for name, p in processes.items()}

    g_before = [before["gateway-1"], before["gateway-2"]]
    g_after = [after["gateway-1"], after["gateway-2"]]

    def grew(family: str, sample: str, **labels: str) -> float:
        """How much ``sample`` grew over both gateways."""
        return sum(
            value(a, family, sample, **labels) - value(b, family, sample, **labels)
            for a, b in zip(g_after, g_before, strict=True)
        )

    # the write path
    assert grew("atelier_ops", "atelier_ops_total", outcome="ack", code="") >= sum(sent)
    assert grew("atelier_ops", "atelier_ops_total", outcome="duplicate", code="") >= 1
    assert grew("atelier_ops", "atelier_ops_total", outcome="reject", code="conflict") >= 1
    assert grew("atelier_append_seconds", "atelier_append_seconds_count") >= 1
    batched = grew("atelier_append_batch_size", "atelier_append_batch_size_sum")
    assert batched >= sum(sent)  # every accepted op rode a group commit
    assert grew("atelier_ack_seconds", "atelier_ack_seconds_count") >= sum(sent)
    # Both gateways edited the same documents: some ops lost the optimistic race.
    assert grew("atelier_version_conflicts", "atelier_version_conflicts_total") >= 1
    # the fan-out: commit to socket write, per event run, on both gateways
    for b, a in zip(g_before, g_after, strict=True):
        runs = value(a, "atelier_ws_fanout_seconds", "atelier_ws_fanout_seconds_count")
        assert runs > value(b, "atelier_ws_fanout_seconds", "atelier_ws_fanout_seconds_count")
        assert "atelier_ws_connections" in a and "atelier_ws_send_queue_frames" in a
        assert "atelier_ws_send_queue_max" in a and "atelier_ws_closes" in a
    assert grew("atelier_ws_joins", "atelier_ws_joins_total") == len(sockets)
    assert grew("atelier_ws_deliveries", "atelier_ws_deliveries_total") >= sum(sent)
    assert grew("atelier_ws_presence_updates", "atelier_ws_presence_updates_total") >= 1
    assert grew("atelier_ws_closes", "atelier_ws_closes_total", code="4404") == 1
    # every socket closed by now (the client closed them): the gauge is back
    assert sum(value(a, "atelier_ws_connections") for a in g_after) == 0
    # the relay
    r0, r1 = before["relay"], after["relay"]
    assert value(r1, "atelier_relay_position") > value(r0, "atelier_relay_position")
    assert "atelier_relay_lag_events" in r1 and "atelier_relay_lag_seconds" in r1
    assert value(r1, "atelier_relay_lease_held") == 1
    # the read worker: applied, in batches, with a lag per owned view shard
    w0, w1 = before["worker"], after["worker"]
    assert value(w1, "atelier_worker_batch_events", "atelier_worker_batch_events_count") > value(
        w0, "atelier_worker_batch_events", "atelier_worker_batch_events_count"
    )
    lags = [labels for (_, labels) in w1["atelier_worker_lag_events"]]
    assert lags and all({"view", "shard"} <= dict(lab).keys() for lab in lags), lags
    assert value(w1, "atelier_worker_shards_owned") > 0
    # the snapshotter
    s0, s1 = before["snapshotter"], after["snapshotter"]
    written = "atelier_snapshots_written"
    assert value(s1, written, written + "_total") > value(s0, written, written + "_total")
    assert value(s1, "atelier_snapshotter_position") > value(s0, "atelier_snapshotter_position")
    # errors: exposed by every process that can have them, even at none
    for name in ("gateway-1", "relay", "worker", "snapshotter"):
        assert "atelier_store_errors" in after[name], name
    assert "atelier_redis_errors" in after["gateway-1"]
    assert "atelier_relay_redis_errors" in after["relay"]
    # and the processes' own collector
    for samples in after.values():
        assert value(samples, "process_cpu_seconds", "process_cpu_seconds_total") > 0

    exposed = {
        family + suffix
        for samples in after.values()
        for family in samples
        for suffix in _SUFFIXES[_TYPES[family]]
    }
    used = set().union(*map(promql_metrics, dashboard_exprs()))
    unknown = sorted(used - exposed)
    assert not unknown, f"the dashboard queries metrics no process exposes: {unknown}"


async def welcomed_or_closed(stack: AppStack, url: str, doc_id: str, user: str) -> int | None:
    """Open, say hello, and read until the server closes: its close code."""
    ws = await connect(f"{url}/ws/documents/{doc_id}", open_timeout=10, close_timeout=2)
    await ws.send(orjson.dumps({"type": "hello", "token": stack.token(user)}).decode())
    try:
        async with asyncio.timeout(10):
            async for _ in ws:
                pass
    except ConnectionClosed:
        pass
    return ws.close_code


async def _reached(
    stack: AppStack, process: AppProcess, family: str, before: Samples, count: int
) -> bool:
    now = await scrape(stack.metrics_url(process))
    sample = family + "_total"
    return value(now, family, sample) - value(before, family, sample) >= count


async def _snapshots_caught_up(stack: AppStack, snapshotter: AppProcess, relay: AppProcess) -> bool:
    s = await scrape(stack.metrics_url(snapshotter))
    r = await scrape(stack.metrics_url(relay))
    head = value(r, "atelier_relay_position")
    return head > 0 and value(s, "atelier_snapshotter_position") >= head


async def _all_closed(stack: AppStack, gateways: list[AppProcess]) -> bool:
    for gateway in gateways:
        if value(await scrape(stack.metrics_url(gateway)), "atelier_ws_connections") != 0:
            return False
    return True
