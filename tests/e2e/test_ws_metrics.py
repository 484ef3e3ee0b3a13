"""The gateway's real-time metrics move with real traffic (/metrics, Prometheus text)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Gateway
from tests.e2e.ws_client import make_doc, open_ws, rename


async def scrape(gateway: Gateway) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        text = (await c.get("/metrics")).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def test_fanout_latency_and_presence_rate_are_counted(gateway: Gateway) -> None:
    doc = await make_doc(gateway, bob="viewer")
    alice, bob = await open_ws(gateway, doc), await open_ws(gateway, doc)
    await alice.hello(gateway.token("alice"))
    await bob.hello(gateway.token("bob"))
    before = await scrape(gateway)
    for i in range(3):
        await alice.op(f"m{i}", rename(f"t{i}"))
    seen = 0
    while seen < 3:  # as `event` frames or coalesced into `events`
        message = await bob.recv()
        seen += {"event": 1, "events": len(message.get("events", ()))}.get(message["type"], 0)
    await alice.send({"type": "presence", "state": {"x": 1}})
    await bob.until("presence")
    after = await scrape(gateway)
    runs = after["atelier_ws_fanout_seconds_count"] - before.get(
        "atelier_ws_fanout_seconds_count", 0
    )
    assert 1 <= runs <= 3  # one observation per run of events (a group commit may join them)
    waited = after["atelier_ws_fanout_seconds_sum"] - before.get("atelier_ws_fanout_seconds_sum", 0)
    assert 0 <= waited < 5 * runs  # commit to socket write, in seconds: not ms, not negative
    presence = after["atelier_ws_presence_updates_total"]
    assert presence - before.get("atelier_ws_presence_updates_total", 0) == 1
