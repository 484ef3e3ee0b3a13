"""``GET /ws/documents/{doc_id}``: the asyncio shell around ``app.protocol.Session``.

The session decides; this module only does the I/O it asks for (STYLE.md habit 1).
Each connection runs its tasks in one ``asyncio.TaskGroup``, all but the reader only
when needed (a viewer that keeps up runs the reader alone):

    reader     frames in → ``Session.receive``; a hello is checked here (token, role,
               welcome) before the next frame is read. Once joined, the frames come
               straight from the parser (``_received``, app/gateway/direct.py) and the
               reader waits for the disconnect alone
    writer     started by the first frame that must wait (the socket does not take it
               now) or the first close: the bounded send queue → the socket, in order;
               a full queue closes the connection 4408 (never wait on the slowest
               socket: STYLE.md finding 3, habit 14); then the close frame
    answers    one task per op: the op → the command handler, its ``ack`` /
               ``reject`` back. Ops go to the handler in the order they came, the next
               one once the previous one is decided (queued for its commit: ``_submit``,
               no task waits in between), so a client's ops are decided in its own order
               and chain into one transaction

Two timers (``loop.call_later``, no task): the hello deadline (4401), and once a close
was asked for, the time the close may take before the connection is dropped.

Frames reach the socket directly when they can (app/gateway/direct.py): a frame goes
straight to the transport, built once for every socket, when nothing is queued before it
and the transport's buffer is under its high-water mark; otherwise onto the queue, which
the writer empties in order as the transport drains. Under a server without the
``atelier.direct`` extension every frame takes the queue and ASGI's ``send_text``.

Events come from the process's ``Fanout`` through ``_deliver``, synchronously, the same
way as every other frame: what the session sends goes out in the order it decided it.
Guarantee 2 (an ack no earlier than its event) is the session's:
``Session.acked`` holds an ack until the connection has had the event, and
``AwaitEvent`` asks the fan-out to fill that event from PostgreSQL if it does not come.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
import structlog
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.config import Settings
from app.domain import Role, WriteModel, evolve, state_to_json, valid_id
from app.errors import AppError, Unauthenticated
from app.gateway.direct import EXTENSION, DirectSocket, frame_of
from app.gateway.fanout import Fanout, wire
from app.gateway.services import Services, services
from app.observability import metrics
from app.protocol import (
    Action,
    Authenticate,
    AwaitEvent,
    Close,
    CloseCode,
    ErrorCode,
    PublishPresence,
    Send,
    Session,
    SessionConfig,
    State,
    Submit,
    WireEvent,
)
from app.tokens import verify_token

__all__ = ["Connection", "WsConfig", "routes"]

log = structlog.get_logger(__name__)

_FILL_PAGE: Final = 500
_INTERNAL_MESSAGE: Final = "internal error; it has been logged; retry with the same id"


@dataclass(frozen=True, slots=True)
class WsConfig:
    session: SessionConfig
    hello_timeout: float = 5.0  # PROTOCOL.md 4: hello within 5 s
    send_queue: int = 1024  # frames waiting for a socket before it is closed 4408
    close_timeout: float = 5.0  # how long a close may take before the socket is dropped
    resume_max: int = 1000  # more missed events than this: the welcome sends the state

    @classmethod
    def from_settings(cls, settings: Settings) -> WsConfig:
        return cls(
            session=SessionConfig(
                max_frame_bytes=settings.max_body_bytes,
                op_rate=settings.ws_op_rate,
                op_burst=settings.ws_op_burst,
                frame_rate=4 * settings.ws_op_rate,
                frame_burst=4 * settings.ws_op_burst,
                max_inflight=settings.ws_op_burst,
                presence=True,
                presence_rate=settings.ws_presence_rate,
                presence_burst=2 * settings.ws_presence_rate,
            ),
            hello_timeout=settings.ws_hello_timeout_ms / 1000,
            send_queue=settings.ws_send_queue,
        )


class _Stop(Exception):
    """Ends a connection's task group: not an error."""


