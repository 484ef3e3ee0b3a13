"""The relay: the first part of the real-time path (DESIGN.md, "The path of one edit").

It follows the global log in commit order and publishes every event to its document's
Redis stream with the explicit id ``<position>-0``, so that each event is there
exactly once and in order (I4), whatever crashes, restarts or losses happen in
between. One relay runs at a time (a PostgreSQL advisory-lock lease); others wait.

    relay    Relay and RelayConfig: lease, prepare, follow, publish, heartbeat
    lease    Lease: the advisory lock on its own connection, and the store's meta
    runner   run(settings): ``python -m app relay``

The stream contract (keys, fields, trimming, progress) lives in ``app.bus`` and
docs/relay.md.
"""

from app.relay.lease import Lease, LeaseLost
from app.relay.relay import Relay, RelayConfig

__all__ = ["Lease", "LeaseLost", "Relay", "RelayConfig"]
