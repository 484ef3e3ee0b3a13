"""Assets: images uploaded as raw bytes, content-addressed by SHA-256, deduplicated."""

from __future__ import annotations

import hashlib
import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.errors import Invalid, NotFound
from app.gateway.auth import authenticate
from app.gateway.bodies import read_body
from app.gateway.responses import json_response
from app.gateway.services import services

__all__ = ["routes", "sniff_image_type"]

_SHA256 = re.compile(r"[0-9a-f]{64}")

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image_type(data: bytes, declared: str) -> str | None:
    """The image type of ``data`` by its first bytes, or None when it is not an image
    we serve. SVG is accepted only when declared, and served with a sandboxing CSP."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if declared == "image/svg+xml" and data.lstrip()[:1] == b"<":
        return "image/svg+xml"
    return None


async def upload(request: Request) -> Response:
    svc = services(request)
    authenticate(request, svc.settings.secret)
    data = await read_body(request, svc.settings.max_asset_bytes)
    if not data:
        raise Invalid("the body is empty: send the image's bytes")
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    kind = sniff_image_type(data, declared)
    if kind is None:
        raise Invalid("not an image: PNG, JPEG, GIF, WebP or SVG (declared image/svg+xml)")
    digest = hashlib.sha256(data).hexdigest()
    await svc.store.put_asset(digest, kind, data)
    return json_response({"asset": digest}, 201, headers={"Location": f"/api/assets/{digest}"})


async def download(request: Request) -> Response:
    svc = services(request)
    authenticate(request, svc.settings.secret)
    digest = str(request.path_params["sha256"])
    if not _SHA256.fullmatch(digest):
        raise Invalid("an asset id is 64 lowercase hex characters (its SHA-256)")
    asset = await svc.store.get_asset(digest)
    if asset is None:
        raise NotFound("no such asset")
    headers = {
        "ETag": f'"{digest}"',
        "Cache-Control": "private, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    }
    return Response(asset.data, media_type=asset.content_type, headers=headers)


routes = [
    Route("/api/assets", upload, methods=["POST"]),
    Route("/api/assets/{sha256}", download, methods=["GET"]),
]
