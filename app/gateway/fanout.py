"""Fan-out: each committed event of a document, once-encoded, to every local session
following it, in version order, with no gap and no duplicate (DESIGN.md I4; PROTOCOL.md
section 4, guarantee 2).

One ``Channel`` per document per process, while at least one session follows it. A
channel has one cursor, the last version it delivered, and takes events from three
sources, in whatever order they come:

    commit tap   the events this process commits, right after their transaction
                 returns (``loop.call_soon``), before the acks are answered
                 (``CommitTap``); the events of one document in one group commit
                 are one run, so one frame per socket
    Redis        the document's stream, which the relay fills from PostgreSQL, read
                 by the process's stream readers (never per client): one XREAD BLOCK
                 names the streams of up to 128 channels (app/gateway/streams.py)
    PostgreSQL   the healer task: when a version is known to be committed (a later
                 event arrived, a session joined ahead, an ack is waiting) and has not
                 come within ``gap_grace`` seconds, it is read with ``read_stream``

``Channel.offer`` keeps an event only when it is after the cursor, and delivers only the
contiguous run that starts at cursor + 1: a duplicate from a second source is dropped, an
early event waits for the ones before it, and the run goes to every session with its
frame encoded once (the same ``str`` for every socket). Delivery is synchronous and never
awaits a socket: each session's sink puts the frame on its own bounded queue and closes
that session (4408) when the queue is full (STYLE.md finding 3, habit 14).

Joining: a session is welcomed at version ``w`` and then joins with ``join(doc, sink, w)``
(synchronously, so nothing can be delivered in between). If the channel is ahead of ``w``,
the events in between come from the channel's ring of recent events; if the ring does not
reach back that far, the caller reads them from PostgreSQL and joins again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

import orjson
import structlog

from app.gateway.streams import StreamReader
from app.observability import metrics
from app.protocol import WireEvent
from app.protocol.messages import events as events_frame
from app.store.ports import AppendRequest, AppendResult, NewEvent, StoredEvent
from app.store.postgres import PostgresStore

__all__ = ["Channel", "CommitTap", "Fanout", "Live", "Sink", "wire"]

log = structlog.get_logger(__name__)
# The level check the delivery path makes before building a debug line (cached by logging).
_debugging = logging.getLogger(__name__).isEnabledFor

# A sink receives a run of consecutive events and their frame, encoded once for all.
Sink = Callable[[Sequence[WireEvent], str], None]

_RING: Final = 1024  # recent events a channel keeps for sessions that join behind it
_EARLY_MAX: Final = 10_000  # events held while a gap before them is being filled
_FILL_PAGE: Final = 500
# Streams one shared reader names in its XREAD: each read re-arms them all on the Redis
# server, so a gateway following thousands of documents spreads them over a few reads.
_STREAMS_PER_READ: Final = 128
_BACKOFF_MIN: Final = 0.1
_BACKOFF_MAX: Final = 5.0
_STOP_WAIT: Final = 0.5


def _commit_ms(event: WireEvent) -> int:
    """The event's ``ts`` (epoch ms, set at commit), read off the end of its encoded body
    (``encode_event`` writes ``ts`` last) without parsing it; 0 when it is not there."""
    _, sep, tail = event.body.rpartition(',"ts":')
    try:
        return int(tail[:-1]) if sep else 0
    except ValueError:
        return 0


def _log_delivered(doc_id: str, run: Sequence[WireEvent], sockets: int) -> None:
    """One debug line per event of a run delivered by this process (never per socket)."""
    for event in run:
        body = orjson.loads(event.body)
        log.debug(
            "fanout delivered",
            doc=doc_id,
            user=body.get("actor"),
            op_id=body.get("id"),
            v=event.v,
            sockets=sockets,
        )


def wire(event: StoredEvent) -> WireEvent:
    return WireEvent.encode(event.v, event.op, event.actor, event.op_id, event.ts)


class Channel:
    """One document's delivery point in this process."""

    def __init__(self, fanout: Fanout, doc_id: str, cursor: int) -> None:
        self.fanout = fanout
        self.doc_id = doc_id
        self.cursor = cursor  # the last version delivered to the sinks
        self.known_head = cursor  # the highest version known to be committed
        self.sinks: dict[Sink, None] = {}  # insertion-ordered set
        # Sinks with ops in flight, and how many: served first (``_deliver``).
        self.authors: dict[Sink, int] = {}
        self._ring: deque[WireEvent] = deque(maxlen=_RING)
        self._early: dict[int, WireEvent] = {}
        self._gap = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.reader: StreamReader | None = None

    def start(self) -> None:
        self.reader = self.fanout.reader_for(self)
        self._tasks = [asyncio.create_task(self._heal(), name=f"fanout:{self.doc_id}:heal")]

    async def stop(self) -> None:
        self._stopped = True
        if self.reader is not None:
            await self.fanout.release(self.reader, self)
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=_STOP_WAIT)

    # -- delivery (synchronous: no await between taking an event and handing it on) --

    def offer(self, events: Iterable[WireEvent]) -> None:
        for event in events:
            if event.v > self.cursor:
                self._early[event.v] = event
                if event.v > self.known_head:
                    self.known_head = event.v
        run: list[WireEvent] = []
        while self.cursor + 1 in self._early:
            event = self._early.pop(self.cursor + 1)
            run.append(event)
            self.cursor = event.v
        if run:
            self._deliver(run)
        if len(self._early) > _EARLY_MAX:
            # Too much waiting on one gap: drop the latest; the healer reads them again.
            for v in sorted(self._early)[_EARLY_MAX // 2 :]:
                del self._early[v]
        if self.known_head > self.cursor:
            self._gap.set()

    def expect(self, v: int) -> None:
        """Version ``v`` is committed: make sure it is delivered (filled if it does not come)."""
        if v > self.known_head:
            self.known_head = v
        if self.known_head > self.cursor:
            self._gap.set()

    def _deliver(self, run: list[WireEvent]) -> None:
        frame = run[0].frame if len(run) == 1 else events_frame(run)
        self._ring.extend(run)
        sinks = list(self.sinks)  # a sink may leave (close) while we deliver
        authors = self.authors
        if authors:
            # Sessions with ops in flight go first: theirs are likely among this run,
            # and each is acknowledged as its event goes out (Session.deliver), so an
            # author's ack does not wait for the frames to every viewer.
            first = [sink for sink in authors if sink in self.sinks]
            sinks = first + [sink for sink in sinks if sink not in authors]
        for sink in sinks:
            try:
                sink(run, frame)
            except Exception:
                # A bug in one session must not cost the others this run; that session
                # sees a gap at its next delivery and closes 1011 (Session.deliver).
                log.exception("fanout sink failed", doc=self.doc_id)
        metrics.ws_deliveries_total.inc(len(sinks))
        if _debugging(logging.DEBUG):
            _log_delivered(self.doc_id, run, len(sinks))
        committed = _commit_ms(run[-1])
        if committed:
            metrics.ws_fanout_seconds.observe(max(0.0, time.time() - committed / 1000))

    def authoring(self, sink: Sink, delta: int) -> None:
        """``sink`` has ``delta`` more (or, negative, fewer) ops in flight."""
        count = self.authors.get(sink, 0) + delta
        if count > 0:
            self.authors[sink] = count
        else:
            self.authors.pop(sink, None)

    def join(self, sink: Sink, v: int) -> bool:
        """Add ``sink``, which has every event up to ``v``. False when the events between
        ``v`` and the cursor are no longer in the ring (read them, then join again)."""
        if v < self.cursor:
            ring = self._ring
            if not ring or ring[0].v > v + 1:
                return False
            backlog = [e for e in ring if e.v > v]
            sink(backlog, events_frame(backlog) if len(backlog) > 1 else backlog[0].frame)
        else:
            self.expect(v)  # the session is ahead: the channel catches up to it
        self.sinks[sink] = None
        return True

    # -- sources (Redis: the process's stream reader, app/gateway/streams.py) ---------

    async def _heal(self) -> None:
        """Fill what is known to be committed and has not come, from PostgreSQL."""
        store = self.fanout.store
        while True:
            await self._gap.wait()
            # The relay is usually a few milliseconds behind a commit: give it that.
            await asyncio.sleep(self.fanout.gap_grace)
            self._gap.clear()
            backoff = _BACKOFF_MIN
            while self.known_head > self.cursor:
                try:
                    stored = await store.read_stream(
                        self.doc_id, after_v=self.cursor, limit=_FILL_PAGE
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Unavailable, or the pool closing at shutdown
                    if self._stopped:
                        return
                    log.warning("fanout fill failed", doc=self.doc_id, error=repr(exc))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                    continue
                if not stored:
                    # Nothing after the cursor: the hint was stale (a stream left from
                    # another history); the store is the truth.
                    self.known_head = self.cursor
                    break
                metrics.ws_gap_fills_total.inc()
                self.offer([wire(e) for e in stored])


class Live(Protocol):
    """A local connection, as far as metrics and shutdown need to know it."""

    @property
    def queued(self) -> int: ...

    def shutdown(self, reason: str) -> None: ...


class Fanout:
    """The channels of this process, and its live connections; owned by the lifespan."""

    def __init__(
        self,
        store: PostgresStore,
        redis: Any,
        stream_key: Callable[[str], str],
        *,
        gap_grace: float = 0.05,
        block_ms: int = 2000,
        wake_key: Callable[[int], str] | None = None,
        streams_per_read: int = _STREAMS_PER_READ,
    ) -> None:
        self.store = store
        self.redis = redis  # redis.asyncio.Redis; untyped here (its stubs are partial)
        self.stream_key = stream_key
        self.gap_grace = gap_grace
        self.block_ms = block_ms
        # With wake streams, channels share readers of up to ``streams_per_read``
        # streams each (a single Redis server); without, each has its own (a cluster).
        self.wake_key = wake_key
        self.streams_per_read = streams_per_read
        self._readers: list[StreamReader] = []
        self._channels: dict[str, Channel] = {}
        self.live: set[Live] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._stopping: set[asyncio.Task[None]] = set()

    def channel(self, doc_id: str) -> Channel | None:
        return self._channels.get(doc_id)

    def join(self, doc_id: str, sink: Sink, v: int) -> bool:
        """See ``Channel.join``; the channel starts with the first session."""
        channel = self._channels.get(doc_id)
        if channel is None:
            channel = self._channels[doc_id] = Channel(self, doc_id, v)
            channel.start()
            metrics.ws_channels.set(len(self._channels))
        return channel.join(sink, v)

    def reader_for(self, channel: Channel) -> StreamReader:
        """Follow ``channel``'s stream: on a shared reader with room, or a new one."""
        key = self.stream_key(channel.doc_id)
        if self.wake_key is None:
            reader = StreamReader(
                self.redis,
                self.store,
                block_ms=self.block_ms,
                wake_key=None,
                name=f"fanout:{channel.doc_id}:redis",
            )
        else:
            room = [r for r in self._readers if r.following < self.streams_per_read]
            if room:
                reader = min(room, key=lambda r: r.following)
            else:
                reader = StreamReader(
                    self.redis,
                    self.store,
                    block_ms=self.block_ms,
                    wake_key=self.wake_key(len(self._readers)),
                    name=f"fanout:streams:{len(self._readers)}",
                )
                self._readers.append(reader)
        reader.add(key, channel)
        return reader

    async def release(self, reader: StreamReader, channel: Channel) -> None:
        """``channel`` stopped: stop following its stream (a reader of its own closes)."""
        if reader in self._readers:
            # Not the stream of a channel that took the document since (a join right
            # after the last leave): only this channel's follow.
            reader.remove(self.stream_key(channel.doc_id), channel)
        else:
            await reader.close()

    def leave(self, doc_id: str, sink: Sink) -> None:
        channel = self._channels.get(doc_id)
        if channel is None:
            return
        channel.sinks.pop(sink, None)
        channel.authors.pop(sink, None)
        if not channel.sinks:
            del self._channels[doc_id]
            metrics.ws_channels.set(len(self._channels))
            task = asyncio.create_task(channel.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def authoring(self, doc_id: str, sink: Sink, delta: int) -> None:
        """``sink`` has ``delta`` more (or fewer) ops in flight on ``doc_id``: while it has
        any, the document's channel serves it before the other sinks."""
        channel = self._channels.get(doc_id)
        if channel is not None:
            channel.authoring(sink, delta)

    def expect(self, doc_id: str, v: int) -> None:
        channel = self._channels.get(doc_id)
        if channel is not None:
            channel.expect(v)

    def committed(self, events: Sequence[StoredEvent]) -> None:
        """The commit tap: events this process just committed, before their acks. The
        events of one document go as one run (one ``events`` frame for every socket when
        a group commit took several: one write a socket, not one an event)."""
        runs: dict[str, list[StoredEvent]] = {}
        for event in events:
            runs.setdefault(event.doc_id, []).append(event)
        for doc_id, run in runs.items():
            channel = self._channels.get(doc_id)
            if channel is not None:
                channel.offer([wire(e) for e in run if e.v > channel.cursor])

    def queued(self) -> int:
        """Frames waiting in every local connection's send queue."""
        return sum(c.queued for c in self.live)

    def deepest(self) -> int:
        """The longest send queue of a local connection."""
        return max((c.queued for c in self.live), default=0)

    def shutdown(self, reason: str) -> None:
        """The server is going away: every local connection answers the ops it has in
        flight and closes 1001."""
        for connection in list(self.live):
            connection.shutdown(reason)

    def attach(self, connection: Live) -> None:
        self.live.add(connection)
        self._empty.clear()

    def detach(self, connection: Live) -> None:
        self.live.discard(connection)
        if not self.live:
            self._empty.set()

    async def drained(self) -> None:
        """Return once no local connection is left."""
        await self._empty.wait()

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        metrics.ws_channels.set(0)
        stopping = [channel.stop() for channel in channels]
        await asyncio.gather(*stopping, *self._stopping, return_exceptions=True)
        readers, self._readers = self._readers, []
        await asyncio.gather(*(r.close() for r in readers), return_exceptions=True)


class CommitTap(PostgresStore):
    """The event store as the command handler sees it, telling the fan-out of every
    event this process commits as soon as the transaction returns.

    The events are handed over with ``loop.call_soon``, so that ``append`` returns (and
    the group commit settles and takes its next batch) without the fan-out loop in its
    path; the loop's ready queue is FIFO, so the handoff still runs before the op
    submitters woken by the settled futures.

    Guarantee 2 (an ``ack`` no earlier than its event): the command handler resolves an
    op's future only after ``append`` returns; the handoff scheduled by then reaches the
    document's channel, which delivers the event to every local session (if it was
    next) or holds it until the versions before it arrive. The session itself holds the
    ack until its connection has the event (``Session.acked``), whatever ran first, and
    asks the channel to make sure the event comes (``AwaitEvent``).
    """

    def __init__(self, pool: Any) -> None:
        super().__init__(pool)
        self.listener: Callable[[Sequence[StoredEvent]], None] | None = None

    def _tell(self, events: Sequence[StoredEvent]) -> None:
        if self.listener is not None and events:
            asyncio.get_running_loop().call_soon(self._tell_now, events)

    def _tell_now(self, events: Sequence[StoredEvent]) -> None:
        if self.listener is not None:
            try:
                self.listener(events)
            except Exception:  # the commit stands whatever the fan-out does
                log.exception("fanout tap failed")

    async def create_document(
        self, doc_id: str, owner: str, title: str, event: NewEvent
    ) -> StoredEvent:
        stored = await super().create_document(doc_id, owner, title, event)
        self._tell([stored])
        return stored

    async def append(self, batch: Sequence[AppendRequest]) -> list[AppendResult]:
        results = await super().append(batch)
        self._tell(
            [
                _stored(r, result)
                for r, result in zip(batch, results, strict=True)
                if result.status == "ok"
            ]
        )
        return results

    async def append_exclusive(
        self,
        doc_id: str,
        after_v: int,
        build: Callable[[list[StoredEvent]], Sequence[AppendRequest]],
    ) -> list[AppendResult]:
        built: list[Sequence[AppendRequest]] = []

        def keep(events: list[StoredEvent]) -> Sequence[AppendRequest]:
            requests = build(events)
            built.append(requests)
            return requests

        results = await super().append_exclusive(doc_id, after_v, keep)
        if built:
            self._tell(
                [
                    _stored(r, result)
                    for r, result in zip(built[-1], results, strict=True)
                    if result.status == "ok"
                ]
            )
        return results


def _stored(request: AppendRequest, result: AppendResult) -> StoredEvent:
    event = request.event
    return StoredEvent(
        position=result.position,
        doc_id=request.doc_id,
        v=result.v,
        kind=event.kind,
        op=event.op,
        effect=event.effect,
        actor=event.actor,
        op_id=event.op_id,
        ts=result.ts,
    )
