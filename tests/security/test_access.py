"""Access control (DESIGN.md I8, PROTOCOL.md sections 1, 4 and 5) over a real gateway:
one matrix over every HTTP route and the websocket, for every kind of caller that must
be refused (no token, expired, tampered, wrong algorithm including ``none``, another
secret, a stranger, a viewer writing, an editor managing, a document that does not
exist). Each test walks all the routes and reports every cell that failed at once."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from app.views.writer import catch_up
from tests.e2e.conftest import Gateway
from tests.e2e.ws_client import close_code, open_ws
from tests.security.world import FORGED, MARKER, ROUTES, build, call, forged, rect

WS_CELLS = 1  # the socket counts as one more route in each row of the matrix


def _check(failures: list[str], what: str, ok: bool) -> None:
    if not ok:
        failures.append(what)


def headers_for(kind: str) -> dict[str, str]:
    if kind == "no-token":
        return {}
    if kind == "empty-bearer":
        return {"Authorization": "Bearer"}
    if kind == "basic-scheme":
        return {"Authorization": "Basic YWxpY2U6YWxpY2U="}
    return {"Authorization": f"Bearer {forged(kind)}"}


def hello_token(kind: str) -> Any:
    if kind in {"no-token", "basic-scheme"}:
        return None
    if kind == "empty-bearer":
        return ""
    return forged(kind)


@pytest.mark.parametrize("kind", ["no-token", "empty-bearer", "basic-scheme", *FORGED])
async def test_an_unauthenticated_caller_gets_401_on_every_route_and_4401_on_the_socket(
    gateway: Gateway, kind: str
) -> None:
    await build(gateway)
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as anonymous:
        for route in ROUTES:
            r = await call(anonymous, route, route.url("a1"), headers_for(kind))
            ok = r.status_code == 401 and r.json()["code"] == "unauthenticated"
            _check(failures, f"{route.name}: {r.status_code} {r.text[:80]}", ok)
            _check(failures, f"{route.name} leaked the marker", MARKER not in r.text)
    ws = await open_ws(gateway, "a1")
    token = hello_token(kind)
    await ws.send({"type": "hello"} if token is None else {"type": "hello", "token": token})
    code = await close_code(ws)
    _check(failures, f"websocket: close {code}", code == 4401)
    # Nothing was changed by any of it.
    async with gateway.client("alice") as alice:
        r = await alice.get("/api/documents/a1/events")
        assert [e["v"] for e in r.json()["events"]] == [1, 2, 3]
    assert not failures, failures


async def test_a_stranger_gets_403_on_every_document_route_and_4403(
    gateway: Gateway, pg_pool: asyncpg.Pool
) -> None:
    await build(gateway)
    await catch_up(pg_pool)
    failures: list[str] = []
    async with gateway.client("bob") as bob:
        for route in (r for r in ROUTES if r.per_doc):
            r = await call(bob, route, route.url("a1", user="bob"))
            ok = r.status_code == 403 and r.json()["code"] == "forbidden"
            _check(failures, f"{route.name}: {r.status_code} {r.text[:80]}", ok)
            _check(failures, f"{route.name} leaked the marker", MARKER not in r.text)
        listed = await bob.get("/api/documents")
        assert [d["id"] for d in listed.json()["documents"]] == ["b1"]
    ws = await open_ws(gateway, "a1")
    await ws.send({"type": "hello", "token": gateway.token("bob")})
    code = await close_code(ws)
    _check(failures, f"websocket: close {code}", code == 4403)
    async with gateway.client("alice") as alice:
        r = await alice.get("/api/documents/a1/events")
        assert [e["v"] for e in r.json()["events"]] == [1, 2, 3]
        members = await alice.get("/api/documents/a1/versions")
        assert members.json() == {"versions": []}
    assert not failures, failures


async def test_a_document_that_does_not_exist_is_404_and_4404(gateway: Gateway) -> None:
    await build(gateway)
    failures: list[str] = []
    async with gateway.client("alice") as alice:
        for route in (r for r in ROUTES if r.per_doc):
            r = await call(alice, route, route.url("nope"))
            ok = r.status_code == 404 and r.json()["code"] == "not_found"
            _check(failures, f"{route.name}: {r.status_code} {r.text[:80]}", ok)
    ws = await open_ws(gateway, "nope")
    await ws.send({"type": "hello", "token": gateway.token("alice")})
    code = await close_code(ws)
    _check(failures, f"websocket: close {code}", code == 4404)
    assert not failures, failures


@pytest.mark.parametrize("user", ["vi", "ed"])
async def test_a_viewer_cannot_write_and_an_editor_cannot_manage(
    gateway: Gateway, user: str
) -> None:
    await build(gateway)
    failures: list[str] = []
    refused = [r for r in ROUTES if r.per_doc and (r.manage or (r.write and user == "vi"))]
    async with gateway.client(user) as member:
        for route in refused:
            r = await call(member, route, route.url("a1", user="ed"))
            ok = r.status_code == 403 and r.json()["code"] == "forbidden"
            _check(failures, f"{route.name}: {r.status_code} {r.text[:80]}", ok)
        for route in (r for r in ROUTES if r.per_doc and r.method == "GET"):
            r = await call(member, route, route.url("a1"))
            _check(failures, f"{route.name} read: {r.status_code}", r.status_code == 200)
    ws = await open_ws(gateway, "a1")
    welcome = await ws.hello(gateway.token(user))
    assert welcome["role"] == ("viewer" if user == "vi" else "editor")
    await ws.op("w1", rect("ws1"))
    answer = (await ws.until("ack" if user == "ed" else "reject"))[-1]
    if user == "vi":
        _check(failures, f"websocket op: {answer}", answer["code"] == "forbidden")
        # presence and ping stay allowed for a viewer
        await ws.send({"type": "ping", "t": 7})
        assert (await ws.until("pong"))[-1]["t"] == 7
    async with gateway.client("alice") as alice:
        r = await alice.get("/api/documents/a1/events")
        versions = [e["v"] for e in r.json()["events"]]
    assert versions == ([1, 2, 3] if user == "vi" else [1, 2, 3, 4]), versions
    assert not failures, failures


async def test_a_member_removed_while_connected_is_closed_4403_at_once(gateway: Gateway) -> None:
    await build(gateway)
    ws = await open_ws(gateway, "a1")
    await ws.hello(gateway.token("ed"))
    async with gateway.client("alice") as alice:
        r = await alice.delete("/api/documents/a1/members/ed")
        assert r.status_code == 204
    assert await close_code(ws, 1.5) == 4403
    async with gateway.client("ed") as ed:
        r = await ed.post("/api/documents/a1/ops", json={"id": "late", "op": rect("late")})
        assert r.status_code == 403
