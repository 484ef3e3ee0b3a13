"""Per-user limits over all of a user's websockets in this process (PROTOCOL.md 4).

``UserQuotas`` counts each user's open websockets (``WS_USER_CONNECTIONS``: one more
``hello`` is refused with close 4429) and keeps one op token bucket per user with a
websocket open (``WS_USER_OP_RATE`` / ``WS_USER_OP_BURST``: an op over it is rejected
``rate_limited``, to be retried with the same id). The per-connection limits stay in the
session (app/protocol/session.py); these stop a user from multiplying them by opening
more sockets. Per process, not per cluster: a user spread over N gateways gets N times
the budget, which the connections limit and the load balancer keep bounded.
"""

from __future__ import annotations

from app.protocol.limits import TokenBucket

__all__ = ["UserQuotas"]


class UserQuotas:
    def __init__(self, *, op_rate: float, op_burst: int, max_connections: int) -> None:
        self.op_rate = op_rate
        self.op_burst = op_burst
        self.max_connections = max_connections
        self._connections: dict[str, int] = {}
        self._ops: dict[str, TokenBucket] = {}

    def connect(self, user: str, now: float) -> bool:
        """Count one more websocket of ``user``; False (and not counted) over the limit."""
        count = self._connections.get(user, 0)
        if count >= self.max_connections:
            return False
        self._connections[user] = count + 1
        if user not in self._ops:
            self._ops[user] = TokenBucket(self.op_rate, self.op_burst, now)
        return True

    def disconnect(self, user: str) -> None:
        count = self._connections.get(user, 0) - 1
        if count > 0:
            self._connections[user] = count
        else:
            # The bucket goes with the last socket: memory is bounded by the users
            # connected. Reconnecting to refill it costs a hello each time.
            self._connections.pop(user, None)
            self._ops.pop(user, None)

    def take_op(self, user: str, now: float) -> bool:
        """One op of ``user``: False when over the user's rate."""
        bucket = self._ops.get(user)
        return bucket is None or bucket.take(now)

    def connections(self, user: str) -> int:
        return self._connections.get(user, 0)
