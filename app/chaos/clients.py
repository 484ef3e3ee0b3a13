"""The load of a chaos run: editors, viewers and reconnecting viewers over websockets.

Each ``WsClient`` follows one document (PROTOCOL.md section 4) and keeps on
reconnecting, to any gateway, with ``since`` = the last version it applied. It checks
what it receives (every version once, in order, no gap) and folds the elements of the
document from the welcome's state and the events (``app.loadtest.client.fold``), to be
compared with the server's state at the end (I4).

An editor sends ops (moves of its own rectangle, adds, removes, batches, undo) and
keeps every op whose outcome it does not know: on a lost connection, and on
``unavailable``, ``internal`` or ``rate_limited``, it sends the op again with the same
id, as PROTOCOL.md says clients do. Every ``ack`` goes into the ``Ledger``: (doc, user,
op id) -> v, where a second ack of one id with another v is a finding.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from app.loadtest.client import elements_of, fold

__all__ = ["Ledger", "Tally", "WsClient"]

RETRY_CODES = frozenset({"unavailable", "internal", "rate_limited"})
MAX_IN_FLIGHT = 8  # an editor waits for answers beyond this many ops without one


@dataclass(slots=True)
class Tally:
    """The run's counters over every client."""

    sent: int = 0  # ops made (each counted once, whatever its re-sends)
    acked: int = 0  # ops acknowledged (first ack of each id)
    reacked: int = 0  # further acks of an id already acknowledged (answers to re-sends)
    unavailable: int = 0  # `reject unavailable` answers
    resent: int = 0  # ops sent again with the same id
    in_doubt: int = 0  # ops sent, unanswered when their connection was lost
    reconnects: int = 0  # connections opened again after one was lost or dropped
    drops: int = 0  # connections a reconnecting client dropped on purpose
    rejects: Counter[str] = field(default_factory=Counter)  # final rejects by code
    errors: Counter[str] = field(default_factory=Counter)  # `error` messages, refused hellos


@dataclass(slots=True)
class Ledger:
    """Every acknowledged op: (doc, user, op id) -> v."""

    acked: dict[tuple[str, str, str], int] = field(default_factory=dict)
    mismatched: list[tuple[str, str, str, int, int]] = field(default_factory=list)

    def ack(self, doc: str, user: str, op_id: str, v: int) -> bool:
        """Record one ack; True when it is the first for this id."""
        key = (doc, user, op_id)
        first = self.acked.get(key)
        if first is None:
            self.acked[key] = v
            return True
        if first != v:
            self.mismatched.append((doc, user, op_id, first, v))
        return False


