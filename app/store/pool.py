"""The asyncpg pool every store adapter runs on.

Each connection is set up so that a stuck writer cannot stall the others for long:

- ``lock_timeout``: an append waits at most this long for a document's row lock or
  for ``log_head`` (held by another transaction until its commit); then it fails with
  ``Unavailable`` and nothing is written, and the client retries with the same op id.
- ``statement_timeout``: no statement runs longer than this.
- ``idle_in_transaction_session_timeout``: a client that opened a transaction and went
  away (or hangs) cannot keep its locks; the server ends its session.
- ``command_timeout`` (client side): a query that gets no answer at all (the server or
  the network is gone) raises instead of hanging the caller.
- ``enable_seqscan = off``: every query of the servers reads by a key or a position,
  through an index. A prepared statement keeps the generic plan it was given after its
  first runs, made from the statistics of that moment; on a new store, analyzed empty,
  that plan is a sequential scan (and a sort), and it stays one as the tables grow,
  until an ``ANALYZE`` replans it (never, with autovacuum off; late, with it behind):
  a read of one document's events took 2.96 ms instead of 0.66 at 20,000 events
  (docs/benchmarks.md, "The followers' plan on a new store"). Off, the indexes are the
  only way left wherever there is one. The tools that do read whole tables (verify,
  rebuild) take the server's setting back (``None`` drops a key).
- ``jit = off``: goes with the above. A scan with no index to take (a one-row table)
  still runs, priced at PostgreSQL's "disabled" cost, which is over every JIT
  threshold: compiled, such a 0.2 ms query took 140-200 ms. The servers' queries are
  short; none gains from JIT.

The store writes ``bytea`` (orjson bytes, verbatim), so it needs no codec; the
``init`` hook still registers orjson for ``json``/``jsonb`` so that the read side's
SQL over JSON columns stays on the fast codec (STYLE.md, finding 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import asyncpg
import orjson

from app.store._errors import translate_errors

__all__ = ["COMMAND_TIMEOUT", "INDEX_READS", "SERVER_SETTINGS", "create_pool"]

# The planner settings of every session of the servers (this pool, the log followers,
# the workers' lease connection): read through the indexes, never JIT (above).
INDEX_READS: Final[dict[str, str]] = {"enable_seqscan": "off", "jit": "off"}
SERVER_SETTINGS: Final[dict[str, str]] = {
    "application_name": "atelier",
    "lock_timeout": "5s",
    "statement_timeout": "15s",
    "idle_in_transaction_session_timeout": "30s",
    **INDEX_READS,
}
COMMAND_TIMEOUT: Final = 20.0  # seconds; above statement_timeout, so the server speaks first


async def create_pool(
    dsn: str,
    size: int,
    *,
    min_size: int | None = None,
    server_settings: Mapping[str, str | None] | None = None,
    connect_timeout: float = 60.0,
) -> asyncpg.Pool:
    """An ``asyncpg.Pool`` of at most ``size`` connections to ``dsn``.

    ``min_size`` connections (default ``min(size, 2)``) are opened now, so a wrong DSN
    fails here with ``Unavailable`` rather than on the first request.
    ``server_settings`` override ``SERVER_SETTINGS`` key by key; a key set to ``None``
    is not sent (the server's own setting applies). ``connect_timeout``:
    seconds a new connection may take (asyncpg's default, 60, unless given).
    """
    if size < 1:
        raise ValueError(f"pool size must be at least 1, got {size}")
    merged = {**SERVER_SETTINGS, **(server_settings or {})}
    settings = {key: value for key, value in merged.items() if value is not None}
    with translate_errors("create_pool"):
        return await asyncpg.create_pool(
            dsn,
            min_size=min(size, 2) if min_size is None else min_size,
            max_size=size,
            command_timeout=COMMAND_TIMEOUT,
            timeout=connect_timeout,
            server_settings=settings,
            init=_init_connection,
            reset=_reset_connection,
        )


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool beyond asyncpg's own (which
    rolls back an open transaction and drops listeners): nothing. asyncpg's default
    sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release,
    one more round trip per query; no code here leaves such state on a pooled
    connection (``LISTEN`` and the leases use connections of their own, settings are
    ``SET LOCAL``, cursors live in transactions, and the rebuild unlocks its advisory
    lock itself). On the write path that round trip was about a third of the
    client-side CPU of a commit (docs/benchmarks.md, "Profile of the op path")."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            schema="pg_catalog",
            # In text format the encoder must return str (asyncpg set_type_codec docs).
            encoder=_encode_json,
            decoder=orjson.loads,
            format="text",
        )


def _encode_json(value: Any) -> str:
    return orjson.dumps(value).decode()
