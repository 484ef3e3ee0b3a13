"""Record an event the projection refused and pause its shard, in one transaction.

Why pause rather than skip: a view that skips an event is no longer the fold of the
log (I5), silently. A paused shard keeps its checkpoint just before the event, so
once an operator has fixed the cause and set ``status = 'running'`` again, the next
owner applies it and everything after it, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg

from app.views.schema import View
from app.views.writer import Claim
from app.workers.projector import Failure

__all__ = ["dead_letter"]

_RECORD: Final = (
    "INSERT INTO read.dead_letters (view, shard, position, doc_id, v, error)"
    " SELECT unnest($1::text[]), $2, $3, $4, $5, $6"
    " ON CONFLICT (view, position) DO UPDATE SET attempts = read.dead_letters.attempts + 1,"
    " last_failed_at = now(), error = EXCLUDED.error"
)
# The same compare-and-set as a batch's: only the shard's owner, at the checkpoint it
# believes in, may pause it.
_PAUSE: Final = (
    "UPDATE read.checkpoints SET status = 'paused', heartbeat_at = now(), updated_at = now()"
    " WHERE view = ANY($1::text[]) AND shard = $2 AND position = $3 AND fencing = $4"
    " AND status = 'running'"
)


class _Refused(Exception):
    """Raised inside the transaction to roll it back."""


async def dead_letter(
    conn: asyncpg.Connection,
    *,
    views: Sequence[View],
    shard: int,
    claim: Claim,
    failure: Failure,
) -> bool:
    """Record ``failure`` for ``views`` and pause their checkpoints of ``shard`` (which
    must stand at ``claim``, just before the event). False, and nothing written, when
    the checkpoints are not as claimed (the lease was lost)."""
    event = failure.event
    try:
        async with conn.transaction():
            status = await conn.execute(_PAUSE, list(views), shard, claim.position, claim.fencing)
            if int(status.rsplit(" ", 1)[-1]) != len(views):
                raise _Refused
            await conn.execute(
                _RECORD, list(views), shard, event.position, event.doc_id, event.v, failure.error
            )
    except _Refused:
        return False
    return True
