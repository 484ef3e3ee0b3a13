"""The few HTTP calls of a load test (PROTOCOL.md section 5), on the standard library.

Setup (documents, their first ops, members) and the final read of each document's state
are not on the measured path, so ``urllib`` in a thread pool is enough and the harness
needs no HTTP client beyond what Python ships.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

__all__ = ["Http", "HttpError", "token_user"]

T = TypeVar("T")
R = TypeVar("R")


class HttpError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: {status} {body[:300]}")
        self.status = status


def token_user(token: str) -> str:
    """The ``sub`` of a JWT, unverified (the harness only needs the user id)."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["sub"])
    except (IndexError, ValueError, KeyError, orjson.JSONDecodeError) as exc:
        raise ValueError("not a JWT with a sub claim") from exc


class Http:
    def __init__(self, base: str, token: str, timeout: float = 15.0) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            raise HttpError(method, path, exc.code, exc.read().decode(errors="replace")) from None
        return orjson.loads(raw) if raw else None

    @staticmethod
    def each(fn: Callable[[T], R], items: Iterable[T], workers: int = 16) -> list[R]:
        """``fn`` over ``items`` on a thread pool, in order; the first error is raised."""
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, items))
