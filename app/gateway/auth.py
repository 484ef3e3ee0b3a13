"""Who is calling: the bearer token of an HTTP request (PROTOCOL.md section 1)."""

from __future__ import annotations

import time

from starlette.requests import Request

from app.errors import Unauthenticated
from app.tokens import Identity, verify_token

__all__ = ["authenticate"]


def authenticate(request: Request, secret: str) -> Identity:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>")
    return verify_token(secret, token.strip(), now=time.time())
