"""Per-user limits over all of a user's connections to this process (PROTOCOL.md 4, 5).

``UserQuotas`` counts each user's open websockets (``WS_USER_CONNECTIONS``: one more
``hello`` is refused with close 4429) and keeps one op token bucket per user
(``WS_USER_OP_RATE`` / ``WS_USER_OP_BURST``), shared by the user's websockets and its
``POST /api/documents/{id}/ops`` requests: an op over it is rejected ``rate_limited``
(429 over HTTP), to be retried with the same id. The per-connection limits stay in the
session (app/protocol/session.py); these stop a user from multiplying them by opening
more sockets or by going through HTTP. Per process, not per cluster: a user spread over
N gateways gets N times the budget, which the connections limit and the load balancer
keep bounded.

Memory: a user with a socket open keeps its bucket; a user with none (HTTP only, or
gone) has its bucket in an idle table that keeps at most ``idle_buckets`` of them.
A bucket that has refilled to its burst is the same as a new one, so those are the
first to go; past the bound the oldest go (down to nine tenths of it), which at
worst gives a user a fresh burst.
"""

from __future__ import annotations

from app.protocol.limits import TokenBucket

__all__ = ["UserQuotas"]

IDLE_BUCKETS = 10_000


class UserQuotas:
    def __init__(
        self,
        *,
        op_rate: float,
        op_burst: int,
        max_connections: int,
        idle_buckets: int = IDLE_BUCKETS,
    ) -> None:
        self.op_rate = op_rate
        self.op_burst = op_burst
        self.max_connections = max_connections
        self.idle_buckets = idle_buckets
        self._connections: dict[str, int] = {}
        self._ops: dict[str, TokenBucket] = {}  # users with a socket open
        self._idle: dict[str, TokenBucket] = {}  # users without one, oldest first

    def connect(self, user: str, now: float) -> bool:
        """Count one more websocket of ``user``; False (and not counted) over the limit."""
        count = self._connections.get(user, 0)
        if count >= self.max_connections:
            return False
        self._connections[user] = count + 1
        if user not in self._ops:
            # The bucket follows the user: reconnecting does not refill it.
            bucket = self._idle.pop(user, None)
            self._ops[user] = bucket or TokenBucket(self.op_rate, self.op_burst, now)
        return True

    def disconnect(self, user: str) -> None:
        count = self._connections.get(user, 0) - 1
        if count > 0:
            self._connections[user] = count
            return
        self._connections.pop(user, None)
        bucket = self._ops.pop(user, None)
        if bucket is not None:
            self._park(user, bucket)

    def take_op(self, user: str, now: float) -> bool:
        """One op of ``user`` over any channel: False when over the user's rate."""
        bucket = self._ops.get(user)
        if bucket is None:
            bucket = self._idle.get(user)
            if bucket is None:
                bucket = TokenBucket(self.op_rate, self.op_burst, now)
                self._park(user, bucket, now)
        return bucket.take(now)

    def retry_after(self) -> float:
        """Seconds until an empty bucket holds one op again."""
        return 1.0 / self.op_rate

    def connections(self, user: str) -> int:
        return self._connections.get(user, 0)

    def idle(self) -> int:
        """Buckets kept for users with no socket open (bounded by ``idle_buckets``)."""
        return len(self._idle)

    def _park(self, user: str, bucket: TokenBucket, now: float | None = None) -> None:
        self._idle.pop(user, None)
        if len(self._idle) >= self.idle_buckets:
            self._evict(now)
        self._idle[user] = bucket

    def _evict(self, now: float | None) -> None:
        if now is not None:
            full = [u for u, b in self._idle.items() if b.tokens(now) >= b.burst]
            for user in full:
                del self._idle[user]
        # Down to nine tenths at once, so a flood of new users pays one scan per
        # tenth of the table, not one per request.
        keep = self.idle_buckets * 9 // 10
        while len(self._idle) > keep:
            del self._idle[next(iter(self._idle))]
