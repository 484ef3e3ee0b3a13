"""The HTTP write API over real loopback HTTP (PROTOCOL.md section 5)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import pytest

from app.tokens import issue_token
from tests.e2e.conftest import SECRET, Gateway

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def create(gw: Gateway, owner: str = "alice", doc_id: str = "d1") -> None:
    async with gw.client(owner) as c:
        r = await c.post("/api/documents", json={"title": "Poster", "id": doc_id})
        assert r.status_code == 201, r.text
        r = await c.post(
            f"/api/documents/{doc_id}/ops",
            json={"id": "L", "op": {"kind": "layer.add", "layer": "L1", "name": "Bg"}},
        )
        assert r.status_code == 200, r.text


def rect_op(op_id: str, element: str) -> dict[str, Any]:
    return {
        "id": op_id,
        "op": {
            "kind": "element.add",
            "element": element,
            "layer": "L1",
            "shape": "rect",
            "props": {"x": 1, "y": 2, "w": 3, "h": 4},
        },
    }


async def test_create_document_returns_a_summary(gateway: Gateway) -> None:
    async with gateway.client("alice") as c:
        r = await c.post("/api/documents", json={"title": "Poster"})
    body = r.json()
    assert r.status_code == 201
    assert set(body) == {"id", "title", "v", "owner", "role", "layers", "elements", "updated_at"}
    assert (body["title"], body["v"], body["owner"], body["role"]) == (
        "Poster",
        1,
        "alice",
        "owner",
    )
    assert (body["layers"], body["elements"]) == (0, 0) and body["updated_at"] > 1_600_000_000_000


async def test_an_existing_id_is_a_conflict(gateway: Gateway) -> None:
    await create(gateway)
    async with gateway.client("bob") as c:
        r = await c.post("/api/documents", json={"title": "Mine", "id": "d1"})
    assert (r.status_code, r.json()["code"]) == (409, "conflict")


async def test_ops_are_acked_with_their_version_and_resent_ids_are_stored_once(
    gateway: Gateway,
) -> None:
    await create(gateway)
    async with gateway.client("alice") as c:
        first = await c.post("/api/documents/d1/ops", json=rect_op("op-1", "e1"))
        again = await c.post("/api/documents/d1/ops", json=rect_op("op-1", "e1"))
        other = await c.post("/api/documents/d1/ops", json=rect_op("op-2", "e2"))
    assert first.json() == again.json() == {"v": 3}
    assert other.json() == {"v": 4}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_message"),
        (b"[1, 2]", 400, "bad_message"),
        (b'{"id": "x", "op": {"kind": "element.add"}}', 400, "invalid"),
        (b'{"id": "x", "op": {"kind": "doc.rename", "title": "t"}, "extra": 1}', 400, "invalid"),
        (b'{"id": 7, "op": {}}', 400, "invalid"),
        (b'{"id": "bad id!", "op": {"kind": "doc.rename", "title": "t"}}', 400, "invalid"),
        (
            b'{"id": "x", "op": {"kind": "element.update", "element": "e", "set": {"x": NaN}}}',
            400,
            "bad_message",
        ),
        (
            b'{"id": "x", "op": {"kind": "element.add", "element": "e1", "layer": "L9", '
            b'"shape": "rect", "props": {}}}',
            409,
            "conflict",
        ),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    gateway: Gateway, body: bytes, status: int, code: str
) -> None:
    await create(gateway)
    async with gateway.client("alice") as c:
        r = await c.post(
            "/api/documents/d1/ops", content=body, headers={"content-type": "application/json"}
        )
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
        assert r.json()["message"]
        ok = await c.post("/api/documents/d1/ops", json=rect_op("after", "e1"))
    assert ok.json() == {"v": 3}, "the rejected input must not have changed the document"


async def test_a_huge_body_is_refused_413(gateway: Gateway) -> None:
    await create(gateway)
    huge = b'{"id": "x", "op": {"kind": "doc.rename", "title": "' + b"a" * 2_000_000 + b'"}}'
    async with gateway.client("alice") as c:
        r = await c.post("/api/documents/d1/ops", content=huge)
    assert (r.status_code, r.json()["code"]) == (413, "too_large")


async def test_tokens_are_required_and_checked(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        none = await c.post("/api/documents", json={"title": "t"})
        bad = await c.post(
            "/api/documents", json={"title": "t"}, headers={"Authorization": "Bearer not.a.token"}
        )
        expired = await c.post(
            "/api/documents",
            json={"title": "t"},
            headers={"Authorization": f"Bearer {expired_token()}"},
        )
    for r in (none, bad, expired):
        assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")


def expired_token() -> str:
    return issue_token(SECRET, "alice", name=None, ttl=10, now=time.time() - 3600)


async def test_roles_viewers_members_and_strangers(gateway: Gateway) -> None:
    await create(gateway)
    async with (
        gateway.client("alice") as owner,
        gateway.client("bob") as bob,
        gateway.client("eve") as eve,
    ):
        assert (await eve.post("/api/documents/d1/ops", json=rect_op("x", "e1"))).status_code == 403
        assert (
            await eve.post("/api/documents/nope/ops", json=rect_op("x", "e1"))
        ).status_code == 404
        r = await owner.put("/api/documents/d1/members/bob", json={"role": "viewer"})
        assert r.status_code == 200 and r.json() == {"user": "bob", "role": "viewer"}
        r = await bob.post("/api/documents/d1/ops", json=rect_op("b1", "e1"))
        assert (r.status_code, r.json()["code"]) == (403, "forbidden")
        # Only the owner manages members; the owner cannot be demoted or removed.
        assert (
            await bob.put("/api/documents/d1/members/eve", json={"role": "editor"})
        ).status_code == 403
        assert (
            await owner.put("/api/documents/d1/members/alice", json={"role": "viewer"})
        ).status_code == 400
        assert (await owner.delete("/api/documents/d1/members/alice")).status_code == 400
        assert (
            await owner.put("/api/documents/d1/members/bob", json={"role": "owner"})
        ).status_code == 400
        await owner.put("/api/documents/d1/members/bob", json={"role": "editor"})
        r = await bob.post("/api/documents/d1/ops", json=rect_op("b1", "e1"))
        assert r.json() == {"v": 3}
        assert (await owner.delete("/api/documents/d1/members/bob")).status_code == 204
        assert (await owner.delete("/api/documents/d1/members/bob")).status_code == 404
        assert (
            await bob.post("/api/documents/d1/ops", json=rect_op("b2", "e2"))
        ).status_code == 403


async def test_named_versions_and_restore(gateway: Gateway) -> None:
    await create(gateway)
    async with gateway.client("alice") as c:
        await c.post("/api/documents/d1/ops", json=rect_op("a", "e1"))
        named = await c.post("/api/documents/d1/versions", json={"name": "first draft"})
        assert named.status_code == 201
        assert {k: named.json()[k] for k in ("name", "v", "actor")} == {
            "name": "first draft",
            "v": 3,
            "actor": "alice",
        }
        await c.post(
            "/api/documents/d1/ops",
            json={"id": "rm", "op": {"kind": "element.remove", "element": "e1"}},
        )
        r = await c.post("/api/documents/d1/restore", json={"v": 3})
        assert (r.status_code, r.json()) == (200, {"v": 5})
        bad = await c.post("/api/documents/d1/restore", json={"v": 99})
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid")
        assert (await c.post("/api/documents/d1/restore", json={"v": 0})).status_code == 400


async def test_assets_are_content_addressed(gateway: Gateway) -> None:
    async with gateway.client("alice") as c:
        r1 = await c.post("/api/assets", content=PNG, headers={"content-type": "image/png"})
        r2 = await c.post("/api/assets", content=PNG, headers={"content-type": "image/png"})
        assert r1.status_code == r2.status_code == 201
        assert r1.json() == r2.json() == {"asset": hashlib.sha256(PNG).hexdigest()}
        got = await c.get(f"/api/assets/{r1.json()['asset']}")
        assert got.content == PNG and got.headers["content-type"] == "image/png"
        not_image = await c.post(
            "/api/assets", content=b"hello", headers={"content-type": "text/plain"}
        )
        assert (not_image.status_code, not_image.json()["code"]) == (400, "invalid")
        missing = await c.get("/api/assets/" + "0" * 64)
        assert missing.status_code == 404


async def test_dev_token_only_in_dev(gateway: Gateway, make_gateway: Any) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        r = await c.get("/api/dev/token", params={"user": "alice"})
        assert r.status_code == 200 and r.json()["token"]
    prod = await make_gateway(APP_ENV="prod")
    async with httpx.AsyncClient(base_url=prod.url) as c:
        r = await c.get("/api/dev/token", params={"user": "alice"})
        assert r.status_code == 404


async def test_health_readiness_metrics_and_unknown_routes(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as c:
        assert (await c.get("/healthz")).status_code == 200
        ready = await c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["schema"] == "current"
        metrics = await c.get("/metrics")
        assert metrics.status_code == 200 and "atelier" in metrics.text
        nowhere = await c.get("/nowhere")
        assert (nowhere.status_code, nowhere.json()["code"]) == (404, "not_found")


async def test_openapi_lists_every_route_the_gateway_serves(gateway: Gateway) -> None:
    from starlette.routing import WebSocketRoute

    from app.gateway.app import create_app

    async with httpx.AsyncClient(base_url=gateway.url) as c:
        spec = (await c.get("/openapi.json")).json()
    # HTTP routes only: OpenAPI does not describe the websocket (docs/websocket.md does).
    routes = [r for r in create_app(gateway.settings).routes if not isinstance(r, WebSocketRoute)]
    served = {getattr(r, "path", "") for r in routes} - {"/openapi.json"}
    assert served == set(spec["paths"])


async def test_two_gateways_take_turns_on_one_document(make_gateway: Any) -> None:
    # Each gateway keeps its own warm write model: an op sent to one must be decided on
    # what the other stored (the document it created, the layer the other added, the
    # version a restore names), never rejected on the state it last saw itself.
    one, two = await make_gateway(), await make_gateway()
    async with one.client("alice") as a, two.client("alice") as b:
        r = await a.post("/api/documents", json={"title": "Poster", "id": "d1"})
        assert r.status_code == 201, r.text
        layer = {"kind": "layer.add", "layer": "L1", "name": "Bg"}
        r = await b.post("/api/documents/d1/ops", json={"id": "L", "op": layer})
        assert r.json() == {"v": 2}, r.text
        r = await a.post("/api/documents/d1/ops", json=rect_op("e1", "e1"))
        assert r.json() == {"v": 3}, r.text
        r = await b.post("/api/documents/d1/ops", json=rect_op("e2", "e2"))
        assert r.json() == {"v": 4}, r.text
        move = {"kind": "element.update", "element": "e2", "set": {"x": 9}}
        r = await a.post("/api/documents/d1/ops", json={"id": "m", "op": move})
        assert r.json() == {"v": 5}, r.text
        missing = {"kind": "element.update", "element": "e9", "set": {"x": 9}}
        r = await a.post("/api/documents/d1/ops", json={"id": "bad", "op": missing})
        assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
        r = await b.post("/api/documents/d1/restore", json={"v": 3})
        assert r.status_code == 200 and r.json()["v"] == 6, r.text
        # Restored to v3: e2 is gone, though the gateway that moved it last saw it.
        r = await a.post("/api/documents/d1/ops", json={"id": "m2", "op": move})
        assert r.status_code == 409 and "e2" in r.json()["message"], r.text
        r = await a.post("/api/documents/d1/ops", json=rect_op("e3", "e3"))
        assert r.json() == {"v": 7}, r.text
