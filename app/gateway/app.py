"""``create_app(settings)``: routes, middleware, and the one place errors become bodies."""

from __future__ import annotations

import math

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from app.config import Settings
from app.errors import AppError, RateLimited
from app.gateway import assets, documents, openapi, queries, system, web, ws
from app.gateway.middleware import AccessLog
from app.gateway.responses import error_response, json_response
from app.gateway.services import lifespan

__all__ = ["create_app"]

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "invalid",
    413: "too_large",
    429: "rate_limited",
}


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        # RFC 9110 10.2.3: whole seconds, at least one.
        wait = str(max(1, math.ceil(exc.retry_after)))
        body = {"code": exc.code, "message": exc.message}
        return json_response(body, exc.status, headers={"Retry-After": wait})
    return error_response(exc.code, exc.message, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid")
    # The exception's headers are kept: a 405's Allow (RFC 9110 15.5.6).
    body = {"code": code, "message": str(exc.detail)}
    return json_response(body, exc.status_code, headers=dict(exc.headers or {}))


async def _internal(request: Request, exc: Exception) -> Response:
    # Our fault, not theirs (STYLE.md habit 5): logged with its traceback here, and
    # the client learns nothing of the internals.
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return error_response("internal", "internal error; it has been logged", 500)


def create_app(settings: Settings) -> Starlette:
    return Starlette(
        routes=[
            *web.routes,
            *system.routes,
            *documents.routes,
            *queries.routes,
            *assets.routes,
            *openapi.routes,
            *ws.routes,
        ],
        middleware=[Middleware(AccessLog)],
        exception_handlers={
            AppError: _app_error,
            HTTPException: _http_error,
            Exception: _internal,
        },
        lifespan=lifespan(settings),
    )
