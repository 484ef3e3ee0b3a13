"""The error tree. Every class carries its wire code (PROTOCOL.md section 4) and HTTP status.

    AppError                      code        status
    ├── Invalid                   invalid       400
    ├── BadMessage                bad_message   400
    ├── TooLarge                  too_large     413
    ├── Unauthenticated           unauthenticated 401
    ├── Forbidden                 forbidden     403
    ├── NotFound                  not_found     404
    ├── Conflict                  conflict      409
    ├── RateLimited               rate_limited  429
    ├── Unavailable               unavailable   503
    ├── Timeout                   timeout       504
    └── Internal                  internal      500

Edges (HTTP handlers, websocket sessions) catch ``AppError`` and turn it into a
``{"code", "message"}`` body, a ``reject`` or an ``error`` in one place. Anything else
that escapes is a bug: it is logged with its traceback and answered with ``internal``
and a message that reveals nothing.
"""

from __future__ import annotations

__all__ = [
    "AppError",
    "BadMessage",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "Internal",
    "Invalid",
    "NotFound",
    "RateLimited",
    "Timeout",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
]


class AppError(Exception):
    """Base of every error that has a wire code."""

    code: str = "internal"
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class Invalid(AppError):
    code = "invalid"
    status = 400


class BadMessage(AppError):
    code = "bad_message"
    status = 400


class TooLarge(AppError):
    code = "too_large"
    status = 413


class Unauthenticated(AppError):
    code = "unauthenticated"
    status = 401


class Forbidden(AppError):
    code = "forbidden"
    status = 403


class NotFound(AppError):
    code = "not_found"
    status = 404


class Conflict(AppError):
    code = "conflict"
    status = 409


class RateLimited(AppError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds; HTTP answers carry it as Retry-After


class Unavailable(AppError):
    code = "unavailable"
    status = 503

    @classmethod
    def store_silent(cls, seconds: float) -> Unavailable:
        """The store did not answer an op's read or commit within ``seconds``."""
        return cls(f"the event store has not answered in {seconds:g} s; retry with the same id")


class Timeout(AppError):
    code = "timeout"
    status = 504


class Internal(AppError):
    code = "internal"
    status = 500


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""