class Connection:
    def __init__(self, ws: WebSocket, svc: Services, doc_id: str, config: WsConfig) -> None:
        self.ws = ws
        self.svc = svc
        self.fanout: Fanout = svc.fanout
        self.doc_id = doc_id
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.session = Session(secrets.token_urlsafe(12), config.session, now=self.loop.time())
        self.role: Role = "viewer"
        self.frames: deque[str] = deque()
        self.close_with: Close | None = None
        extensions = ws.scope.get("extensions") or {}
        self.direct: DirectSocket | None = extensions.get(EXTENSION)
        self._group: asyncio.TaskGroup | None = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None  # the writer's, once it runs
        self._waiting: deque[Submit] = deque()  # ops behind the one being decided
        self._deciding = False
        self._timer: asyncio.TimerHandle | None = None
        self._joined = False
        self._member = False
        self._counted = ""  # the user counted in the quotas, once the token checked out
        self.log = log.bind(doc=doc_id, session=self.session.id)

    @property
    def queued(self) -> int:
        return len(self.frames)

    def shutdown(self, reason: str) -> None:
        """The server is going away: answer the ops in flight, then close 1001."""
        self.perform(self.session.drain(reason))

    async def run(self) -> None:
        if self._timer is None:  # else a close came first: its deadline runs
            self._timer = self.loop.call_later(self.config.hello_timeout, self._hello_expired)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._reader = group.create_task(self._read())
                if self.close_with is not None:  # closed before the group existed
                    self._start_writer()
        except* _Stop:
            pass
        except* Exception as faults:
            # Our fault, not theirs (STYLE.md habit 5): logged here; the client gets
            # 1011 and no internals, and reconnects with `since`.
            self.log.error("websocket fault", exc_info=faults.exceptions[0])
            metrics.ws_closes_total.labels(code=str(int(CloseCode.INTERNAL))).inc()
            with contextlib.suppress(Exception):  # already gone
                await self.ws.close(CloseCode.INTERNAL, "internal error")
        finally:
            self._group = None
            if self._timer is not None:
                self._timer.cancel()
            self.perform(self.session.closed())
            if self._counted:
                self.svc.quotas.disconnect(self._counted)
            if self._member:
                self.svc.members.leave(self.doc_id, self.session.id)
            if self._joined:
                self.fanout.leave(self.doc_id, self._deliver)
                self.svc.presence.leave(self.doc_id, self.session.id)
            self.log.info(
                "websocket closed",
                user=self.session.user or None,
                code=int(self.close_with.code) if self.close_with else None,
                v=self.session.v,
            )

    # -- actions -----------------------------------------------------------------------

    def perform(self, actions: list[Action]) -> None:
        """Do what the session asked, synchronously (no await: order is kept)."""
        for action in actions:
            if isinstance(action, Send):
                self._enqueue(action.frame)
            elif isinstance(action, Submit):
                if self.svc.quotas.take_op(self.session.user, self.loop.time()):
                    self.fanout.authoring(self.doc_id, self._deliver, 1)
                    if self._deciding:
                        self._waiting.append(action)  # bounded by the in-flight limit
                    else:
                        self._submit(action)
                else:
                    rate = self.svc.quotas.op_rate
                    reason = (
                        f"at most {rate:g} ops a second for one user over all its "
                        "connections; retry with the same id"
                    )
                    self.log.info("op rejected", op_id=action.id, code=str(ErrorCode.RATE_LIMITED))
                    self.perform(self.session.failed(action.id, ErrorCode.RATE_LIMITED, reason))
            elif isinstance(action, AwaitEvent):
                self.fanout.expect(self.doc_id, action.v)
            elif isinstance(action, Close):
                self._close(action)
            elif isinstance(action, PublishPresence):
                if self._joined:
                    s = self.session
                    self.svc.presence.update(self.doc_id, s.id, s.user, s.name, action.state)
            else:
                assert isinstance(action, Authenticate), action
                raise AssertionError("Authenticate is handled by the reader")

    def _enqueue(self, frame: str) -> None:
        if self.close_with is not None:
            return
        if not self.frames and self.direct is not None and self.direct.write_frame(frame_of(frame)):
            return  # nothing before it and the socket takes it: sent, in order
        # The socket's buffer is over its high-water mark (or it is closing): the frame
        # waits. What the transport holds is bounded by that mark, so the queue's limit
        # bounds the whole backlog of a slow reader.
        if len(self.frames) >= self.config.send_queue:
            self.perform(
                self.session.close(
                    CloseCode.TOO_SLOW, "you fell too far behind; reconnect with since"
                )
            )
            return
        self.frames.append(frame)
        self._start_writer()

    def _start_writer(self) -> None:
        if self._wake is not None:
            self._wake.set()
        elif self._group is not None:
            self._wake = asyncio.Event()
            self._writer = self._spawn(self._write(self._wake))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """A task in the connection's group; None when the group is gone or ending (the
        connection is going away: nothing more is sent or submitted)."""
        if self._group is not None:
            with contextlib.suppress(RuntimeError):  # the group is shutting down
                return self._group.create_task(coro)
        coro.close()
        return None

    def _close(self, close: Close) -> None:
        if self.close_with is not None:
            return
        self.close_with = close
        if close.code == CloseCode.TOO_SLOW:
            self.frames.clear()  # what it could not take so far, it will not take now
        metrics.ws_closes_total.labels(code=str(int(close.code))).inc()
        self._start_writer()
        # The writer sends the close once the frames before it are out. A client that
        # reads nothing gets this long, then the connection is dropped.
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self.config.close_timeout, self._drop)

    def _hello_expired(self) -> None:
        self._timer = None
        self.perform(self.session.hello_timeout())

    def _drop(self) -> None:
        """The close took too long: end the connection's tasks (the group then ends)."""
        self._timer = None
        for task in (self._reader, self._writer):
            if task is not None:
                task.cancel()

    def _relay(self, frame: str) -> None:
        """The presence hub's sink: a peer's presence frame."""
        self.perform(self.session.relay(frame))

    def _role_changed(self, role: str | None) -> None:
        """The members hub's sink: this user's role on the document changed."""
        if role is None:
            reason = "you were removed from this document"
            self.perform(self.session.close(CloseCode.FORBIDDEN, reason))
            return
        self.role = cast(Role, role)  # the next op submitted uses it
        self.session.role = role
        self.log.info("websocket role changed", role=role)

    def _deliver(self, events: Any, frame: str) -> None:
        """The fan-out's sink: a run of consecutive events, its frame encoded once."""
        actions = self.session.deliver(events, frame)
        if len(actions) == 1 and type(actions[0]) is Send:  # the usual case, once a socket
            self._enqueue(actions[0].frame)
        else:
            self.perform(actions)

    # -- tasks -------------------------------------------------------------------------

    async def _read(self) -> None:
        direct = self.direct
        reads_directly = False
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                raise _Stop
            text = message.get("text")
            frame = text if text is not None else message.get("bytes") or b""
            for action in self.session.receive(frame, now=self.loop.time()):
                if not isinstance(action, Authenticate):
                    self.perform([action])
                    continue
                try:
                    await self._hello(action)
                except AppError as exc:  # the store is unavailable: not a bug of ours
                    self.log.warning("websocket hello failed", code=exc.code, error=exc.message)
                    reason = "the server cannot serve this document now; reconnect with since"
                    self.perform(self.session.close(CloseCode.INTERNAL, reason))
            if direct is not None and self._joined and not reads_directly:
                # Joined: the next messages come straight from the parser (_received);
                # this task waits for the disconnect alone.
                reads_directly = direct.read_directly(self._received)

    def _received(self, frame: str | bytes) -> None:
        """A message from the socket, as it is parsed (app/gateway/direct.py): after the
        hello, nothing the session asks for needs an await."""
        try:
            self.perform(self.session.receive(frame, now=self.loop.time()))
        except Exception:
            # Our fault: as in ``run``, logged, and the client gets 1011.
            self.log.error("websocket fault", exc_info=True)
            self.perform(self.session.close(CloseCode.INTERNAL, "internal error"))

    async def _write(self, wake: asyncio.Event) -> None:
        frames = self.frames
        direct = self.direct
        try:
            while True:
                while not frames and self.close_with is None:
                    wake.clear()
                    await wake.wait()
                if not frames:
                    assert self.close_with is not None
                    await self.ws.close(self.close_with.code, self.close_with.reason)
                    raise _Stop
                if direct is None:
                    await self.ws.send_text(frames.popleft())
                    continue
                # The frame stays first in the queue until the socket took it, so every
                # frame decided meanwhile queues behind it (order kept).
                if direct.write_frame(frame_of(frames[0])):
                    frames.popleft()
                elif direct.closed:
                    raise _Stop  # the peer is gone; the reader hears it too
                else:
                    await direct.wait_writable()
        except WebSocketDisconnect:
            raise _Stop from None

    def _submit(self, op: Submit) -> None:
        """Hand ``op`` to the command handler (a task answers it), and the ops behind it
        one by one, each once the one before is decided (queued for its commit, or
        answered): a client's ops are decided in its own order, and those that arrive
        during a commit chain into the next transaction instead of waiting one commit
        each. Their answers can then come in a burst: at most the session's in-flight
        limit (``WS_OP_BURST``, 100), well under the send queue's 1024 frames by
        default. No task waits in between: an op goes to the handler in the loop turn
        after the one it arrived in."""
        self._deciding = True
        if self._spawn(self._answer(op)) is None:
            self._waiting.clear()  # the connection is going away: nothing more is sent

    def _decided(self) -> None:
        self._deciding = False
        if self._waiting:
            self._submit(self._waiting.popleft())

    async def _answer(self, op: Submit) -> None:
        """One op through the handler; its ``ack`` or ``reject`` back."""
        decided = False

        def done() -> None:
            nonlocal decided
            if not decided:
                decided = True
                self._decided()

        try:
            ack = await self.svc.handler.submit(
                self.doc_id, self.session.user, self.role, op.id, op.op, decided=done
            )
        except AppError as exc:
            self.log.info("op rejected", op_id=op.id, code=exc.code)
            actions = self.session.failed(op.id, exc.code, exc.message)
        except Exception:
            self.log.exception("op failed", op_id=op.id)
            actions = self.session.failed(op.id, ErrorCode.INTERNAL, _INTERNAL_MESSAGE)
        else:
            self.log.info("op replayed" if ack.duplicate else "op accepted", op_id=op.id, v=ack.v)
            actions = self.session.acked(op.id, ack.v)
        finally:
            done()
            self.fanout.authoring(self.doc_id, self._deliver, -1)
        self.perform(actions)

    # -- hello -------------------------------------------------------------------------

    async def _hello(self, hello: Authenticate) -> None:
        store = self.svc.store
        try:
            identity = verify_token(self.svc.settings.secret, hello.token, now=time.time())
        except Unauthenticated as exc:
            self.perform(self.session.close(CloseCode.UNAUTHENTICATED, exc.message))
            return
        quotas = self.svc.quotas
        if not quotas.connect(identity.user, self.loop.time()):
            limit = quotas.max_connections
            reason = f"too many connections: at most {limit} per user; close one first"
            self.perform(self.session.close(CloseCode.RATE_LIMITED, reason))
            return
        self._counted = identity.user
        # An id no document can have (a NUL, say, which PostgreSQL text cannot hold).
        row = await store.get_document(self.doc_id) if valid_id(self.doc_id) else None
        if row is None:
            self.perform(self.session.close(CloseCode.NOT_FOUND, "no such document"))
            return
        # Follow membership changes BEFORE reading the role: a change committed after
        # this read reaches this session (app/gateway/members.py).
        self._member = True
        await self.svc.members.join(self.doc_id, self.session.id, identity.user, self._role_changed)
        role = await store.get_role(self.doc_id, identity.user)
        if role is None:
            self.perform(
                self.session.close(CloseCode.FORBIDDEN, "you are not a member of this document")
            )
            return
        self.role = role
        self.log = self.log.bind(user=identity.user)
        # PROTOCOL.md 4: the welcome's v is at least the version of every event committed
        # before the hello arrived; row.v was read after it arrived.
        head = row.v
        since = hello.since
        if since is not None and since <= head and head - since <= self.config.resume_max:
            events = [wire(e) for e in await store.read_stream(self.doc_id, after_v=since)]
            v = events[-1].v if events else since
            self.perform(
                self.session.admitted(
                    doc=self.doc_id,
                    user=identity.user,
                    name=identity.name,
                    role=self.role,
                    v=v,
                    events=events,
                )
            )
        else:
            v, state = await self._state_at_least(head)
            self.perform(
                self.session.admitted(
                    doc=self.doc_id,
                    user=identity.user,
                    name=identity.name,
                    role=self.role,
                    v=v,
                    state=state,
                )
            )
        await self._join()

    async def _state_at_least(self, head: int) -> tuple[int, bytes]:
        """A committed state at ``head`` or later, as bytes. The read side's when its
        view has reached ``head``: stored bytes, no fold, no encode, and no wait on the
        write model (its load or its lock), so a join never waits on the write side.
        Otherwise the write model's, caught up from the store."""
        row = await self.svc.views.state_at_least(self.doc_id, head)
        if row is not None:
            return row.v, row.state
        model = await self._model_at_least(head)
        return model.v, orjson.dumps(state_to_json(model.doc))

    async def _model_at_least(self, head: int) -> WriteModel:
        """A committed model at ``head`` or later: this process's, caught up if another
        process committed since (never one with ops still in flight)."""
        model = await self.svc.handler.committed_model(self.doc_id)
        if model.v < head:
            for e in await self.svc.store.read_stream(self.doc_id, after_v=model.v):
                effect = orjson.loads(e.effect) if e.effect else {}
                model = evolve(model, e.v, e.actor, orjson.loads(e.op), effect)
        return model

    async def _join(self) -> None:
        """Join the document's channel at the welcome's version, with no gap: events the
        channel delivered since then come from its ring, or else from PostgreSQL."""
        while self.session.state is State.OPEN:
            if self.fanout.join(self.doc_id, self._deliver, self.session.v):
                self._joined = True
                # PROTOCOL.md 4: the presence of the peers follows the welcome.
                for frame in self.svc.presence.join(self.doc_id, self.session.id, self._relay):
                    self.perform(self.session.relay(frame))
                metrics.ws_joins_total.inc()
                self.log.info("websocket joined", role=self.role, v=self.session.v)
                return
            stored = await self.svc.store.read_stream(
                self.doc_id, after_v=self.session.v, limit=_FILL_PAGE
            )
            if not stored:
                # The channel is ahead of the store itself: never expected (its sources
                # are commits of this store); refuse to guess.
                self.log.error("fanout ahead of the store", v=self.session.v)
                self.perform(self.session.close(CloseCode.INTERNAL, "internal error"))
                return
            events: list[WireEvent] = [wire(e) for e in stored]
            self.perform(self.session.deliver(events))


