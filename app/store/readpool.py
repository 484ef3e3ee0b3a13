"""``ReadPool``: the gateway's queries on a streaming replica, on the primary while the
replica cannot answer (docs/readside.md, "Reading a replica").

It has the three query methods the read side's queries use (``fetch``, ``fetchrow``,
``fetchval``) and sends each to the replica's pool. A failure that means "the replica
cannot answer now" (``is_unavailable``: refused, lost, timed out, starting up) sends
that query to the primary instead, and every query after it for ``retry_after``
seconds; then the replica is tried again. A query cancelled by a conflict with
recovery (40001, the replica replaying a change under a long read) is asked of the
primary once, without marking the replica down. Anything else is a bug and
propagates.

Why fall back rather than answer 503: the replica only takes load off the primary.
While the primary answers, every query can be answered from it, and a client that
reads while the replica is down expects what it gets with no replica at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

import asyncpg
import structlog

from app.store._errors import is_unavailable

__all__ = ["RETRY_AFTER", "ReadPool"]

RETRY_AFTER: Final = 5.0  # seconds on the primary after the replica failed

log = structlog.get_logger(__name__)


class ReadPool:
    def __init__(
        self,
        replica: Any,
        primary: Any,
        *,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replica = replica  # asyncpg.Pool (untyped library)
        self.primary = primary
        self._retry_after = retry_after
        self._clock = clock
        self._down_until = float("-inf")
        self.fallbacks = 0  # queries the primary answered in the replica's place

    @property
    def replica_down(self) -> bool:
        """True while queries go to the primary after a failure of the replica."""
        return self._clock() < self._down_until

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._run("fetch", query, args)
        return rows

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._run("fetchrow", query, args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run("fetchval", query, args)

    async def _run(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        if not self.replica_down:
            try:
                return await getattr(self.replica, method)(query, *args)
            except asyncio.CancelledError:
                raise
            except asyncpg.exceptions.SerializationError:
                pass  # cancelled by a conflict with recovery: this query only
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                self._down_until = self._clock() + self._retry_after
                log.warning(
                    "replica unavailable; reading the primary",
                    error=str(exc) or type(exc).__name__,
                    retry_in=self._retry_after,
                )
        self.fallbacks += 1
        return await getattr(self.primary, method)(query, *args)
