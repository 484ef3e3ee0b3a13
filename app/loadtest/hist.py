"""A log-bucket latency histogram (HDR-style), mergeable across processes.

Values are integers (the harness records microseconds). Below 256 each value has its
own bucket; above, every power of two is split into 128 buckets, so a bucket's width is
under 1/128 of its value (a relative error under 0.8 %) from one microsecond to hours.
Counts live in a sparse dict, so a histogram travels between processes as a small JSON
object and two of them merge by adding counts. Percentiles report the highest value of
their bucket (as HdrHistogram does); ``max`` and ``min`` are exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Histogram"]

_SUB_BITS = 8
_SUB = 1 << _SUB_BITS  # values below this have a bucket each
_HALF = _SUB >> 1  # buckets per power of two above it


def bucket_of(value: int) -> int:
    if value < _SUB:
        return max(value, 0)
    shift = value.bit_length() - _SUB_BITS
    return _SUB + (shift - 1) * _HALF + ((value >> shift) - _HALF)


def bucket_high(index: int) -> int:
    """The highest value that falls in bucket ``index``."""
    if index < _SUB:
        return index
    shift = (index - _SUB) // _HALF + 1
    mantissa = (index - _SUB) % _HALF + _HALF
    return ((mantissa + 1) << shift) - 1


class Histogram:
    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.max = 0
        self.min = 0

    def record(self, value: int) -> None:
        value = max(value, 0)
        index = value if value < _SUB else bucket_of(value)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        if not self.count or value < self.min:
            self.min = value
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> Histogram:
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        if other.count:
            self.min = other.min if not self.count else min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total
        return self

    def percentile(self, q: float) -> int:
        """The value at or below which a fraction ``q`` (0..1) of the records fall."""
        if not self.count:
            return 0
        if q >= 1.0:
            return self.max
        rank = max(1, int(q * self.count + 0.999999999))  # ceil, at least the first
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(bucket_high(index), self.max)
        return self.max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def buckets(self) -> list[tuple[int, int]]:
        """(highest value of the bucket, count), in value order."""
        return [(bucket_high(i), self.counts[i]) for i in sorted(self.counts)]

    def summary(self, scale: float = 1e-3) -> dict[str, float]:
        """count, mean, min, p50, p90, p99, p99.9, max; values times ``scale`` (us -> ms)."""
        return {
            "count": self.count,
            "mean": round(self.mean * scale, 4),
            "min": round(self.min * scale, 4),
            "p50": round(self.percentile(0.5) * scale, 4),
            "p90": round(self.percentile(0.9) * scale, 4),
            "p99": round(self.percentile(0.99) * scale, 4),
            "p99.9": round(self.percentile(0.999) * scale, 4),
            "max": round(self.max * scale, 4),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": {str(k): v for k, v in self.counts.items()},
            "count": self.count,
            "total": self.total,
            "max": self.max,
            "min": self.min,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        made = cls()
        made.counts = {int(k): int(v) for k, v in data["counts"].items()}
        made.count, made.total = int(data["count"]), int(data["total"])
        made.max, made.min = int(data["max"]), int(data["min"])
        return made

    @classmethod
    def merged(cls, parts: Iterable[Histogram]) -> Histogram:
        out = cls()
        for part in parts:
            out.merge(part)
        return out
