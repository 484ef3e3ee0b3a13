"""A small persistent (immutable, structurally shared) map from ``str`` keys.

The document keeps two indexes (element id -> layer id, and per layer element id ->
position) that change by one or two entries per op. Copying a plain dict of a few
thousand entries per op costs ~10 µs; this map splits the keys over 64 buckets, so
an update copies one bucket and a 64-slot tuple (~1 µs) and shares the rest with the
previous version. Bucket placement uses ``hash()``, which varies between processes
(PYTHONHASHSEED): it affects only where a key is stored, never what a lookup returns,
and nothing ever iterates this map to produce output, so results stay deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["PMap"]

V = TypeVar("V")

_BITS = 6
_MASK = (1 << _BITS) - 1


class PMap(Generic[V]):
    """Immutable ``str -> V`` map; every "change" returns a new map."""

    __slots__ = ("_b",)

    def __init__(self, buckets: tuple[dict[str, V], ...]) -> None:
        # Buckets are never mutated once they belong to a PMap.
        self._b = buckets

    @classmethod
    def empty(cls) -> PMap[V]:
        return cls(tuple({} for _ in range(_MASK + 1)))

    @classmethod
    def build(cls, items: Iterable[tuple[str, V]]) -> PMap[V]:
        buckets: list[dict[str, V]] = [{} for _ in range(_MASK + 1)]
        for k, v in items:
            buckets[hash(k) & _MASK][k] = v
        return cls(tuple(buckets))

    def get(self, key: str) -> V | None:
        return self._b[hash(key) & _MASK].get(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._b[hash(key) & _MASK]

    def __len__(self) -> int:
        return sum(map(len, self._b))

    def set(self, key: str, value: V) -> PMap[V]:
        i = hash(key) & _MASK
        bucket = self._b[i].copy()
        bucket[key] = value
        return PMap(self._b[:i] + (bucket,) + self._b[i + 1 :])  # noqa: RUF005 (faster)

    def update(self, set_items: Iterable[tuple[str, V]], delete: Iterable[str] = ()) -> PMap[V]:
        """Delete ``delete`` keys, then set ``set_items``; copies each touched bucket once."""
        buckets = list(self._b)
        copied: set[int] = set()
        for k in delete:
            i = hash(k) & _MASK
            if i not in copied:
                buckets[i] = buckets[i].copy()
                copied.add(i)
            buckets[i].pop(k, None)
        for k, v in set_items:
            i = hash(k) & _MASK
            if i not in copied:
                buckets[i] = buckets[i].copy()
                copied.add(i)
            buckets[i][k] = v
        return PMap(tuple(buckets))

    def delete(self, key: str) -> PMap[V]:
        i = hash(key) & _MASK
        if key not in self._b[i]:
            return self
        bucket = self._b[i].copy()
        del bucket[key]
        return PMap(self._b[:i] + (bucket,) + self._b[i + 1 :])  # noqa: RUF005 (faster)
