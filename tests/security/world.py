"""A small world for the access tests: one real gateway, documents and users.

``a1`` is owned by alice, with ``ed`` (editor) and ``vi`` (viewer); its title and a
layer name are markers that must never reach anyone else. ``b1`` is bob's own document
(bob is a member of nothing else). One PNG asset is uploaded.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import jwt.warnings

from tests.e2e.conftest import SECRET, Gateway

MARKER = "SECRET-A1-7f3c"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PNG_ID = hashlib.sha256(PNG).hexdigest()


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {doc}, {user} and {asset} are filled in
    body: Any = None  # JSON body, or bytes for an upload
    per_doc: bool = True
    write: bool = False  # a viewer may not
    manage: bool = False  # the owner only

    def url(self, doc: str, user: str = "zed", asset: str = PNG_ID) -> str:
        return self.path.format(doc=doc, user=user, asset=asset)

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def rect(element: str) -> dict[str, Any]:
    return {
        "kind": "element.add",
        "element": element,
        "layer": "L1",
        "shape": "rect",
        "props": {"x": 1, "y": 2, "w": 3, "h": 4},
    }


# Every HTTP route of app/gateway that needs a token (the public ones are /, /static,
# /healthz, /readyz, /metrics, /openapi.json and /api/dev/token, which is dev only).
ROUTES = [
    Route("POST", "/api/documents", {"title": "t"}, per_doc=False),
    Route("GET", "/api/documents", per_doc=False),
    Route("GET", "/api/documents/{doc}"),
    Route("GET", "/api/documents/{doc}?at=1"),
    Route("GET", "/api/documents/{doc}/events"),
    Route("GET", "/api/documents/{doc}/diff?from=1&to=2"),
    Route("GET", "/api/documents/{doc}/activity"),
    Route("GET", "/api/documents/{doc}/versions"),
    Route("POST", "/api/documents/{doc}/ops", {"id": "op-x", "op": rect("ex")}, write=True),
    Route("POST", "/api/documents/{doc}/versions", {"name": "v"}, write=True),
    Route("POST", "/api/documents/{doc}/restore", {"v": 1}, write=True),
    Route(
        "PUT", "/api/documents/{doc}/members/{user}", {"role": "viewer"}, write=True, manage=True
    ),
    Route("DELETE", "/api/documents/{doc}/members/{user}", write=True, manage=True),
    Route("POST", "/api/assets", PNG, per_doc=False),
    Route("GET", "/api/assets/{asset}", per_doc=False),
]


async def call(
    http: httpx.AsyncClient, route: Route, url: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    if isinstance(route.body, bytes):
        return await http.request(
            route.method,
            url,
            content=route.body,
            headers={"content-type": "image/png", **(headers or {})},
        )
    return await http.request(route.method, url, json=route.body, headers=headers)


async def build(gw: Gateway) -> None:
    async with gw.client("alice") as alice, gw.client("bob") as bob:
        r = await alice.post("/api/documents", json={"id": "a1", "title": MARKER})
        assert r.status_code == 201, r.text
        for op_id, op in (
            ("l1", {"kind": "layer.add", "layer": "L1", "name": MARKER}),
            ("e1", rect("e1")),
        ):
            r = await alice.post("/api/documents/a1/ops", json={"id": op_id, "op": op})
            assert r.status_code == 200, r.text
        for user, role in (("ed", "editor"), ("vi", "viewer")):
            r = await alice.put(f"/api/documents/a1/members/{user}", json={"role": role})
            assert r.status_code == 200, r.text
        r = await bob.post("/api/documents", json={"id": "b1", "title": "bobs"})
        assert r.status_code == 201, r.text
        r = await alice.post("/api/assets", content=PNG, headers={"content-type": "image/png"})
        assert r.status_code == 201, r.text


def forged(kind: str, user: str = "alice") -> str:
    """A token that must be refused, of the given kind."""
    now = int(time.time())
    claims = {"sub": user, "exp": now + 600, "iat": now}
    key = SECRET.encode()
    if kind == "expired":
        return jwt.encode({**claims, "exp": now - 60, "iat": now - 700}, key, algorithm="HS256")
    if kind == "tampered-signature":
        good = jwt.encode(claims, key, algorithm="HS256")
        head, body, sig = good.split(".")
        return f"{head}.{body}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}"
    if kind == "tampered-payload":
        good = jwt.encode({**claims, "sub": "nobody"}, key, algorithm="HS256")
        head, _, sig = good.split(".")
        other = jwt.encode(claims, key, algorithm="HS256").split(".")[1]
        return f"{head}.{other}.{sig}"
    if kind == "alg-none":
        return jwt.encode(claims, None, algorithm="none")
    if kind == "alg-none-signed":  # alg none in the header, a valid HS256 signature kept
        good = jwt.encode(claims, key, algorithm="HS256")
        none = jwt.encode(claims, None, algorithm="none")
        return none.split(".")[0] + "." + good.split(".", 1)[1]
    if kind in {"HS384", "HS512"}:  # the right secret, another HMAC than HS256
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            return jwt.encode(claims, key, algorithm=kind)
    if kind == "other-secret":
        return jwt.encode(claims, b"another-secret-0123456789abcdefghijklmnop", algorithm="HS256")
    if kind == "no-exp":
        return jwt.encode({"sub": user}, key, algorithm="HS256")
    if kind == "bad-sub":
        return jwt.encode({**claims, "sub": "../alice"}, key, algorithm="HS256")
    if kind == "garbage":
        return "not.a.token"
    raise AssertionError(kind)


FORGED = [
    "expired",
    "tampered-signature",
    "tampered-payload",
    "alg-none",
    "alg-none-signed",
    "HS384",
    "HS512",
    "other-secret",
    "no-exp",
    "bad-sub",
    "garbage",
]
