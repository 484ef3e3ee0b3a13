"""Content-addressed assets: the key is the SHA-256 of the bytes.

The same bytes are stored once, whoever uploads them and however often, and an id
always means the same bytes: the store checks the hash itself rather than trusting the
caller, because a wrong key would poison every document that ever references it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Final

import asyncpg

from app.errors import Invalid
from app.store._errors import translate_errors
from app.store.ports import Asset

__all__ = ["asset_exists", "get_asset", "put_asset"]

_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")
# Hash larger uploads in a thread (hashlib releases the GIL) so a 20 MiB image does not
# stall the event loop for tens of milliseconds.
_THREAD_HASH_BYTES: Final = 256 * 1024


async def put_asset(pool: asyncpg.Pool, sha256: str, content_type: str, data: bytes) -> bool:
    """Store ``data`` under ``sha256``; False when those bytes were there already.

    Raises ``Invalid`` when ``sha256`` is not the lowercase hex SHA-256 of ``data``.
    """
    _check_key(sha256)
    if len(data) >= _THREAD_HASH_BYTES:
        digest = await asyncio.to_thread(_digest, data)
    else:
        digest = _digest(data)
    if digest != sha256:
        raise Invalid(f"asset key {sha256} is not the SHA-256 of its bytes ({digest})")
    with translate_errors("put_asset"):
        inserted = await pool.fetchval(
            "INSERT INTO assets (sha256, content_type, size, data) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (sha256) DO NOTHING RETURNING true",
            sha256,
            content_type,
            len(data),
            data,
        )
    return inserted is not None


async def get_asset(pool: asyncpg.Pool, sha256: str) -> Asset | None:
    if not _SHA256.match(sha256):
        return None
    with translate_errors("get_asset"):
        row = await pool.fetchrow("SELECT content_type, data FROM assets WHERE sha256 = $1", sha256)
    if row is None:
        return None
    return Asset(sha256=sha256, content_type=row["content_type"], data=row["data"])


async def asset_exists(pool: asyncpg.Pool, sha256: str) -> bool:
    if not _SHA256.match(sha256):
        return False
    with translate_errors("asset_exists"):
        found = await pool.fetchval("SELECT true FROM assets WHERE sha256 = $1", sha256)
    return found is not None


def _check_key(sha256: str) -> None:
    if not _SHA256.match(sha256):
        raise Invalid(f"asset key must be 64 lowercase hex digits, got {sha256!r}")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
