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


def test_a_user_without_a_socket_gets_a_bucket_too() -> None:
    """HTTP ops take from the same per-user bucket: no socket is no free pass."""
    quotas = UserQuotas(op_rate=1, op_burst=2, max_connections=5)
    assert [quotas.take_op("dan", 0.0) for _ in range(3)] == [True, True, False]
    assert quotas.take_op("dan", 1.0)
    assert quotas.retry_after() == 1.0


def test_the_bucket_follows_the_user_across_http_and_sockets() -> None:
    quotas = UserQuotas(op_rate=1, op_burst=2, max_connections=5)
    assert quotas.take_op("eve", 0.0)  # over HTTP
    assert quotas.connect("eve", 0.0)
    assert quotas.take_op("eve", 0.0)
    assert not quotas.take_op("eve", 0.0)  # the socket got no fresh burst
    quotas.disconnect("eve")
    assert quotas.connect("eve", 0.0)
    assert not quotas.take_op("eve", 0.0)  # nor did reconnecting
    assert quotas.idle() == 0


def test_idle_buckets_are_bounded_and_full_ones_go_first() -> None:
    quotas = UserQuotas(op_rate=1, op_burst=2, max_connections=5, idle_buckets=10)
    for n in range(100):
        quotas.take_op(f"u{n}", 0.0)  # none refilled: only the age rule can drop them
        assert quotas.idle() <= 10
    assert quotas.idle() >= 9

    quotas = UserQuotas(op_rate=1, op_burst=2, max_connections=5, idle_buckets=10)
    for n in range(9):
        quotas.take_op(f"u{n}", 0.0)  # full again one second later
    quotas.take_op("busy", 9.5)
    quotas.take_op("busy", 9.5)  # empty at 9.5: half a token at 10.0
    assert quotas.idle() == 10
    quotas.take_op("new", 10.0)  # the table is full: the nine full buckets go
    assert quotas.idle() == 2
    assert not quotas.take_op("busy", 10.0)  # kept, still short of a token
