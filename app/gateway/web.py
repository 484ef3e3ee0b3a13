"""The web client (app/web, docs/webclient.md): ``/`` serves the page, ``/static/...``
its ES modules, stylesheet and icon, all with a strict Content-Security-Policy.

The page runs no inline script and no inline style attribute of its own markup:
``script-src 'self'`` and ``style-src 'self'`` hold, and the only dynamic input is the
``data-env`` attribute of ``<body>`` (``dev`` shows the name field that asks
``/api/dev/token``; anything else asks for a token). ``connect-src 'self'`` covers
the websocket to the same host and port (CSP level 3); ws:/wss: of the page's own host
are listed too for browsers that still read level 2.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from app.gateway.services import services

__all__ = ["SECURITY_HEADERS", "content_security_policy", "routes"]

SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def content_security_policy(host: str) -> str:
    """The page's policy; ``host`` is the request's Host (for the ws:/wss: sources)."""
    safe = "".join(ch for ch in host if ch.isalnum() or ch in ".-:[]")
    sockets = f" ws://{safe} wss://{safe}" if safe else ""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "font-src 'self'",
            f"connect-src 'self'{sockets}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ]
    )


def _root() -> Path:
    return Path(str(files("app.web")))


@cache
def _page() -> str:
    return (_root() / "index.html").read_text(encoding="utf-8")


def _headers(request: Request | None, host: str) -> dict[str, str]:
    return {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(host),
        "Cache-Control": "no-cache",
    }


async def index(request: Request) -> Response:
    env = "dev" if services(request).settings.dev else "prod"
    body = _page().replace("{{ENV}}", env)
    return HTMLResponse(body, headers=_headers(request, request.headers.get("host", "")))


class _Static(StaticFiles):
    """StaticFiles with the page's security headers and revalidation on each load
    (``no-cache``: the ETag makes that a 304), so a new release is picked up at once."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = ""
        for key, value in scope.get("headers", []):
            if key == b"host":
                host = value.decode("latin-1")
        extra = [(k.lower().encode(), v.encode()) for k, v in _headers(None, host).items()]

        async def send_with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                message["headers"] = headers + extra
            await send(message)

        await super().__call__(scope, receive, send_with_headers)  # type: ignore[arg-type]


routes = [
    Route("/", index, methods=["GET"]),
    Mount("/static", app=_Static(directory=_root() / "static"), name="static"),
]
