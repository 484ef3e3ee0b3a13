"""``UserQuotas``: connections and an op bucket per user, over all its connections."""

from __future__ import annotations

from app.gateway.quotas import UserQuotas


def test_connections_per_user_are_counted_and_released() -> None:
    quotas = UserQuotas(op_rate=1, op_burst=1, max_connections=2)
    assert quotas.connect("bob", 0.0)
    assert quotas.connect("bob", 0.0)
    assert not quotas.connect("bob", 0.0)
    assert quotas.connect("carol", 0.0)
    assert quotas.connections("bob") == 2
    quotas.disconnect("bob")
    assert quotas.connect("bob", 0.0)
    for _ in range(3):
        quotas.disconnect("bob")
    assert quotas.connections("bob") == 0


def test_ops_share_one_bucket_per_user() -> None:
    quotas = UserQuotas(op_rate=2, op_burst=3, max_connections=5)
    quotas.connect("bob", 0.0)
    quotas.connect("bob", 0.0)
    quotas.connect("carol", 0.0)
    assert [quotas.take_op("bob", 0.0) for _ in range(4)] == [True, True, True, False]
    assert quotas.take_op("carol", 0.0)
    assert quotas.take_op("bob", 0.5)  # one token back after half a second
    assert not quotas.take_op("bob", 0.5)
