"""Past one machine: two gateways, the relay and two read workers, as processes, against
a three-master Redis Cluster and a PostgreSQL primary with a streaming replica.

The gateways write to the primary and read their queries from the replica
(``DATABASE_READ_URL``); the relay and the workers use the primary; every process
talks to the cluster (``REDIS_CLUSTER=on``). Three documents whose streams live on
different masters; on each, writers and viewers spread over both gateways. What must
hold is PROTOCOL.md section 4, end to end:

1. durable ack: every acked op is in the primary's events at the acked version;
2. ordered, gap-free, exactly once: every peer checks as it goes that each version
   after its welcome comes once and in order (a resume continues at since + 1), and
   its fold of the events equals the server's state at the end;
3. idempotent ops: an acked id sent again through the other gateway gets the same
   ``ack`` and stores nothing;
4. resume: viewers dropped mid-load come back with ``since`` and miss nothing;
5. viewers: a viewer's op is rejected ``forbidden``.

Then the read side: ``GET ...?min_v=`` on each gateway (served by the replica) answers
the final state, the two workers share the shards, and ``python -m app verify`` on the
primary finds the views equal to the fold of the events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from app.bus import Keys
from app.domain import state_to_json
from app.store.migrate import migrate
from tests.e2e.test_ws_invariants import OPS, Peer, writer_ops
from tests.support.appprocess import AppProcess
from tests.support.appstack import AppStack, wait_for
from tests.support.pgreplica import ReplicaPair
from tests.support.rediscluster import RedisCluster

WRITERS = 4
VIEWERS = 6
DOCS = 3
FINAL_V = 2 + WRITERS * OPS  # doc.create, the layer, then every writer's ops


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicaPair]:
    started = ReplicaPair.start()  # in a temp folder the server user can reach
    try:
        yield started
    finally:
        started.stop()


def ws(base: str, doc: str) -> str:
    return base.replace("http://", "ws://") + f"/ws/documents/{doc}"


async def make_documents(stack: AppStack, cluster: RedisCluster, prefix: str) -> list[str]:
    """DOCS documents whose streams land on at least two different masters."""
    keys = Keys(prefix)
    docs: list[str] = []
    owners: set[int] = set()
    while len(docs) < DOCS:
        doc = "s" + uuid.uuid4().hex[:10]
        owner = cluster.slot_owner(keys.doc_stream(doc))
        if owner in owners and len(owners) < min(DOCS, len(cluster.ports)):
            continue  # keep looking for a master no document is on yet
        owners.add(owner)
        docs.append(doc)
    assert len(owners) >= 2, owners
    members = {f"w{i}": "editor" for i in range(WRITERS)}
    members.update({f"v{i}": "viewer" for i in range(VIEWERS)})
    async with stack.http("alice") as http:
        for doc in docs:
            r = await http.post("/api/documents", json={"id": doc, "title": "Poster"})
            assert r.status_code == 201, r.text
            for user, role in members.items():
                r = await http.put(f"/api/documents/{doc}/members/{user}", json={"role": role})
                assert r.status_code == 200, r.text
            r = await http.post(
                f"/api/documents/{doc}/ops",
                json={"id": "L1", "op": {"kind": "layer.add", "layer": "L1", "name": "ink"}},
            )
            assert r.json() == {"v": 2}, r.text
    return docs


async def drive(stack: AppStack, gateways: list[str], doc: str) -> list[Peer]:
    """Writers and viewers alternating over the gateways; half the viewers are cut
    mid-load and resume (with ``since``) on the other gateway."""

    def urls(i: int) -> list[str]:
        both = [ws(base, doc) for base in gateways]
        return both[i % 2 :] + both[: i % 2]

    writers = [Peer(f"w{i}", stack.token(f"w{i}"), urls(i)) for i in range(WRITERS)]
    viewers = [Peer(f"v{i}", stack.token(f"v{i}"), urls(i)) for i in range(VIEWERS)]
    for peer in writers + viewers:
        await peer.connect()

    async def cut_viewers() -> None:
        await wait_for(lambda: sum(len(w.acks) for w in writers) >= WRITERS * OPS // 3, 30)
        for viewer in viewers[::2]:
            assert viewer.ws is not None
            await viewer.ws.close()  # the next recv reconnects to the other gateway

    async def writer(i: int) -> None:
        await writers[i].write(writer_ops(i), 0.01)
        await writers[i].follow(FINAL_V)

    async with asyncio.timeout(90):
        await asyncio.gather(
            cut_viewers(),
            *(writer(i) for i in range(WRITERS)),
            *(v.follow(FINAL_V) for v in viewers),
        )
    assert all(v.reconnects >= 1 for v in viewers[::2])
    return writers + viewers


async def send_once(url: str, token: str, message: dict[str, Any]) -> dict[str, Any]:
    """``message`` on a fresh connection; the first answer that is not an event."""
    async with connect(url, open_timeout=10) as sock:
        await sock.send(orjson.dumps({"type": "hello", "token": token}).decode())
        welcome = orjson.loads(await asyncio.wait_for(sock.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        await sock.send(orjson.dumps(message).decode())
        while True:
            answer: dict[str, Any] = orjson.loads(await asyncio.wait_for(sock.recv(), 10))
            if answer["type"] in {"ack", "reject", "error"}:
                return answer


@pytest.mark.timeout(300)
async def test_two_gateways_relay_and_two_workers_on_a_redis_cluster_and_a_replica(
    redis_cluster: RedisCluster, pair: ReplicaPair
) -> None:
    await migrate(pair.primary_url)
    prefix = f"so{uuid.uuid4().hex[:6]}:"
    env = {**redis_cluster.settings_env(), "WS_PRESENCE_HEARTBEAT_MS": "1000"}
    async with AppStack(pair.primary_url, redis_cluster.url, prefix, **env) as stack:
        gateways = []
        for _ in range(2):
            await stack.start("serve", DATABASE_READ_URL=pair.replica_url)
            gateways.append(stack.gateway_url)

        async def workers() -> None:  # one after the other: each names itself by its rank
            await stack.start("worker")
            await stack.start("worker")

        await asyncio.gather(stack.start("relay"), workers())

        docs = await make_documents(stack, redis_cluster, prefix)
        runs = await asyncio.gather(*(drive(stack, gateways, doc) for doc in docs))

        finals: dict[str, Any] = {}
        primary = await asyncpg.connect(pair.primary_url)
        try:
            for doc, peers in zip(docs, runs, strict=True):
                # 2. Every fold equals the state a fresh client gets.
                fresh = Peer("alice", stack.token("alice"), [ws(gateways[1], doc)])
                await fresh.connect()
                await fresh.close()
                assert fresh.v == FINAL_V and fresh.doc is not None
                server = state_to_json(fresh.doc)
                finals[doc] = server
                for peer in peers:
                    assert peer.v == FINAL_V, (doc, peer.user)
                    assert peer.doc is not None
                    assert {**state_to_json(peer.doc), "v": FINAL_V} == server, (doc, peer.user)
                    await peer.close()
                # 1. Each acked op stored once, at its acked version, in the primary.
                rows = await primary.fetch(
                    "SELECT v, op_id FROM events WHERE doc_id = $1 ORDER BY v", doc
                )
                assert [r["v"] for r in rows] == list(range(1, FINAL_V + 1))
                stored = {r["op_id"]: r["v"] for r in rows if r["op_id"] and r["op_id"][0] == "w"}
                acked = {op_id: v for peer in peers for op_id, v in peer.acks.items()}
                assert len(acked) == WRITERS * OPS
                assert stored == acked

            doc = docs[0]
            # 3. An acked id again, through the other gateway: the same ack, nothing stored.
            op_id, v = next(iter(sorted(runs[0][0].acks.items())))
            again = await send_once(
                ws(gateways[1], doc),
                stack.token("w0"),
                {"type": "op", "id": op_id, "op": {"kind": "doc.rename", "title": "twice"}},
            )
            assert again == {"type": "ack", "id": op_id, "v": v}
            # 5. A viewer's op is forbidden.
            refused = await send_once(
                ws(gateways[0], doc),
                stack.token("v0"),
                {"type": "op", "id": "nope", "op": {"kind": "doc.rename", "title": "no"}},
            )
            assert (refused["type"], refused["code"]) == ("reject", "forbidden")
            count = await primary.fetchval("SELECT count(*) FROM events WHERE doc_id = $1", doc)
            assert count == FINAL_V

            # The read side, from the replica: min_v waits for the replayed view.
            replica = await asyncpg.connect(pair.replica_url)
            served = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            before = await replica.fetchval(served)
            for base in gateways:
                async with httpx.AsyncClient(
                    base_url=base,
                    headers={"Authorization": f"Bearer {stack.token('alice')}"},
                    timeout=15,
                ) as http:
                    for doc in docs:
                        r = await http.get(f"/api/documents/{doc}", params={"min_v": FINAL_V})
                        assert r.status_code == 200, r.text
                        body = r.json()
                        assert body["v"] == FINAL_V
                        assert body["state"] == finals[doc], doc

            # ... and it was the replica that answered them.
            async def replica_served() -> bool:
                await replica.execute("SELECT pg_stat_clear_snapshot()")
                return int(await replica.fetchval(served)) > before + 2 * DOCS

            await wait_for(replica_served, 20, "queries on the replica")
            await replica.close()

            # Both workers hold shards: the leases were balanced over them.
            async def balanced() -> bool:
                owners = await primary.fetch(
                    "SELECT owner, count(*) AS shards FROM read.checkpoints"
                    " WHERE owner IS NOT NULL GROUP BY owner"
                )
                return len(owners) == 2

            await wait_for(balanced, 30, "both workers holding shards")
        finally:
            await primary.close()

        verify = await AppProcess(["verify"], stack.env(), "verify").start()
        assert verify.proc is not None
        await asyncio.wait_for(verify.proc.wait(), 120)
        assert await verify.end() == 0, verify.output
