"""Where each element of a layer is, without renumbering on every insert or removal.

Each element of a layer gets an integer *order key*; ``keys`` holds them ascending,
parallel to ``Layer.elements``, and ``index`` maps element id -> key (a ``PMap``). An
element's position is ``bisect_left(keys, index[id])``: a C-level binary search, so no
op ever walks the elements in Python. Keys are spaced ``GAP`` apart; an insert between
two neighbours takes the midpoint; when two neighbours are adjacent integers the order
is dropped and rebuilt (O(n), after ~32 inserts at one spot). Removing an element or
replacing it in place never touches the other keys.

Keys are private: they are not part of the state, not in its JSON, not compared.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Protocol

from app.domain._pmap import PMap

__all__ = ["GAP", "Order"]

GAP = 1 << 32


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


class Order:
    __slots__ = ("index", "keys")

    def __init__(self, keys: tuple[int, ...], index: PMap[int]) -> None:
        self.keys = keys
        self.index = index

    @classmethod
    def build(cls, elements: Sequence[_HasId]) -> Order:
        keys = tuple(range(0, len(elements) * GAP, GAP))
        return cls(keys, PMap.build(zip((e.id for e in elements), keys, strict=True)))

    def position(self, element_id: str) -> int | None:
        key = self.index.get(element_id)
        return None if key is None else bisect_left(self.keys, key)

    def insert(self, element_id: str, i: int) -> Order | None:
        """The order after inserting ``element_id`` at position ``i`` (clamped to the
        end); None when there is no free key there (the caller rebuilds)."""
        keys = self.keys
        n = len(keys)
        if i >= n:
            key = keys[-1] + GAP if n else 0
            return Order(keys + (key,), self.index.set(element_id, key))  # noqa: RUF005
        if i == 0:
            key = keys[0] - GAP
        else:
            low, high = keys[i - 1], keys[i]
            if high - low < 2:
                return None
            key = (low + high) // 2
        return Order(keys[:i] + (key,) + keys[i:], self.index.set(element_id, key))  # noqa: RUF005

    def delete(self, element_id: str, i: int) -> Order:
        return Order(self.keys[:i] + self.keys[i + 1 :], self.index.delete(element_id))
