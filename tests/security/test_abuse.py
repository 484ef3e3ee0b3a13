"""Abuse (DESIGN.md I7, I8) over a real gateway: ids crafted to reach another document,
SQL metacharacters stored and returned verbatim, asset ids that try path tricks,
oversize bodies and frames, floods."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
import pytest

from app.views.writer import catch_up
from tests.e2e.conftest import Gateway
from tests.e2e.ws_client import close_code, open_ws
from tests.security.world import MARKER, PNG_ID, ROUTES, build, call

# Ways to name a1 (or any other document) from a path that should only ever mean one
# document id. Raw paths: httpx must not normalize them.
CRAFTED_IDS = [
    "..%2Fa1",
    "b1%2F..%2Fa1",
    "b1%2F%2E%2E%2Fa1",
    "%2E%2E",
    "..",
    "b1%00a1",
    "a1%00",
    "a1%20",
    "%20a1",
    "A1",
    "a1.",
    "a%31",  # %31 is "1": the decoded id is a1 itself, which bob may not read either
    "%D0%B01",  # Cyrillic a + 1: a lookalike of a1
    "a%E2%80%8B1",  # zero-width space inside
    "a1%2Fevents",
    "*",
    "%25",
    "a1%3Bb1",
    "a" * 65,
    "a" * 10_000,
]


@pytest.mark.parametrize("route", [r for r in ROUTES if r.per_doc], ids=lambda r: r.name)
async def test_crafted_ids_never_reach_another_document(gateway: Gateway, route: Any) -> None:
    await build(gateway)
    failures = []
    async with gateway.client("bob") as bob:
        for crafted in CRAFTED_IDS:
            url = gateway.url + route.url(crafted, user="bob")
            r = await call(bob, route, url)
            if r.status_code >= 500 or r.status_code in (200, 201, 204) or MARKER in r.text:
                failures.append(f"{crafted[:30]}: {r.status_code} {r.text[:80]}")
    async with gateway.client("alice") as alice:
        events = (await alice.get("/api/documents/a1/events")).json()["events"]
        assert [e["v"] for e in events] == [1, 2, 3]
    assert not failures, failures


async def test_crafted_ids_on_the_socket_are_4404_or_4403(gateway: Gateway) -> None:
    await build(gateway)
    for crafted in ["..%2Fa1", "b1%2F..%2Fa1", "%2E%2E", "A1", "a%31", "%D0%B01", "a" * 65]:
        try:
            ws = await open_ws(gateway, crafted)
        except Exception:  # refused at the handshake: no route for it, fine
            continue
        await ws.send({"type": "hello", "token": gateway.token("bob")})
        assert await close_code(ws) in (4403, 4404), crafted


NASTY = [
    "'; DROP TABLE events; --",
    '" OR "1"="1',
    "') OR ('a'='a",
    "\\'; SELECT pg_sleep(5); --",
    "%_%",
    "$1 $$ $tag$",
    "/* */ UNION SELECT * FROM members --",
    "{'$gt': ''}",
    "<script>alert(1)</script>",
    "ünï©ødé 🎨 \u202e rtl",
]
NASTY_IDS = ["x--1", "a-b_c", "--", "_"]  # what ids allow of SQL comment syntax
NASTY_USERS = ["o'brien"[0:1] + "-.@--", "a@b.c--", "x.y"]


async def test_sql_metacharacters_in_every_string_field_are_stored_verbatim(
    gateway: Gateway, pg_pool: asyncpg.Pool
) -> None:
    async with gateway.client("alice") as alice:
        for i, text in enumerate(NASTY):
            doc = NASTY_IDS[i % len(NASTY_IDS)] + str(i)
            r = await alice.post("/api/documents", json={"id": doc, "title": text})
            assert r.status_code == 201, r.text
            assert r.json()["title"] == text
            ops = [
                {"kind": "layer.add", "layer": "L--1", "name": text},
                {
                    "kind": "element.add",
                    "element": "e--1",
                    "layer": "L--1",
                    "shape": "text",
                    "props": {"text": text, "x": 0, "y": 0},
                },
                {"kind": "doc.rename", "title": text + "!"},
            ]
            for n, op in enumerate(ops):
                r = await alice.post(f"/api/documents/{doc}/ops", json={"id": f"o--{n}", "op": op})
                assert r.status_code == 200, r.text
            r = await alice.post(f"/api/documents/{doc}/versions", json={"name": text})
            assert r.status_code == 201 and r.json()["name"] == text, r.text
            user = NASTY_USERS[i % len(NASTY_USERS)]
            r = await alice.put(f"/api/documents/{doc}/members/{user}", json={"role": "viewer"})
            assert r.status_code == 200 and r.json()["user"] == user, r.text
            await catch_up(pg_pool)
            state = (await alice.get(f"/api/documents/{doc}?min_v=4")).json()["state"]
            assert state["title"] == text + "!"
            assert state["layers"][0]["name"] == text
            assert state["layers"][0]["elements"][0]["props"]["text"] == text
            versions = (await alice.get(f"/api/documents/{doc}/versions")).json()["versions"]
            assert [v["name"] for v in versions] == [text]
            async with gateway.client(user) as member:
                r = await member.get(f"/api/documents/{doc}")
                assert r.status_code == 200 and r.json()["state"]["title"] == text + "!"
        listed = (await alice.get("/api/documents")).json()["documents"]
        assert sorted(d["title"] for d in listed) == sorted(t + "!" for t in NASTY)
    # Still exactly the rows written: nothing dropped, nothing else reached.
    async with pg_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM documents") == len(NASTY)
        assert await conn.fetchval("SELECT count(*) FROM events") == 4 * len(NASTY)


@pytest.mark.parametrize("text", ["a\u0000b", "\\ud800"], ids=["nul", "lone-surrogate"])
async def test_nul_and_lone_surrogates_get_a_coded_4xx_never_a_500(
    gateway: Gateway, text: str
) -> None:
    await build(gateway)
    raw_title = orjson.dumps(text).decode() if text != "\\ud800" else '"\\ud800"'
    bodies = [
        ("/api/documents", '{"title": RAW}'.replace("RAW", raw_title)),
        ("/api/documents/a1/versions", '{"name": RAW}'.replace("RAW", raw_title)),
        (
            "/api/documents/a1/ops",
            '{"id": "n1", "op": {"kind": "doc.rename", "title": RAW}}'.replace("RAW", raw_title),
        ),
        (
            "/api/documents/a1/ops",
            '{"id": "n2", "op": {"kind": "layer.add", "layer": "L9", "name": RAW}}'.replace(
                "RAW", raw_title
            ),
        ),
    ]
    async with gateway.client("alice") as alice:
        for path, body in bodies:
            r = await alice.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code < 500, (path, r.status_code, r.text)
            if r.status_code >= 400:
                assert r.json()["code"] in {"invalid", "bad_message"}, r.text
            else:  # stored: then returned verbatim
                got = await alice.get("/api/documents/a1/events?after=3")
                assert got.status_code == 200
        assert (await alice.get("/healthz")).status_code == 200


ASSET_TRICKS = [
    "..%2F..%2Fetc%2Fpasswd",
    "%2E%2E%2F" + PNG_ID,
    PNG_ID + "%2F..",
    PNG_ID + "%00",
    PNG_ID + ".png",
    PNG_ID.upper(),
    PNG_ID[:-1],
    PNG_ID + "0",
    "%2Fetc%2Fpasswd",
    "..",
    "*",
    "' OR '1'='1",
    "a" * 5000,
]


async def test_asset_ids_that_try_path_tricks_are_refused(gateway: Gateway) -> None:
    await build(gateway)
    async with gateway.client("bob") as bob:
        for trick in ASSET_TRICKS:
            r = await bob.get(gateway.url + "/api/assets/" + trick)
            assert r.status_code in (400, 404), (trick, r.status_code)
            assert r.json()["code"] in {"invalid", "not_found"}, r.text
        # the real id works (assets are shared by content: whoever knows the hash)
        r = await bob.get(f"/api/assets/{PNG_ID}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert "sandbox" in r.headers["content-security-policy"]
        # not an image, or SVG not declared as such, is refused
        r = await bob.post(
            "/api/assets", content=b"<svg onload=alert(1)>", headers={"content-type": "image/png"}
        )
        assert r.status_code == 400


async def test_oversize_bodies_are_413_on_every_body_route(make_gateway: Any) -> None:
    gw = await make_gateway(MAX_BODY_BYTES="4096", MAX_ASSET_BYTES="8192")
    await build(gw)
    async with gw.client("alice") as alice:
        for route in ROUTES:
            if route.method not in ("POST", "PUT"):
                continue
            if isinstance(route.body, bytes):
                body = route.body + b"\x00" * 9000
            else:
                body = orjson.dumps({**route.body, "pad": "x" * 5000})
            headers = {
                "content-type": "image/png" if isinstance(route.body, bytes) else "application/json"
            }
            url = route.url("a1", user="zed")
            r = await alice.request(route.method, url, content=body, headers=headers)
            assert (r.status_code, r.json()["code"]) == (413, "too_large"), (route.name, r.text)

            # the same without a content-length (chunked): refused while it is read
            async def chunks(data: bytes = body) -> Any:
                for i in range(0, len(data), 1000):
                    yield data[i : i + 1000]

            r = await alice.request(route.method, url, content=chunks(), headers=headers)
            assert (r.status_code, r.json()["code"]) == (413, "too_large"), (route.name, r.text)
        events = (await alice.get("/api/documents/a1/events")).json()["events"]
        assert [e["v"] for e in events] == [1, 2, 3]


async def test_an_oversize_frame_closes_1009_before_and_after_hello(make_gateway: Any) -> None:
    gw = await make_gateway(MAX_BODY_BYTES="4096")
    await build(gw)
    ws = await open_ws(gw, "a1", max_size=None)
    await ws.send("x" * 5000)  # before hello: not even JSON
    assert await close_code(ws) == 1009
    ws = await open_ws(gw, "a1")
    await ws.hello(gw.token("alice"))
    await ws.send(b"\x00" * 5000)  # a binary frame
    assert await close_code(ws) == 1009
    async with gw.client("alice") as alice:
        assert (await alice.get("/healthz")).status_code == 200


async def test_a_flood_of_frames_is_rate_limited_then_closed_4429(make_gateway: Any) -> None:
    gw = await make_gateway(WS_OP_RATE="5", WS_OP_BURST="5")
    await build(gw)
    ws = await open_ws(gw, "a1")
    await ws.hello(gw.token("alice"))
    seen: list[str] = []

    async def read() -> int | None:
        return await close_code_collect(ws, seen)

    reader = asyncio.create_task(read())
    for i in range(400):
        try:
            await ws.send({"type": "op", "id": f"f{i}", "op": {"kind": "doc.rename", "title": "x"}})
        except Exception:
            break
    code = await reader
    assert code == 4429
    assert "rate_limited" in seen
    # a well-behaved client still gets in
    other = await open_ws(gw, "a1")
    await other.hello(gw.token("ed"))


async def close_code_collect(ws: Any, seen: list[str]) -> int | None:
    from websockets.exceptions import ConnectionClosed

    try:
        async with asyncio.timeout(10):
            while True:
                message = orjson.loads(await ws.ws.recv())
                if message.get("code"):
                    seen.append(message["code"])
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def test_a_flood_of_connections_is_refused_4429(make_gateway: Any) -> None:
    gw = await make_gateway(WS_USER_CONNECTIONS="3")
    await build(gw)
    held = [await open_ws(gw, "a1") for _ in range(3)]
    for ws in held:
        await ws.hello(gw.token("alice"))
    extra = await open_ws(gw, "a1")
    await extra.send({"type": "hello", "token": gw.token("alice")})
    assert await close_code(extra) == 4429


async def test_a_flood_of_http_ops_is_rate_limited_429(make_gateway: Any) -> None:
    gw = await make_gateway(
        WS_USER_OP_RATE="5", WS_USER_OP_BURST="5", WS_OP_RATE="5", WS_OP_BURST="5"
    )
    await build(gw)
    async with gw.client("alice") as alice:
        codes = [
            (
                await alice.post(
                    "/api/documents/a1/ops",
                    json={"id": f"h{i}", "op": {"kind": "doc.rename", "title": f"t{i}"}},
                )
            ).status_code
            for i in range(40)
        ]
        assert 429 in codes, codes
        assert codes[0] == 200, codes  # what is left of the burst passes
        limited = await alice.post(
            "/api/documents/a1/ops",
            json={"id": "h-late", "op": {"kind": "doc.rename", "title": "x"}},
        )
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert limited.headers["retry-after"] == "1"


async def test_huge_integers_in_bodies_and_queries_are_400_never_500(gateway: Gateway) -> None:
    await build(gateway)
    huge = str(2**70)
    async with gateway.client("alice") as alice:
        r = await alice.post(
            "/api/documents/a1/restore",
            content='{"v": ' + huge + "}",
            headers={"content-type": "application/json"},
        )
        assert (r.status_code, r.json()["code"]) == (400, "invalid"), r.text
        for query in ("?at=" + huge, "/events?after=" + huge, "/diff?from=1&to=" + huge):
            r = await alice.get("/api/documents/a1" + query)
            assert (r.status_code, r.json()["code"]) == (400, "invalid"), (query, r.text)
        big = {"kind": "layer.move", "layer": "L1", "index": 2**70}
        r = await alice.post("/api/documents/a1/ops", json={"id": "big", "op": big})
        assert r.status_code < 500, r.text


async def test_an_undeclared_method_is_405_with_allow(gateway: Gateway) -> None:
    async with gateway.client("alice") as alice:
        for method, path in (("TRACE", "/api/documents"), ("PATCH", "/api/documents/a1/ops")):
            r = await alice.request(method, path)
            assert (r.status_code, r.json()["code"]) == (405, "invalid"), r.text
            assert "POST" in r.headers["allow"]
