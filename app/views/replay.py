"""``ReplicaReplay``: wait until a streaming replica has replayed what the primary has
written now (docs/readside.md, "Reading a replica").

The primary's WAL insert position (``pg_current_wal_insert_lsn``), read after an
event, is at or past the end of every record committed before it; once the replica's
``pg_last_wal_replay_lsn`` reaches it, a new query on the replica sees every one of
those commits. The replica is polled at a short interval (5 ms, doubling up to 50 ms)
only while it is behind that position. A server that is not in recovery (the reads
fell back to the primary, or the read URL is the primary itself) has no replay
position: it has everything, and the wait ends at once.

One detail of the positions: when the insert position is exactly at the start of a
WAL page it counts the page's header (24 bytes, 40 on a segment's first page), which
no replay position reaches until the next record; no record ends inside a header, so
such a position is taken as the page's start.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from app.store._errors import translate_errors

__all__ = ["ReplicaReplay"]

_INSERTED: Final = (
    "SELECT CASE WHEN lsn % bs <= 40 THEN lsn - lsn % bs ELSE lsn END FROM ("
    " SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint AS lsn,"
    " current_setting('wal_block_size')::bigint AS bs) AS p"
)
_REPLAYED: Final = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"


class ReplicaReplay:
    """``primary`` and ``replica``: pools (or a ``ReadPool``) with ``fetchval``."""

    def __init__(
        self, primary: Any, replica: Any, *, first_poll: float = 0.005, max_poll: float = 0.05
    ) -> None:
        self._primary = primary
        self._replica = replica
        self._first_poll = first_poll
        self._max_poll = max_poll

    async def written(self) -> int:
        """The primary's WAL insert position now, in bytes."""
        with translate_errors("wal_insert_lsn"):
            return int(await self._primary.fetchval(_INSERTED))

    async def replayed(self) -> int | None:
        """The replica's replay position in bytes; None when it is not in recovery."""
        with translate_errors("wal_replay_lsn"):
            value = await self._replica.fetchval(_REPLAYED)
        return None if value is None else int(value)

    async def caught_up(self) -> None:
        """Return once the replica has replayed everything the primary had written when
        this was called. Unbounded: the caller sets the deadline."""
        target = await self.written()
        delay = self._first_poll
        while True:
            replayed = await self.replayed()
            if replayed is None or replayed >= target:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_poll)
