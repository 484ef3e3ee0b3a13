"""The Lua script that adds one document stream's events of a relay batch.

``publish`` (app/bus/streams.py) calls it once per stream per batch, with ``EVAL``,
in one pipeline. (redis-py refuses ``EVALSHA`` in a cluster pipeline. Redis caches the
compiled script by its digest, so a call costs the body's ~600 bytes on the wire and a
SHA-1 of them, and never fails for want of a loaded script.) What it guarantees, and
why a script:

- **No hole below a stream's top.** A stream's entries of the batch are added in
  position order, in one atomic call, and the first failure other than "already
  there" stops the call: what lands is a prefix of them. The relay counts an id that
  Redis refuses as "at or below the top" as published before (I4), which is true only
  if no entry below the top is missing. With one pipelined ``XADD`` per event that
  could break on a Redis Cluster: redis-py retries redirected commands of a pipeline
  one at a time, so during a slot migration an ``XADD`` could exhaust its redirects
  while a later one of the same stream succeeded. The batch's retry then saw the
  missing entry refused as "already published", and the stream kept the hole. One
  call per stream is redirected, and runs, as a whole.
- **One command per stream**, not per event: a batch of 500 events of one hot
  document is one call; the stream's ``EXPIRE`` is refreshed inside it.

Arguments: ``KEYS[1]`` the stream; ``ARGV`` = maxlen, ttl (0: no expiry), the number
of items per entry (1 + 2 x fields), then each entry's id and field-value pairs.
Answer: ``[added, already]``, or ``[added, already, error]`` when it stopped at an
error (the entries after it were not tried).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from app.bus.entry import EventRecord, entry_fields
from app.bus.keys import Keys, entry_id

__all__ = ["ADD_SCRIPT", "Added", "add_calls", "parse_added"]

# "The ID specified in XADD is equal or smaller than the target stream top item"
# (t_stream.c): the entry is there already, or was and has been trimmed.
_ALREADY: Final = "equal or smaller than the target stream top item"

ADD_SCRIPT: Final = """
local maxlen = ARGV[1]
local ttl = tonumber(ARGV[2])
local width = tonumber(ARGV[3])
local added, already = 0, 0
for i = 4, #ARGV, width do
  local r = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', maxlen,
                        unpack(ARGV, i, i + width - 1))
  if type(r) == 'table' and r.err then
    if not string.find(r.err, '%s', 1, true) then
      return {added, already, r.err}
    end
    already = already + 1
  else
    added = added + 1
  end
end
if ttl > 0 and added + already > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return {added, already}
""".replace("%s", _ALREADY)


def add_calls(
    keys: Keys, events: Sequence[EventRecord], *, epoch: int, maxlen: int, ttl: int
) -> dict[str, list[bytes | str | int]]:
    """The ``ARGV`` of each stream's call, by stream key, events in the given order
    (ascending positions); insertion order is the order of each stream's first event."""
    calls: dict[str, list[bytes | str | int]] = {}
    for event in events:
        fields = entry_fields(event, epoch)
        key = keys.doc_stream(event.doc_id)
        argv = calls.get(key)
        if argv is None:
            argv = calls[key] = [maxlen, ttl, 1 + 2 * len(fields)]
        argv.append(entry_id(event.position))
        for name, value in fields.items():
            argv.append(name)
            argv.append(value)
    return calls


@dataclass(frozen=True, slots=True)
class Added:
    """One call's answer: entries added, refused as already there, and the error that
    stopped it (None when every entry was tried)."""

    added: int
    already: int
    error: str | None


def parse_added(answer: object) -> Added:
    """``Added`` from the script's reply; ``ValueError`` for any other shape."""
    if not isinstance(answer, list) or len(answer) not in (2, 3):
        raise ValueError(f"unexpected answer of the stream-add script: {answer!r}")
    added, already = answer[0], answer[1]
    if not isinstance(added, int) or not isinstance(already, int):
        raise ValueError(f"unexpected answer of the stream-add script: {answer!r}")
    error = None
    if len(answer) == 3:
        raw = answer[2]
        error = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return Added(added, already, error)
