"""Identity tokens: JWT HS256 (PROTOCOL.md section 1), through PyJWT.

The key is the server's secret, its UTF-8 bytes as they are, so any identity service
that holds the secret can mint tokens. The clock is passed in so that callers and
tests decide what "now" is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jwt

from app.errors import Invalid, Unauthenticated

__all__ = ["Identity", "issue_token", "verify_token"]

_USER = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_ALGORITHM = "HS256"
_LEEWAY_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    name: str


def issue_token(secret: str, user: str, *, name: str | None, ttl: int, now: float) -> str:
    """A signed token for ``user`` valid for ``ttl`` seconds from ``now``."""
    if not _USER.fullmatch(user):
        raise Invalid("user must be 1-64 characters of [A-Za-z0-9_.@-]")
    if ttl <= 0:
        raise Invalid("ttl must be positive")
    if name is not None and not 1 <= len(name) <= 200:
        raise Invalid("name must be 1-200 characters")
    claims: dict[str, object] = {"sub": user, "exp": int(now) + ttl, "iat": int(now)}
    if name is not None:
        claims["name"] = name
    return jwt.encode(claims, secret.encode(), algorithm=_ALGORITHM)


def verify_token(secret: str, token: str, *, now: float) -> Identity:
    """The identity a valid token carries; ``Unauthenticated`` for anything else."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise Unauthenticated("missing or malformed token")
    try:
        claims = jwt.decode(
            token,
            secret.encode(),
            algorithms=[_ALGORITHM],
            # Every time check is ours, against the clock passed in: PyJWT's would read
            # the wall clock (and reject a token whose iat is ahead of it).
            options={
                "require": ["sub", "exp"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from None
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp + _LEEWAY_SECONDS < now:
        raise Unauthenticated("token expired")
    for claim in ("iat", "nbf"):
        value = claims.get(claim)
        if value is not None and (not isinstance(value, int) or value - _LEEWAY_SECONDS > now):
            raise Unauthenticated(f"token not valid yet ({claim})")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _USER.fullmatch(sub):
        raise Unauthenticated("token subject is not a valid user id")
    name = claims.get("name")
    return Identity(user=sub, name=name if isinstance(name, str) and name else sub)
