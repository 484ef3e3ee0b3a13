"""Translate driver and network failures into ``app.errors.Unavailable``.

Nothing above ``app.store`` sees an asyncpg exception (STYLE.md, habit 4). The rule:
a failure that says "the database cannot take this right now, and this transaction
did not commit" (connection refused or lost, server shutting down, too many
connections, a lock or statement timeout, a serialization failure, a read-only
replica after a failover) becomes ``Unavailable``, which the client answers by
retrying with the same op id (PROTOCOL.md section 4). Retrying is always safe because
every write is one transaction and the op ledger makes a re-sent op id a no-op (I3),
even when the connection died after COMMIT and we cannot know whether it committed.
Everything else (a syntax error, a constraint that should never fire) is a bug and
propagates unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from app.errors import Unavailable
from app.observability import metrics

__all__ = ["UNAVAILABLE_ERRORS", "is_unavailable", "translate_errors"]

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; ConnectionError is a subclass
    TimeoutError,  # connect timeout, command_timeout (asyncio.TimeoutError is this)
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.exceptions.OperatorInterventionError,  # 57: admin/crash shutdown, cancel
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.LockNotAvailableError,  # 55P03: lock_timeout
    asyncpg.exceptions.TransactionRollbackError,  # 40: serialization failure, deadlock
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: a replica after failover
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up / recovering
    asyncpg.InternalClientError,  # the protocol left mid-operation (a backend gone under it)
)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means "the database cannot answer now", not "we have a bug"."""
    if isinstance(exc, asyncpg.InterfaceError):
        # The client lost its connection under it ("connection is closed",
        # "connection was closed in the middle of operation").
        return "closed" in str(exc)
    return isinstance(exc, UNAVAILABLE_ERRORS)


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Raise ``Unavailable`` (chained to the original) for the failures above.

    ``what`` names the operation in the message, for the logs; the wire message is
    the generic one of ``Unavailable``.
    """
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            metrics.store_errors_total.labels(what=what).inc()
            raise Unavailable(f"event store unavailable during {what}: {exc}") from exc
        raise
