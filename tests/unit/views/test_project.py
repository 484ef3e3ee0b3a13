"""The projection's fold (app/views/project.py): pure, split-invariant, equal to the
write side's state, and strict about broken streams."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain import Document, apply_event, create_op, state_to_json
from app.store.ports import StoredEvent
from app.views.project import StateEncoder, decode_state, encode_state, fold, keeps_history
from app.views.schema import HISTORY_EVERY, HISTORY_MAX_STRIDE, history_stride
from app.views.shards import shard_of
from tests.unit.domain.strategies import Driver
from tests.unit.domain.support import Event, same_state

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def stored(events: list[Event], doc_id: str = "d1") -> list[StoredEvent]:
    return [
        StoredEvent(
            position=v, doc_id=doc_id, v=v, kind=op["kind"], op=orjson.dumps(op),
            effect=orjson.dumps(effect), actor=actor, op_id=None, ts=1_000 + v,
        )
        for v, actor, op, effect in events
    ]  # fmt: skip


@SETTINGS
@given(st.data())
def test_fold_in_any_split_equals_the_write_side_state(data: st.DataObject) -> None:
    d = Driver(data)
    d.run(data.draw(st.integers(1, 30)))
    events = stored(d.session.events)
    whole = fold(Document("d1"), events)
    assert same_state(whole.doc, d.session.doc)
    assert whole.owner == "owner"
    assert [a.v for a in whole.activity] == list(range(1, len(events) + 1))
    # split into batches, each starting from the previous batch's stored bytes
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(events)), max_size=4))))
    doc, state, start = Document("d1"), b"", 0
    for end in [*cuts, len(events)]:
        if end <= start:
            continue
        rows = fold(doc, events[start:end])
        doc, state, start = decode_state(rows.state), rows.state, end
    assert state == whole.state
    assert decode_state(whole.state) == whole.doc


@SETTINGS
@given(st.data())
def test_the_encoder_gives_the_bytes_of_state_to_json(data: st.DataObject) -> None:
    """``StateEncoder`` reused over a document's successive states (its caches by object
    identity), a fresh one, and ``fold`` with or without one: all give
    ``orjson.dumps(state_to_json(doc))``, byte for byte."""
    d = Driver(data)
    d.run(data.draw(st.integers(1, 40)))
    events = stored(d.session.events)
    encoder = StateEncoder()
    doc = Document("d1")
    for event in events:
        doc = apply_event(doc, event.v, orjson.loads(event.op))
        expected = orjson.dumps(state_to_json(doc))
        assert encoder.encode(doc) == expected
        assert encode_state(doc) == expected
    # the decoded state (new objects, same values) through the warm encoder
    assert encoder.encode(decode_state(encode_state(doc))) == encode_state(doc)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(events)), max_size=4))))
    folded, start, warm = Document("d1"), 0, StateEncoder()
    for end in [*cuts, len(events)]:
        if end <= start:
            continue
        with_encoder = fold(folded, events[start:end], warm)
        assert with_encoder.state == fold(folded, events[start:end]).state
        assert with_encoder.state == orjson.dumps(state_to_json(with_encoder.doc))
        folded, start = with_encoder.doc, end


def test_history_stride_is_a_power_of_two_growing_with_the_elements() -> None:
    assert [history_stride(n) for n in (0, 999, 1000, 1999, 2000, 3999, 4000, 10**6)] == [
        1, 1, 2, 2, 4, 4, 8, 8,
    ]  # fmt: skip
    assert all(HISTORY_MAX_STRIDE % history_stride(n) == 0 for n in range(0, 20_000, 7))


def test_large_documents_keep_fewer_history_rows() -> None:
    """Deterministic (a function of the state at v), and a row at every multiple of
    HISTORY_EVERY * HISTORY_MAX_STRIDE whatever the size."""
    ops: list[Event] = [(1, "u", create_op("T"), {})]
    ops.append((2, "u", {"kind": "layer.add", "layer": "L", "name": "L", "visible": True,
                         "locked": False, "opacity": 1.0}, {}))  # fmt: skip
    for v in range(3, 4 * HISTORY_MAX_STRIDE * HISTORY_EVERY):
        element = {"kind": "element.add", "element": f"e{v}", "layer": "L", "shape": "rect",
                   "props": {"x": v}}  # fmt: skip
        ops.append((v, "u", element, {}))
    events = stored(ops)
    rows = fold(Document("d1"), events)
    kept = [v for v, _ in rows.history]
    # elements at v are v - 2: under 1,000 every multiple of 256 is kept, then 1 in 2...
    assert kept[:4] == [256, 512, 768, 1024] and 1280 not in kept
    assert 1536 in kept and 2048 in kept and 2304 not in kept and 2560 not in kept
    for v in range(HISTORY_EVERY, len(events) + 1, HISTORY_EVERY):
        doc = fold(Document("d1"), events[:v]).doc
        assert (v in kept) == keeps_history(v, doc)
        if v % (HISTORY_EVERY * HISTORY_MAX_STRIDE) == 0:
            assert v in kept
    # the same rows whatever the split (a rebuild folds in other batches than a worker)
    split = fold(Document("d1"), events[:1000])
    rest = fold(split.doc, events[1000:])
    assert [v for v, _ in split.history + rest.history] == kept
    assert dict(split.history + rest.history) == dict(rows.history)


def test_history_rows_at_every_multiple_of_history_every() -> None:
    ops: list[Event] = [(1, "u", create_op("T"), {})]
    ops += [(v, "u", {"kind": "doc.rename", "title": f"t{v}"}, {}) for v in range(2, 600)]
    rows = fold(Document("d1"), stored(ops))
    assert [v for v, _ in rows.history] == [HISTORY_EVERY, 2 * HISTORY_EVERY]
    assert orjson.loads(rows.history[0][1])["title"] == f"t{HISTORY_EVERY}"
    assert rows.doc.v == 599 and rows.updated_at == 1_599


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([(2, "u", {"kind": "doc.rename", "title": "x"}, {})], "cannot follow"),
        ([(1, "u", {"kind": "doc.rename", "title": "x"}, {})], "only v1"),
        ([(1, "u", {"kind": "no.such"}, {})], "only v1|unknown"),
    ],
)
def test_a_broken_stream_raises(events: list[Event], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fold(Document("d1"), stored(events))


def test_events_of_another_document_are_refused() -> None:
    with pytest.raises(ValueError, match="in the fold of"):
        fold(Document("d2"), stored([(1, "u", create_op("T"), {})]))


def test_apply_event_moves_the_version() -> None:
    doc = apply_event(Document("d1"), 1, create_op("T"))
    assert (doc.v, doc.title) == (1, "T")
    assert encode_state(doc) == b'{"id":"d1","title":"T","v":1,"layers":[]}'


@given(st.text(min_size=1, max_size=64), st.integers(1, 64))
def test_shard_of_is_stable_and_in_range(doc_id: str, shards: int) -> None:
    shard = shard_of(doc_id, shards)
    assert 0 <= shard < shards
    assert shard == shard_of(doc_id, shards)


def test_shard_of_is_crc32_so_every_process_agrees() -> None:
    # fixed values (zlib.crc32 of the UTF-8 id, mod 16): a change of the function
    # would silently move documents between shards and their checkpoints
    assert [shard_of(doc, 16) for doc in ("d1", "poster", "a")] == [6, 2, 3]
    with pytest.raises(ValueError):
        shard_of("d1", 0)
