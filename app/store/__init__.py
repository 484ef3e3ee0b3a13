"""Adapters to PostgreSQL behind the ports of ``app.store.ports``.

Import the module you need; this package re-exports nothing, so that importing
``app.store.ports`` (as the command side does) never pulls in asyncpg.

    ports      record types and the EventStore / EventLog Protocols
    postgres   PostgresStore: both ports over an asyncpg pool
    pool       create_pool: timeouts and codecs on every connection
    migrate    ensure_database, migrate, schema_status, LATEST
    follow     LogFollower: the global log in commit order, never skipping
    append     the group-commit write path (one round trip per batch)
    assets     content-addressed assets

docs/eventstore.md explains the schema, the append protocol and the tests.
"""

__all__: list[str] = []
