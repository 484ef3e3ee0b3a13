"""Rate and size limits, with the time passed in (no clock here: STYLE.md habit 1).

``TokenBucket`` is the classic bucket: ``rate`` tokens a second up to ``burst``.
``RateLimit`` adds the rule for close code 4429 (PROTOCOL.md 4, "the client kept on
sending past its rate limit"): every message refused by the rate bucket takes a token
from a second, slowly refilled *excess* bucket; when that one is empty too, the client
is abusive. A client that bursts once past its limit is only told ``rate_limited``; one
that keeps sending at twice its rate empties the excess bucket in a few seconds.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["RateLimit", "TokenBucket", "Verdict", "frame_too_large"]

# UTF-8 takes 1 to 4 bytes per code point.
_MAX_UTF8_BYTES_PER_CHAR = 4


class TokenBucket:
    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def tokens(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are that many; False (and take none) otherwise."""
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def _refill(self, now: float) -> None:
        # A clock that steps back (the shell passes a monotonic one; tests may not)
        # never adds tokens and never goes negative.
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._stamp = now


class Verdict(Enum):
    ALLOW = "allow"
    LIMITED = "limited"
    ABUSIVE = "abusive"


class RateLimit:
    """``rate``/``burst`` for what is allowed; ``excess`` refused messages tolerated,
    refilled at ``excess_rate`` a second (default: a tenth of ``rate``)."""

    __slots__ = ("_allowed", "_excess")

    def __init__(
        self,
        rate: float,
        burst: int,
        now: float,
        *,
        excess: int | None = None,
        excess_rate: float | None = None,
    ) -> None:
        self._allowed = TokenBucket(rate, burst, now)
        self._excess = TokenBucket(
            excess_rate if excess_rate is not None else rate / 10,
            excess if excess is not None else burst,
            now,
        )

    def check(self, now: float) -> Verdict:
        if self._allowed.take(now):
            return Verdict.ALLOW
        if self._excess.take(now):
            return Verdict.LIMITED
        return Verdict.ABUSIVE


def frame_too_large(frame: str | bytes, limit: int) -> bool:
    """True when the frame is over ``limit`` bytes (a text frame counted as UTF-8)."""
    if isinstance(frame, bytes):
        return len(frame) > limit
    if len(frame) * _MAX_UTF8_BYTES_PER_CHAR <= limit:
        return False  # cannot be over, whatever it holds: no need to encode
    if len(frame) > limit:
        return True  # at least one byte per character
    return len(frame.encode("utf-8", "surrogatepass")) > limit