def _origin_allowed(ws: WebSocket, allowed: tuple[str, ...]) -> bool:
    """``WS_ALLOWED_ORIGINS`` (empty: any). A request without ``Origin`` is not a
    browser's (browsers always send it on a websocket handshake): allowed."""
    origin = ws.headers.get("origin")
    if not allowed or origin is None:
        return True
    return origin.strip().lower().rstrip("/") in allowed


async def endpoint(ws: WebSocket) -> None:
    svc = services(ws)
    await ws.accept()
    if not _origin_allowed(ws, svc.settings.ws_allowed_origins):
        # Refused before hello, with a close code the page can see (a refused handshake
        # would only be an opaque 403 to the browser's script).
        log.info("websocket origin refused", origin=ws.headers.get("origin"))
        metrics.ws_closes_total.labels(code=str(int(CloseCode.FORBIDDEN))).inc()
        await ws.close(CloseCode.FORBIDDEN, "this origin may not open a websocket here")
        return
    config = WsConfig.from_settings(svc.settings)
    connection = Connection(ws, svc, str(ws.path_params["doc_id"]), config)
    svc.fanout.attach(connection)
    metrics.ws_connections.inc()
    try:
        await connection.run()
    finally:
        svc.fanout.detach(connection)
        metrics.ws_connections.dec()


routes = [WebSocketRoute("/ws/documents/{doc_id}", endpoint)]
