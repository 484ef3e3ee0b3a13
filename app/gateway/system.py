"""Health, readiness, metrics and the dev-only token route (the page at ``/`` is
app/gateway/web.py's)."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.errors import Invalid, NotFound
from app.gateway.responses import json_response
from app.gateway.services import services
from app.observability.metrics import render
from app.store.migrate import schema_status
from app.store.readpool import ReadPool
from app.tokens import issue_token

__all__ = ["routes"]

_CHECK_TIMEOUT = 2.0
_DEV_TOKEN_TTL = 12 * 3600


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    report: dict[str, str] = {}
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT), svc.pool.acquire() as conn:
            applied, known = await schema_status(conn)
        report["postgres"] = "ok"
        report["schema"] = "current" if applied == known else f"at {applied} of {known}"
    except Exception as exc:
        report["postgres"] = f"unreachable: {type(exc).__name__}"
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            await svc.redis.ping()
        report["redis"] = "ok"
    except Exception as exc:
        report["redis"] = f"unreachable: {type(exc).__name__}"
    if svc.replica is not None:
        report["replica"] = await _replica_status(svc.replica)
    # A replica that cannot answer leaves the gateway ready: its queries read the primary.
    ready = report.get("postgres") == "ok" and report.get("schema") == "current"
    ready = ready and report["redis"] == "ok"
    return json_response({"ready": ready, **report}, 200 if ready else 503)


async def _replica_status(reads: ReadPool) -> str:
    """``ok``, ``not in recovery`` (DATABASE_READ_URL is not a standby), or
    ``unreachable: <error>; reading the primary``."""
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            standby = await reads.replica.fetchval("SELECT pg_is_in_recovery()")
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}; reading the primary"
    return "ok" if standby else "not in recovery"


async def metrics(request: Request) -> Response:
    body, content_type = render()
    return Response(body, media_type=content_type)


async def dev_token(request: Request) -> Response:
    svc = services(request)
    if not svc.settings.dev:
        raise NotFound("not found")
    user = request.query_params.get("user", "")
    name = request.query_params.get("name") or None
    if not user:
        raise Invalid("pass ?user=<user id>")
    token = issue_token(svc.settings.secret, user, name=name, ttl=_DEV_TOKEN_TTL, now=time.time())
    return json_response({"token": token})


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/api/dev/token", dev_token, methods=["GET"]),
]