class WsClient:
    """One client of one document: see the module docstring."""

    def __init__(
        self,
        name: str,
        doc: str,
        user: str,
        token: str,
        gateways: list[str],
        rng: random.Random,
        tally: Tally,
        ledger: Ledger,
        *,
        rate: float = 0.0,
        element: str = "",
        drop_every: float = 0.0,
    ) -> None:
        self.name = name
        self.doc = doc
        self.user = user
        self.token = token
        self.gateways = gateways
        self.rng = rng
        self.tally = tally
        self.ledger = ledger
        self.rate = rate
        self.element = element
        self.drop_every = drop_every
        self.ws: ClientConnection | None = None
        self.ready = asyncio.Event()  # welcomed on the current connection
        self.last_v = -1
        self.elements: dict[str, dict[str, Any]] = {}
        self.foldable = True
        self.gaps = 0  # versions skipped
        self.dups = 0  # versions received again or out of order
        self.welcome_mismatch = 0  # a resume's welcome whose v is not its last event's
        self.pending: dict[str, dict[str, Any]] = {}  # op id -> op, no final answer yet
        self.sent_ids: set[str] = set()
        self.added: list[str] = []  # elements this editor added (and saw acked)
        self.connections = 0
        self.stopping = False  # no new ops
        self._closed = False
        self._n = 0

    # -- connection ----------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until ``close``; reconnect with a short jittered backoff."""
        backoff = 0.1
        while not self._closed:
            url = f"{self.rng.choice(self.gateways)}/ws/documents/{self.doc}"
            try:
                async with asyncio.timeout(15):
                    ws = await connect(url, max_size=None, open_timeout=10, close_timeout=2)
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed):
                await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 2.0)
                continue
            self.connections += 1
            if self.connections > 1:
                self.tally.reconnects += 1
            try:
                await self._session(ws)
                backoff = 0.1
            except (OSError, ConnectionClosed, TimeoutError):
                pass
            finally:
                self.ready.clear()
                self.ws = None
                self.tally.in_doubt += sum(1 for i in self.pending if i in self.sent_ids)
                with contextlib.suppress(Exception):
                    await ws.close()
                ws.transport.abort()
            if not self._closed:
                await asyncio.sleep(backoff * self.rng.uniform(0.5, 1.5))

    async def _session(self, ws: ClientConnection) -> None:
        hello: dict[str, Any] = {"type": "hello", "token": self.token}
        if self.last_v >= 0:
            hello["since"] = self.last_v
        await ws.send(orjson.dumps(hello).decode())
        async with asyncio.timeout(15):
            while True:
                msg = orjson.loads(await ws.recv())
                if msg.get("type") == "welcome":
                    self._welcome(msg)
                    break
                if msg.get("type") == "error":
                    self.tally.errors[f"hello:{msg.get('code')}"] += 1
        self.ws = ws
        self.ready.set()
        for op_id, op in list(self.pending.items()):  # re-send whatever has no answer
            self._send(op_id, op)
        async for raw in ws:
            self._message(orjson.loads(raw))

    async def drop_loop(self) -> None:
        """A reconnecting client: every ``drop_every`` s (jittered) break the connection."""
        while not self._closed:
            await asyncio.sleep(self.drop_every * self.rng.uniform(0.5, 1.5))
            ws = self.ws
            if ws is not None and not self._closed:
                self.tally.drops += 1
                ws.transport.abort()

    async def close(self) -> None:
        self._closed = True
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await ws.close()
            ws.transport.abort()

    # -- incoming ------------------------------------------------------------------------

    def _welcome(self, msg: dict[str, Any]) -> None:
        v = int(msg["v"])
        state = msg.get("state")
        if isinstance(state, dict):
            if v < self.last_v:
                self.dups += 1  # the server went back in time
            self.elements = elements_of(state)
            self.foldable = True
            self.last_v = v
            return
        for event in msg.get("events") or []:
            self._take(event)
        if v != self.last_v:
            self.welcome_mismatch += 1

    def _take(self, event: dict[str, Any]) -> None:
        v = int(event["v"])
        if self.last_v >= 0 and v != self.last_v + 1:
            if v <= self.last_v:
                self.dups += 1
                return
            self.gaps += v - self.last_v - 1
        self.last_v = v
        if self.foldable:
            self.foldable = fold(self.elements, event["op"])

    def _message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "event":
            self._take(msg)
        elif kind == "events":
            for event in msg["events"]:
                self._take(event)
        elif kind == "ack":
            self._ack(str(msg["id"]), int(msg["v"]))
        elif kind == "reject":
            self._reject(str(msg.get("id")), str(msg.get("code")))
        elif kind == "error":
            self.tally.errors[str(msg.get("code"))] += 1

    def _ack(self, op_id: str, v: int) -> None:
        first = self.ledger.ack(self.doc, self.user, op_id, v)
        op = self.pending.pop(op_id, None)
        if first:
            self.tally.acked += 1
            if op is not None and op.get("kind") == "element.add":
                self.added.append(op["element"])
        else:
            self.tally.reacked += 1

    def _reject(self, op_id: str, code: str) -> None:
        if op_id not in self.pending:
            return
        if code in RETRY_CODES:
            if code == "unavailable":
                self.tally.unavailable += 1
            asyncio.get_running_loop().call_later(
                self.rng.uniform(0.2, 0.6), self._retry, op_id, self.ws
            )
            return
        self.pending.pop(op_id)
        self.tally.rejects[code] += 1

    def _retry(self, op_id: str, ws: ClientConnection | None) -> None:
        op = self.pending.get(op_id)
        if op is not None and ws is not None and ws is self.ws:  # else the resume re-sends
            self._send(op_id, op)

    # -- outgoing ------------------------------------------------------------------------

    def _send(self, op_id: str, op: dict[str, Any]) -> None:
        ws = self.ws
        if ws is None or not self.ready.is_set():
            return  # sent again on the next welcome
        if op_id in self.sent_ids:
            self.tally.resent += 1
        self.sent_ids.add(op_id)
        frame = orjson.dumps({"type": "op", "id": op_id, "op": op}).decode()
        task = asyncio.ensure_future(ws.send(frame))
        task.add_done_callback(_quiet)

    def next_op(self) -> dict[str, Any]:
        """Mostly moves of the editor's rectangle; adds, removes, batches and undo."""
        self._n += 1
        n, roll = self._n, self.rng.random()
        move = {
            "kind": "element.update",
            "element": self.element,
            "set": {"x": self.rng.randrange(800) + 0.5, "y": self.rng.randrange(600)},
        }
        add = {
            "kind": "element.add",
            "element": f"{self.name}-{n}",
            "layer": "L",
            "shape": "rect",
            "props": {"x": n % 800, "y": n % 600, "w": 8, "h": 8, "fill": "#336699"},
        }
        if roll < 0.55:
            return move
        if roll < 0.70:
            return add
        if roll < 0.80 and self.added:
            return {"kind": "element.remove", "element": self.added.pop(0)}
        if roll < 0.90:
            return {"kind": "batch", "ops": [add, move]}
        return {"kind": "undo"}

    async def edit(self) -> None:
        """Make ops at ``rate`` a second (jittered) until ``stopping``."""
        period = 1 / self.rate
        while not self.stopping and not self._closed:
            await asyncio.sleep(period * self.rng.uniform(0.5, 1.5))
            if self.stopping or len(self.pending) >= MAX_IN_FLIGHT:
                continue
            op_id = f"{self.name}-op{self._n + 1}"
            op = self.next_op()
            self.pending[op_id] = op
            self.tally.sent += 1
            self._send(op_id, op)


def _quiet(task: asyncio.Future[None]) -> None:
    """A send on a connection that just broke: the op stays pending and is re-sent."""
    if not task.cancelled():
        task.exception()
