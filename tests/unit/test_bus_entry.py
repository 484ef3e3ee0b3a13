"""app.bus.entry: the entry fields, and the websocket event encoded once, op spliced."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest

from app.bus import Entry, decode_entry, encode_event, to_entry
from app.bus.entry import entry_fields
from app.store.ports import StoredEvent


def stored(**overrides: object) -> StoredEvent:
    fields: dict[str, object] = {
        "position": 17,
        "doc_id": "d1",
        "v": 3,
        "kind": "layer.add",
        "op": b'{"kind":"layer.add","layer":"L1","name":"a"}',
        "effect": b"{}",
        "actor": "alice",
        "op_id": "op-1",
        "ts": 1_700_000_000_123,
    }
    fields.update(overrides)
    return StoredEvent(**fields)  # type: ignore[arg-type]


def test_the_event_is_the_websocket_event_without_type() -> None:
    body = encode_event(stored())
    assert body == (
        b'{"v":3,"op":{"kind":"layer.add","layer":"L1","name":"a"},'
        b'"actor":"alice","id":"op-1","ts":1700000000123}'
    )
    # PROTOCOL.md section 4: `event` carries v, op, actor, id, ts, in that order.
    assert list(orjson.loads(body)) == ["v", "op", "actor", "id", "ts"]


def test_the_gateway_can_splice_the_type_in() -> None:
    body = encode_event(stored())
    message = b'{"type":"event",' + body[1:]
    assert orjson.loads(message) == {"type": "event", **orjson.loads(body)}


def test_the_stored_op_is_spliced_verbatim() -> None:
    # Bytes a re-encode would change (spacing, key order, float form, escapes): the
    # stored op must arrive exactly as the command side encoded it.
    op = b'{"z":1.50,  "a":"\\u00e9","kind":"doc.rename"}'
    body = encode_event(stored(op=op))
    assert op in body
    assert orjson.loads(body)["op"] == orjson.loads(op)


def test_events_no_client_op_made_have_a_null_id() -> None:
    body = encode_event(stored(op_id=None, kind="doc.create", v=1))
    assert orjson.loads(body)["id"] is None
    assert b'"id":null' in body


def test_actors_are_json_escaped() -> None:
    body = encode_event(stored(actor='a"b\\c\u00e9'))
    assert orjson.loads(body)["actor"] == 'a"b\\c\u00e9'


def test_fields_are_v_epoch_and_e() -> None:
    event = stored()
    fields = entry_fields(event, 4)
    assert fields == {b"v": b"3", b"epoch": b"4", b"e": encode_event(event)}


def test_decode_is_the_inverse_of_the_fields() -> None:
    event = stored()
    entry = decode_entry(b"17-0", entry_fields(event, 2))
    assert entry == Entry(position=17, v=3, epoch=2, e=encode_event(event))
    assert entry == to_entry(event, 2)


def test_entries_the_relay_did_not_write_are_refused() -> None:
    with pytest.raises(ValueError, match="lacks the field"):
        decode_entry(b"17-0", {b"v": b"3", b"e": b"{}"})
    with pytest.raises(ValueError):
        decode_entry(b"17-1", entry_fields(stored(), 1))
    with pytest.raises(ValueError):
        decode_entry(b"17-0", {b"v": b"three", b"epoch": b"1", b"e": b"{}"})


def test_any_record_with_the_fields_will_do() -> None:
    # The bus sees events structurally (EventRecord), never through app.store.
    @dataclass(frozen=True)
    class Record:
        position: int
        doc_id: str
        v: int
        op: bytes
        actor: str
        op_id: str | None
        ts: int

    record = Record(5, "d", 2, b'{"kind":"doc.rename","title":"x"}', "bob", None, 9)
    assert orjson.loads(encode_event(record)) == {
        "v": 2,
        "op": {"kind": "doc.rename", "title": "x"},
        "actor": "bob",
        "id": None,
        "ts": 9,
    }
