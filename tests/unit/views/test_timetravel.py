"""Time travel (app/views/timetravel.py) over in-memory sources: the state at v is the
fold of the first v events from any base; the LRU is bounded by bytes; a version the
document does not have is ``invalid``; concurrent requests share one computation."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from app.domain import Document, create_op
from app.errors import Invalid
from app.store.ports import StoredEvent
from app.views.project import encode_state, fold
from app.views.reader import StateRow
from app.views.schema import HISTORY_EVERY
from app.views.timetravel import StateCache, TimeTravel

N = 2 * HISTORY_EVERY + 40


def op_at(v: int) -> dict[str, Any]:
    if v == 1:
        return create_op("Poster")
    if v == 2:  # as stored: normalized, every field present
        return {
            "kind": "layer.add",
            "layer": "L1",
            "name": "Bg",
            "visible": True,
            "locked": False,
            "opacity": 1.0,
        }
    if v % 3 == 0:
        return {
            "kind": "element.add",
            "element": f"e{v}",
            "layer": "L1",
            "shape": "rect",
            "props": {"x": v, "y": 0, "w": 1, "h": 1},
        }
    return {"kind": "doc.rename", "title": f"t{v}"}


EVENTS = [
    StoredEvent(
        position=v, doc_id="d1", v=v, kind=op_at(v)["kind"], op=orjson.dumps(op_at(v)),
        effect=b"{}", actor="alice", op_id=None, ts=1_000 + v,
    )
    for v in range(1, N + 1)
]  # fmt: skip


def folded(v: int) -> bytes:
    return fold(Document("d1"), EVENTS[:v]).state


class Sources:
    """``Bases`` and ``Streams`` over a list: history rows every HISTORY_EVERY up to
    ``view_v`` (how far the views got) and the current state at ``view_v``."""

    def __init__(self, view_v: int) -> None:
        self.view_v = view_v
        self.bases = 0
        self.reads: list[tuple[int, int | None]] = []
        self.gate: asyncio.Event | None = None

    async def base(self, doc_id: str, v: int) -> StateRow | None:
        self.bases += 1
        if self.gate is not None:
            await self.gate.wait()
        candidates = [h for h in range(HISTORY_EVERY, self.view_v + 1, HISTORY_EVERY) if h <= v]
        if self.view_v and self.view_v <= v:
            candidates.append(self.view_v)
        if not candidates:
            return None
        best = max(candidates)
        return StateRow(best, folded(best))

    async def read_stream(
        self, doc_id: str, after_v: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        self.reads.append((after_v, limit))
        after = EVENTS[after_v:]
        return after if limit is None else after[:limit]


@pytest.mark.parametrize("view_v", [0, 5, HISTORY_EVERY - 1, HISTORY_EVERY + 3, N])
@pytest.mark.parametrize("v", [1, 2, 3, HISTORY_EVERY - 1, HISTORY_EVERY, HISTORY_EVERY + 1, N])
async def test_state_at_is_the_fold_of_the_first_v_events(view_v: int, v: int) -> None:
    sources = Sources(view_v)
    travel = TimeTravel(sources, sources)
    assert await travel.state_at("d1", v) == folded(v)
    # Replays start at the best base: never more than HISTORY_EVERY - 1 events once
    # the views hold the history up to v.
    replayed = sum(limit or 0 for _, limit in sources.reads)
    if view_v >= v:
        assert replayed < HISTORY_EVERY
    assert (await travel.document_at("d1", v)).v == v


async def test_a_long_replay_reads_in_pages() -> None:
    sources = Sources(view_v=0)
    travel = TimeTravel(sources, sources)
    assert await travel.state_at("d1", N) == folded(N)
    assert len(sources.reads) == 1  # N < one page
    assert encode_state(fold(Document("d1"), EVENTS).doc) == folded(N)


@pytest.mark.parametrize("v", [0, -1, N + 1, N + 1000])
async def test_a_version_the_document_does_not_have_is_invalid(v: int) -> None:
    sources = Sources(view_v=N)
    with pytest.raises(Invalid):
        await TimeTravel(sources, sources).state_at("d1", v)


async def test_answers_are_cached_and_shared() -> None:
    sources = Sources(view_v=HISTORY_EVERY)
    travel = TimeTravel(sources, sources)
    sources.gate = asyncio.Event()
    waiting = [asyncio.create_task(travel.state_at("d1", 300)) for _ in range(5)]
    await asyncio.sleep(0.01)
    sources.gate.set()
    results = await asyncio.gather(*waiting)
    assert results == [folded(300)] * 5
    assert sources.bases == 1  # one computation for five concurrent requests
    assert await travel.state_at("d1", 300) == folded(300)
    assert sources.bases == 1  # then from the cache
    assert len(travel.cache) == 1


async def test_a_cancelled_computation_does_not_fail_the_others() -> None:
    sources = Sources(view_v=0)
    travel = TimeTravel(sources, sources)
    sources.gate = asyncio.Event()
    first = asyncio.create_task(travel.state_at("d1", 10))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(travel.state_at("d1", 10))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    sources.gate.set()
    assert await second == folded(10)
    assert first.cancelled()


def test_the_cache_is_bounded_by_bytes_and_evicts_the_least_recently_used() -> None:
    cache = StateCache(max_bytes=10)
    cache.put(("d", 1), b"aaaa")
    cache.put(("d", 2), b"bbbb")
    assert cache.get(("d", 1)) == b"aaaa"  # 1 is now the most recently used
    cache.put(("d", 3), b"cccc")  # 12 bytes: evicts 2
    assert cache.get(("d", 2)) is None
    assert cache.get(("d", 1)) == b"aaaa" and cache.get(("d", 3)) == b"cccc"
    assert cache.size == 8
    cache.put(("d", 4), b"x" * 11)  # larger than the whole cache: not kept, evicts nothing
    assert cache.get(("d", 4)) is None and len(cache) == 2
    cache.put(("d", 1), b"a")  # replacing adjusts the size
    assert cache.size == 5
    with pytest.raises(ValueError):
        StateCache(-1)
