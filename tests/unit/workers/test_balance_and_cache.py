"""The read worker's pure parts: how many shards each worker holds and which, the LRU
of documents, and when the cyclic GC runs full collections."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain import Document
from app.workers.balance import preference, share, to_release
from app.workers.cache import DocumentCache
from app.workers.collector import Collector


@given(st.integers(1, 256), st.integers(1, 40))
def test_shares_cover_every_shard_and_differ_by_at_most_one_worker(
    shards: int, workers: int
) -> None:
    each = share(shards, workers)
    assert each * workers >= shards  # a free shard always has a taker
    assert (each - 1) * workers < shards  # and nobody aims higher than needed


def test_share_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        share(0, 1)
    with pytest.raises(ValueError):
        share(16, 0)


@given(st.text(min_size=1, max_size=20), st.integers(1, 64))
def test_each_worker_prefers_every_shard_once(worker_id: str, shards: int) -> None:
    order = preference(worker_id, shards)
    assert sorted(order) == list(range(shards))
    assert order == preference(worker_id, shards)  # stable across processes


def test_workers_start_at_different_shards() -> None:
    starts = {preference(f"host-{pid}", 16)[0] for pid in range(100, 120)}
    assert len(starts) > 5


def test_the_least_preferred_shards_are_released() -> None:
    order = [3, 4, 5, 0, 1, 2]
    assert to_release({0, 1, 3, 4}, order, 2) == [0, 1]
    assert to_release({0, 1}, order, 2) == []
    assert to_release({0, 1}, order, 0) == [0, 1]


def doc(doc_id: str, v: int) -> Document:
    return Document(doc_id, "t", v)


def test_the_cache_answers_only_the_version_asked_for() -> None:
    cache = DocumentCache(2)
    cache.put(doc("a", 3))
    assert cache.get("a", 3) == doc("a", 3)
    assert cache.get("a", 2) is None and cache.get("b", 0) is None
    assert (cache.hits, cache.misses) == (1, 2)
    cache.put(doc("a", 2))  # older: kept out
    assert cache.get("a", 3) is not None


def test_the_least_recently_used_document_goes_first() -> None:
    cache = DocumentCache(2)
    cache.put(doc("a", 1))
    cache.put(doc("b", 1))
    assert cache.get("a", 1) is not None  # a is now the most recent
    cache.put(doc("c", 1))
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) is not None and cache.get("c", 1) is not None
    assert len(cache) == 2
    cache.discard("a")
    assert len(cache) == 1


def test_each_document_keeps_its_encoder_until_it_leaves_the_cache() -> None:
    cache = DocumentCache(2)
    encoder = cache.encoder("a")
    assert cache.encoder("a") is not encoder  # not kept before the document is
    cache.put(doc("a", 1), encoder)
    assert cache.encoder("a") is encoder
    cache.put(doc("a", 2))  # a later version without one: the encoder stays
    assert cache.encoder("a") is encoder
    cache.put(doc("b", 1), cache.encoder("b"))
    cache.put(doc("c", 1), cache.encoder("c"))  # evicts a, and its encoder
    assert cache.encoder("a") is not encoder
    kept = cache.encoder("c")
    cache.discard("c")
    assert cache.encoder("c") is not kept


def test_a_zero_capacity_cache_keeps_nothing() -> None:
    cache = DocumentCache(0)
    cache.put(doc("a", 1))
    assert len(cache) == 0
    with pytest.raises(ValueError):
        DocumentCache(-1)


def test_full_collections_wait_for_idle_time_or_the_longest_interval() -> None:
    assert Collector(every=0, idle=1).tick(idle_for=0.5) is None  # busy
    assert Collector(every=0, idle=1).tick(idle_for=2) is not None  # idle and due
    assert Collector(every=1000, idle=0).tick(idle_for=2) is None  # idle, not due
    assert Collector(every=1000, idle=1, at_most=0).tick(idle_for=0) is not None  # overdue


def test_install_freezes_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        Collector().install()
        assert gc.get_threshold()[0] > before[0]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
