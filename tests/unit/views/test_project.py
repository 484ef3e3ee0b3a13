"""The projection's fold (app/views/project.py): pure, split-invariant, equal to the
write side's state, and strict about broken streams."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain import Document, apply_event, create_op
from app.store.ports import StoredEvent
from app.views.project import decode_state, encode_state, fold
from app.views.schema import HISTORY_EVERY
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
