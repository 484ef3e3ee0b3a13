"""One stream entry: the fields the relay writes and what a reader gets back.

An entry of ``{prefix}doc:{<doc_id>}`` has id ``<position>-0`` and three fields::

    v      the document version, decimal ASCII
    epoch  the store epoch, decimal ASCII (a change voids every cursor)
    e      the event exactly as the websocket ``event`` message carries it, minus
           ``"type"``: {"v":…,"op":…,"actor":…,"id":…,"ts":…} (PROTOCOL.md section 4)

``e`` is encoded once, here, and never again: the gateway splices ``"type":"event"``
into these bytes and writes the same bytes to every socket (DESIGN.md, fan-out).
The stored op is spliced in verbatim with ``orjson.Fragment``: it was encoded by the
command side at commit and is never decoded on the real-time path.

The bus knows events only through ``EventRecord``, a structural Protocol that the
store's ``StoredEvent`` satisfies, so ``app.bus`` and ``app.store`` stay independent
siblings (pyproject.toml, import contracts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

import orjson

from app.bus.keys import position_of

__all__ = [
    "FIELD_EPOCH",
    "FIELD_EVENT",
    "FIELD_V",
    "Entry",
    "EventRecord",
    "decode_entry",
    "encode_event",
    "entry_fields",
    "to_entry",
]

FIELD_V: Final = b"v"
FIELD_EPOCH: Final = b"epoch"
FIELD_EVENT: Final = b"e"


class EventRecord(Protocol):
    """What the bus needs of a stored event (``app.store.ports.StoredEvent`` fits)."""

    @property
    def position(self) -> int: ...
    @property
    def doc_id(self) -> str: ...
    @property
    def v(self) -> int: ...
    @property
    def op(self) -> bytes: ...
    @property
    def actor(self) -> str: ...
    @property
    def op_id(self) -> str | None: ...
    @property
    def ts(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Entry:
    """One event of one document as a consumer receives it, from Redis or PostgreSQL.

    ``e`` is the encoded websocket event without ``type``; send it, never re-encode it.
    """

    position: int
    v: int
    epoch: int
    e: bytes


def encode_event(event: EventRecord) -> bytes:
    """The websocket ``event`` body of ``event``, without ``type``, as orjson bytes.

    Key order is the protocol's (``v, op, actor, id, ts``); ``op`` is the stored bytes.
    """
    return orjson.dumps(
        {
            "v": event.v,
            "op": orjson.Fragment(event.op),
            "actor": event.actor,
            "id": event.op_id,
            "ts": event.ts,
        }
    )


def entry_fields(event: EventRecord, epoch: int) -> dict[bytes, bytes]:
    """The field-value pairs of ``XADD`` for ``event``."""
    return {
        FIELD_V: b"%d" % event.v,
        FIELD_EPOCH: b"%d" % epoch,
        FIELD_EVENT: encode_event(event),
    }


def to_entry(event: EventRecord, epoch: int) -> Entry:
    """The entry a consumer would have read from Redis, built from a stored event."""
    return Entry(position=event.position, v=event.v, epoch=epoch, e=encode_event(event))


def decode_entry(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> Entry:
    """An ``Entry`` from one ``XRANGE``/``XREAD`` item. ``ValueError`` when it is not
    an entry the relay wrote (a foreign writer on our keys)."""
    try:
        return Entry(
            position=position_of(entry_id),
            v=int(fields[FIELD_V]),
            epoch=int(fields[FIELD_EPOCH]),
            e=bytes(fields[FIELD_EVENT]),
        )
    except KeyError as exc:
        raise ValueError(f"stream entry {entry_id!r} lacks the field {exc.args[0]!r}") from None
