"""The HTTP queries over a real gateway (PROTOCOL.md section 5), served from the views:
``catch_up`` (app/views/writer.py) brings the views up to date where a test needs it,
in place of a worker process."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from app.domain import Document
from app.store.postgres import PostgresStore
from app.views.project import fold
from app.views.schema import HISTORY_EVERY
from app.views.writer import catch_up
from tests.e2e.conftest import Gateway

SUMMARY_KEYS = {"id", "title", "v", "owner", "role", "layers", "elements", "updated_at"}


async def post_ops(c: httpx.AsyncClient, doc_id: str, ops: list[dict[str, Any]]) -> int:
    """Post ``ops`` one after the other; an op refused with 429 (a user's ops a second,
    which a fast machine can pass) is sent again with the same id after ``Retry-After``,
    as PROTOCOL.md asks of clients."""
    v = 0
    for op in ops:
        body = {"id": f"op{random.getrandbits(48)}", "op": op}
        for _ in range(20):
            r = await c.post(f"/api/documents/{doc_id}/ops", json=body)
            if r.status_code != 429:
                break
            await asyncio.sleep(float(r.headers.get("Retry-After", "0.1")))
        assert r.status_code == 200, r.text
        v = r.json()["v"]
    return v


def rect(element: str, x: int = 0, layer: str = "L1") -> dict[str, Any]:
    return {
        "kind": "element.add",
        "element": element,
        "layer": layer,
        "shape": "rect",
        "props": {"x": x, "y": 0, "w": 10, "h": 10},
    }


async def create(gw: Gateway, doc_id: str = "d1", owner: str = "alice", title: str = "P") -> int:
    async with gw.client(owner) as c:
        r = await c.post("/api/documents", json={"title": title, "id": doc_id})
        assert r.status_code == 201, r.text
        return await post_ops(c, doc_id, [{"kind": "layer.add", "layer": "L1", "name": "Bg"}])


def body_of(doc_id: str, v: int, state: bytes) -> bytes:
    return b'{"id":"' + doc_id.encode() + b'","v":%d,"state":' % v + state + b"}"


# -- access and bad values -------------------------------------------------------------

QUERIES = [
    "/api/documents/{doc}",
    "/api/documents/{doc}?at=1",
    "/api/documents/{doc}?min_v=1",
    "/api/documents/{doc}/events",
    "/api/documents/{doc}/diff?from=1&to=2",
    "/api/documents/{doc}/activity",
    "/api/documents/{doc}/versions",
]


@pytest.mark.parametrize("path", QUERIES)
async def test_access_401_403_404_and_viewers_may_read(
    gateway: Gateway, pg_pool: asyncpg.Pool, path: str
) -> None:
    await create(gateway)
    await catch_up(pg_pool)
    async with (
        httpx.AsyncClient(base_url=gateway.url) as anonymous,
        gateway.client("alice") as alice,
        gateway.client("bob") as bob,
        gateway.client("eve") as eve,
    ):
        await alice.put("/api/documents/d1/members/bob", json={"role": "viewer"})
        r = await anonymous.get(path.format(doc="d1"))
        assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")
        r = await eve.get(path.format(doc="d1"))
        assert (r.status_code, r.json()["code"]) == (403, "forbidden")
        r = await eve.get(path.format(doc="nope"))
        assert (r.status_code, r.json()["code"]) == (404, "not_found")
        assert (await alice.get(path.format(doc="d1"))).status_code == 200
        assert (await bob.get(path.format(doc="d1"))).status_code == 200
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        r = await anonymous.get("/api/documents")
        assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")


@pytest.mark.parametrize(
    "path",
    [
        "/api/documents?limit=0",
        "/api/documents?limit=101",
        "/api/documents?limit=ten",
        "/api/documents?limit=1.5",
        "/api/documents?cursor=not-a-cursor",
        "/api/documents?cursor=WzEsMl0",  # base64 of [1,2]: not one of ours
        "/api/documents/d1?at=0",
        "/api/documents/d1?at=3",  # beyond the document's version (2)
        "/api/documents/d1?at=x",
        "/api/documents/d1?min_v=-1",
        "/api/documents/d1?min_v=",
        "/api/documents/d1/events?after=-1",
        "/api/documents/d1/events?limit=0",
        "/api/documents/d1/events?limit=1001",
        "/api/documents/d1/diff?from=1",
        "/api/documents/d1/diff?to=2",
        "/api/documents/d1/diff?from=0&to=2",
        "/api/documents/d1/diff?from=1&to=9",
        "/api/documents/d1/activity?limit=0",
        "/api/documents/d1/activity?limit=101",
    ],
)
async def test_bad_query_values_are_400_invalid(
    gateway: Gateway, pg_pool: asyncpg.Pool, path: str
) -> None:
    await create(gateway)
    await catch_up(pg_pool)
    async with gateway.client("alice") as c:
        r = await c.get(path)
    assert (r.status_code, r.json()["code"]) == (400, "invalid"), r.text
    assert r.json()["message"]


# -- state -----------------------------------------------------------------------------


async def test_state_is_the_views_bytes_spliced_and_a_new_document_never_404s(
    gateway: Gateway, pg_pool: asyncpg.Pool
) -> None:
    await create(gateway)
    store = PostgresStore(pg_pool)
    async with gateway.client("alice") as c:
        v = await post_ops(c, "d1", [rect("e1"), rect("e2", 5)])
        # The view has no row yet: the command handler's committed state answers.
        early = await c.get("/api/documents/d1")
        assert early.status_code == 200 and early.headers["content-type"] == "application/json"
        expected = fold(Document("d1"), await store.read_stream("d1")).state
        assert early.content == body_of("d1", v, expected)
        await catch_up(pg_pool)
        stored = await pg_pool.fetchval("SELECT state FROM read.doc_state WHERE doc_id = 'd1'")
        late = await c.get("/api/documents/d1")
    assert late.content == body_of("d1", v, bytes(stored)) == early.content
    state = late.json()["state"]
    assert (state["id"], state["title"], state["v"]) == ("d1", "P", v)
    assert [e["id"] for e in state["layers"][0]["elements"]] == ["e1", "e2"]


async def test_min_v_returns_as_soon_as_the_view_catches_up(
    gateway: Gateway, pg_pool: asyncpg.Pool
) -> None:
    await create(gateway)
    await catch_up(pg_pool)
    async with gateway.client("alice") as c:
        v = await post_ops(c, "d1", [rect("e1"), rect("e2")])
        asked = time.monotonic()
        waiting = asyncio.create_task(c.get(f"/api/documents/d1?min_v={v}"))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # the view is at 2, not at v
        caught_up = time.monotonic()
        await catch_up(pg_pool)
        r = await waiting
        answered = time.monotonic()
    assert r.status_code == 200 and r.json()["v"] == v
    assert answered - caught_up < 0.5, "woken by the worker's NOTIFY, not a poll or a timeout"
    assert answered - asked < 2.0


async def test_min_v_times_out_with_504_after_5_s(gateway: Gateway, pg_pool: asyncpg.Pool) -> None:
    await create(gateway)
    await catch_up(pg_pool)
    async with gateway.client("alice") as c:
        started = time.monotonic()
        # Beyond the write side's version: it may come, so the gateway waits, then 504.
        r = await c.get("/api/documents/d1?min_v=50")
        took = time.monotonic() - started
    assert (r.status_code, r.json()["code"]) == (504, "timeout")
    assert 5.0 <= took < 6.5
    async with gateway.client("alice") as c:  # min_v already reached: no wait
        started = time.monotonic()
        assert (await c.get("/api/documents/d1?min_v=2")).status_code == 200
        assert time.monotonic() - started < 0.5


async def test_at_is_the_fold_of_the_first_v_events_across_history_rows(
    gateway: Gateway, pg_pool: asyncpg.Pool
) -> None:
    await create(gateway)
    rng = random.Random(7)
    ops: list[dict[str, Any]] = []
    for i in range(HISTORY_EVERY + 60):
        if i % 4 == 0:
            ops.append(rect(f"e{i}", i))
        elif i % 4 == 1:
            ops.append({"kind": "element.update", "element": f"e{i - 1}", "set": {"x": -i}})
        else:
            ops.append({"kind": "doc.rename", "title": f"title {i}"})
    async with gateway.client("alice") as c:
        head = await post_ops(c, "d1", ops)
        events = await PostgresStore(pg_pool).read_stream("d1")
        assert head > HISTORY_EVERY
        # Before the views have anything (replayed from v = 0), and after.
        r = await c.get(f"/api/documents/d1?at={HISTORY_EVERY + 1}")
        expected = fold(Document("d1"), events[: HISTORY_EVERY + 1]).state
        assert r.content == body_of("d1", HISTORY_EVERY + 1, expected)
        await catch_up(pg_pool)
        versions = {1, 2, HISTORY_EVERY - 1, HISTORY_EVERY, HISTORY_EVERY + 1, head}
        versions |= {rng.randint(1, head) for _ in range(15)}
        for v in sorted(versions):
            started = time.monotonic()
            r = await c.get(f"/api/documents/d1?at={v}")
            took = time.monotonic() - started
            assert r.status_code == 200, r.text
            assert r.content == body_of("d1", v, fold(Document("d1"), events[:v]).state), v
            assert took < 1.0
        # min_v and at together: wait for the view, then travel.
        r = await c.get(f"/api/documents/d1?at=3&min_v={head}")
        assert r.json()["v"] == 3


# -- events, diff, activity, versions --------------------------------------------------


async def test_events_pages_walk_the_whole_stream_with_no_gap(
    gateway: Gateway, pg_pool: asyncpg.Pool
) -> None:
    await create(gateway)
    async with gateway.client("alice") as c:
        head = await post_ops(c, "d1", [rect(f"e{i}") for i in range(20)])
        walked: list[dict[str, Any]] = []
        after: int | None = 0
        pages = 0
        while after is not None:
            r = await c.get(f"/api/documents/d1/events?after={after}&limit=7")
            assert r.status_code == 200
            body = r.json()
            assert set(body) == {"events", "next"}
            walked.extend(body["events"])
            after = body["next"]
            pages += 1
        default = (await c.get("/api/documents/d1/events")).json()
        beyond = (await c.get(f"/api/documents/d1/events?after={head}")).json()
    assert [e["v"] for e in walked] == list(range(1, head + 1))
    assert pages == -(-head // 7)
    assert default == {"events": walked, "next": None}  # 22 events: one default page
    assert beyond == {"events": [], "next": None}
    stored = await PostgresStore(pg_pool).read_stream("d1")
    for event, e in zip(walked, stored, strict=True):
        assert set(event) == {"v", "op", "actor", "id", "ts"}  # the websocket event, no type
        assert event["op"] == orjson.loads(e.op)
        assert (event["v"], event["actor"], event["id"], event["ts"]) == (
            e.v,
            e.actor,
            e.op_id,
            e.ts,
        )
    assert walked[0]["id"] is None and walked[0]["op"]["kind"] == "doc.create"


async def test_diff_has_the_protocols_shape(gateway: Gateway, pg_pool: asyncpg.Pool) -> None:
    await create(gateway)
    async with gateway.client("alice") as c:
        base = await post_ops(c, "d1", [rect("e1"), rect("e2"), rect("e3")])
        head = await post_ops(
            c,
            "d1",
            [
                {"kind": "element.update", "element": "e1", "set": {"x": 7, "fill": "#ff0000"}},
                {"kind": "element.remove", "element": "e2"},
                rect("e4"),
                {"kind": "layer.add", "layer": "L2", "name": "Top"},
                {"kind": "layer.update", "layer": "L1", "set": {"name": "Back"}},
            ],
        )
        await catch_up(pg_pool)
        r = await c.get(f"/api/documents/d1/diff?from={base}&to={head}")
        back = await c.get(f"/api/documents/d1/diff?from={head}&to={base}")
    assert r.status_code == 200
    assert r.json() == {
        "from": base,
        "to": head,
        "added": ["e4"],
        "removed": ["e2"],
        "changed": {"e1": {"x": [0, 7], "fill": [None, "#ff0000"]}},
        "layers": {"added": ["L2"], "removed": [], "changed": {"L1": {"name": ["Bg", "Back"]}}},
    }
    assert (back.json()["added"], back.json()["removed"]) == (["e2"], ["e4"])


async def test_activity_newest_first_and_named_versions(
    gateway: Gateway, pg_pool: asyncpg.Pool
) -> None:
    await create(gateway)
    async with gateway.client("alice") as alice, gateway.client("bob") as bob:
        await alice.put("/api/documents/d1/members/bob", json={"role": "editor"})
        await post_ops(bob, "d1", [rect("e1")])
        named = await alice.post("/api/documents/d1/versions", json={"name": "draft"})
        await post_ops(alice, "d1", [{"kind": "doc.rename", "title": "Q"}])
        await catch_up(pg_pool)
        activity = (await alice.get("/api/documents/d1/activity")).json()
        two = (await alice.get("/api/documents/d1/activity?limit=2")).json()
        versions = (await bob.get("/api/documents/d1/versions")).json()
    stored = await PostgresStore(pg_pool).read_stream("d1")
    assert activity == {
        "items": [{"v": e.v, "actor": e.actor, "kind": e.kind, "ts": e.ts} for e in stored[::-1]]
    }
    assert [(i["v"], i["actor"], i["kind"]) for i in activity["items"]] == [
        (4, "alice", "doc.rename"),
        (3, "bob", "element.add"),
        (2, "alice", "layer.add"),
        (1, "alice", "doc.create"),
    ]
    assert two["items"] == activity["items"][:2]
    assert versions == {"versions": [named.json()]}
    assert set(named.json()) == {"name", "v", "ts", "actor"}


# -- the catalog -----------------------------------------------------------------------


async def test_catalog_is_most_recently_edited_first_and_pages_by_cursor(
    gateway: Gateway, pg_pool: asyncpg.Pool
) -> None:
    for i in range(7):
        await create(gateway, f"doc{i}", title=f"T{i}")
    async with gateway.client("alice") as alice:
        await post_ops(alice, "doc2", [rect("e1"), rect("e2")])
        await post_ops(alice, "doc5", [{"kind": "layer.add", "layer": "L2", "name": "x"}])
        await alice.put("/api/documents/doc2/members/bob", json={"role": "viewer"})
        await catch_up(pg_pool)
        whole = (await alice.get("/api/documents")).json()
        pages: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
            body = (await alice.get("/api/documents", params=params)).json()
            pages.extend(body["documents"])
            cursor = body["next"]
            if cursor is None:
                break
            assert isinstance(cursor, str)
    async with gateway.client("bob") as bob, gateway.client("eve") as eve:
        bobs = (await bob.get("/api/documents")).json()
        eves = (await eve.get("/api/documents")).json()
    assert whole["next"] is None and len(whole["documents"]) == 7
    assert pages == whole["documents"]
    docs = whole["documents"]
    assert [d["id"] for d in docs[:2]] == ["doc5", "doc2"]  # the last edited first
    keys = [(-d["updated_at"], d["id"]) for d in docs]
    assert keys == sorted(keys)
    for d in docs:
        assert set(d) == SUMMARY_KEYS
        assert (d["owner"], d["role"]) == ("alice", "owner")
    doc2 = next(d for d in docs if d["id"] == "doc2")
    assert (doc2["title"], doc2["v"], doc2["layers"], doc2["elements"]) == ("T2", 4, 1, 2)
    assert [(d["id"], d["role"]) for d in bobs["documents"]] == [("doc2", "viewer")]
    assert eves == {"documents": [], "next": None}


# -- the contract ----------------------------------------------------------------------


async def test_openapi_documents_every_query(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        spec = (await c.get("/openapi.json")).json()
    for path in (
        "/api/documents",
        "/api/documents/{doc_id}",
        "/api/documents/{doc_id}/events",
        "/api/documents/{doc_id}/diff",
        "/api/documents/{doc_id}/activity",
        "/api/documents/{doc_id}/versions",
    ):
        get = spec["paths"][path]["get"]
        assert {"200", "400", "401"} <= set(get["responses"]) or path.endswith("versions")
        assert get["security"] == [{"bearer": []}]
