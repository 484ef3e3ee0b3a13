"""Every Redis key name and entry id the project uses, in one place (arq's habit).

The contract between the relay (writer) and the gateways (readers); docs/relay.md
tells the whole story::

    {prefix}doc:{<doc_id>}      one stream per document; entry id "<position>-0"
    {prefix}presence:{<doc_id>} pub/sub: a document's presence (app/gateway/presence.py)
    {prefix}members:{<doc_id>}  pub/sub: a document's membership changes (a role set
                                or a member removed; app/gateway/members.py)
    {prefix}gateway:<token>:wake:<n>  a stream of one entry that wakes a gateway
                                process's n-th blocked stream read when a document
                                joins it (app/gateway/streams.py); deleted at exit,
                                expires a day after its last wake
    {prefix}relay:{relay}:position  the last global position the relay published (decimal)
    {prefix}relay:{relay}:epoch     the store epoch of that position (decimal)
    {prefix}relay:{relay}:store     the store id of that position (uuid text)

``prefix`` comes from ``REDIS_PREFIX`` (default ``atelier:``): one prefix per event
store. The braces around the document id are a Redis Cluster hash tag: only the text
inside them is hashed, so each document's stream lives whole on one shard, and a
gateway reads one shard per document. Hence no brace may appear in the prefix or the id.
The relay's three progress keys share the tag ``{relay}``: one slot, so the pipelines
that read and write them together run on one node, in order. Before that tag they were
``{prefix}relay:position|epoch|store`` (``relay_legacy``); ``read_progress`` adopts
those once (app/bus/streams.py).

The entry id is the event's global position, given explicitly to ``XADD``. Redis
refuses an id at or below a stream's top, which is what makes republishing after a
crash harmless (I4: exactly once): a refused ``XADD`` means "already published".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_PREFIX", "Keys", "entry_id", "position_of"]

DEFAULT_PREFIX: Final = "atelier:"

_GLOB_SPECIAL: Final = re.compile(r"([\\*?\[\]])")


def _check_tag_free(what: str, value: str) -> None:
    if "{" in value or "}" in value:
        # A brace here would move the hash tag: the stream could land on any shard,
        # and the prefix's own tag would put every document on a single one.
        raise ValueError(f"{what} must not contain '{{' or '}}': {value!r}")


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names under one prefix. Cheap to build; make one per process."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        _check_tag_free("the Redis prefix", self.prefix)

    def doc_stream(self, doc_id: str) -> str:
        """The stream of one document: ``{prefix}doc:{<doc_id>}``."""
        _check_tag_free("a document id", doc_id)
        return f"{self.prefix}doc:{{{doc_id}}}"

    def doc_presence(self, doc_id: str) -> str:
        """The pub/sub channel of a document's presence: ``{prefix}presence:{<doc_id>}``."""
        _check_tag_free("a document id", doc_id)
        return f"{self.prefix}presence:{{{doc_id}}}"

    def doc_members(self, doc_id: str) -> str:
        """The pub/sub channel of a document's membership changes:
        ``{prefix}members:{<doc_id>}``."""
        _check_tag_free("a document id", doc_id)
        return f"{self.prefix}members:{{{doc_id}}}"

    def gateway_wake(self, token: str, n: int) -> str:
        """The wake stream of a gateway process's ``n``-th stream reader:
        ``{prefix}gateway:<token>:wake:<n>`` (``token`` unique per process)."""
        _check_tag_free("a gateway token", token)
        return f"{self.prefix}gateway:{token}:wake:{n}"

    def doc_id_of(self, key: str | bytes) -> str:
        """The document id of a stream key made by ``doc_stream`` (inverse)."""
        text = key.decode() if isinstance(key, bytes) else key
        head = f"{self.prefix}doc:{{"
        if not (text.startswith(head) and text.endswith("}")):
            raise ValueError(f"not a document stream under {self.prefix!r}: {text!r}")
        return text[len(head) : -1]

    @property
    def doc_stream_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern for every document stream under this prefix."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "doc:{*}"

    @property
    def relay_position(self) -> str:
        """The last position the relay published, written with each batch."""
        return f"{self.prefix}relay:{{relay}}:position"

    @property
    def relay_epoch(self) -> str:
        """The store epoch that ``relay_position`` belongs to."""
        return f"{self.prefix}relay:{{relay}}:epoch"

    @property
    def relay_store(self) -> str:
        """The store id that ``relay_position`` belongs to."""
        return f"{self.prefix}relay:{{relay}}:store"

    @property
    def relay_legacy(self) -> tuple[str, str, str]:
        """The progress keys (position, epoch, store) as named before they shared a
        hash tag; read once by ``read_progress`` and then deleted."""
        return (
            f"{self.prefix}relay:position",
            f"{self.prefix}relay:epoch",
            f"{self.prefix}relay:store",
        )

    @property
    def all_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern for every key under this prefix (tests, flush runbook)."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "*"


def entry_id(position: int) -> str:
    """The stream entry id of the event at global ``position``: ``"<position>-0"``."""
    if position < 1:
        raise ValueError(f"positions start at 1, got {position}")
    return f"{position}-0"


def position_of(entry: str | bytes) -> int:
    """The global position of a stream entry id written by the relay (``"<p>-0"``)."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    ms, sep, seq = text.partition("-")
    if not sep or seq != "0" or not ms.isdigit():
        raise ValueError(f"not a relay entry id: {text!r}")
    return int(ms)
