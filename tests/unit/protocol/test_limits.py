"""Token buckets and the frame size limit, with the time passed in."""

from __future__ import annotations

import pytest

from app.protocol.limits import RateLimit, TokenBucket, Verdict, frame_too_large


def test_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert bucket.tokens(100.0) == 3  # never more than the burst


def test_bucket_ignores_a_clock_that_steps_back() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert bucket.tokens(5.0) == 0
    assert bucket.take(11.0)


def test_bucket_needs_sane_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1, now=0)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0, now=0)


def test_rate_limit_tolerates_a_burst_but_not_a_flood() -> None:
    limit = RateLimit(rate=50, burst=100, now=0.0)
    verdicts = [limit.check(0.0) for _ in range(150)]
    assert verdicts.count(Verdict.ALLOW) == 100
    assert verdicts.count(Verdict.LIMITED) == 50
    # A second later: 50 more allowed, the excess bucket has 55 of 100 left.
    later = [limit.check(1.0) for _ in range(50)]
    assert set(later) == {Verdict.ALLOW}


def test_rate_limit_closes_a_client_that_keeps_on_sending_at_twice_its_rate() -> None:
    limit = RateLimit(rate=50, burst=100, now=0.0)
    now, step = 0.0, 1 / 100
    for _ in range(10_000):
        now += step
        if limit.check(now) is Verdict.ABUSIVE:
            break
    else:
        pytest.fail("never judged abusive")
    assert 1.0 < now < 6.0


def test_rate_limit_never_closes_a_client_within_its_rate() -> None:
    limit = RateLimit(rate=50, burst=100, now=0.0)
    assert {limit.check(i / 50) for i in range(5000)} == {Verdict.ALLOW}


def test_frame_size() -> None:
    assert not frame_too_large("a" * 100, 100)
    assert frame_too_large("a" * 101, 100)
    assert not frame_too_large("é" * 50, 100)  # 2 bytes each
    assert frame_too_large("é" * 51, 100)
    assert frame_too_large("€" * 34, 100)  # 3 bytes each
    assert not frame_too_large("a" * 25, 100)
    assert frame_too_large(b"x" * 101, 100)
    assert not frame_too_large(b"x" * 100, 100)
