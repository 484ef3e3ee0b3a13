"""One op's id traces it through the logs of real processes (docs/operations.md, "Logs
and metrics"): the gateway's outcome line, the group-commit line, the relay's publish
line and the gateway's delivery line, all JSON; at info only the outcome line is left."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from tests.support.appprocess import AppProcess
from tests.support.appstack import AppStack, records, scrape, wait_for


async def make_doc(stack: AppStack, owner: str, **members: str) -> str:
    doc_id = "d" + uuid.uuid4().hex[:12]
    async with stack.http(owner) as http:
        r = await http.post("/api/documents", json={"id": doc_id, "title": "Poster"})
        assert r.status_code == 201, r.text
        for user, role in members.items():
            r = await http.put(f"/api/documents/{doc_id}/members/{user}", json={"role": role})
            assert r.status_code == 200, r.text
    return doc_id


async def joined(stack: AppStack, doc_id: str, user: str) -> tuple[ClientConnection, str]:
    """A websocket welcomed on ``doc_id`` as ``user``, and its session id."""
    ws = await connect(stack.ws_url(doc_id), open_timeout=10, close_timeout=2)
    await ws.send(orjson.dumps({"type": "hello", "token": stack.token(user)}).decode())
    welcome = orjson.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws, str(welcome["session"])


async def answer(ws: ClientConnection, op_id: str) -> dict[str, Any]:
    """The ack or reject of ``op_id`` (other frames skipped)."""
    while True:
        message: dict[str, Any] = orjson.loads(await ws.recv())
        if message["type"] in {"ack", "reject"} and message.get("id") == op_id:
            return message


async def event_of(ws: ClientConnection, op_id: str) -> dict[str, Any]:
    """The event of ``op_id`` as this socket receives it (alone or in an ``events``)."""
    while True:
        message: dict[str, Any] = orjson.loads(await ws.recv())
        found = [message] if message["type"] == "event" else message.get("events", [])
        for event in found:
            if event["id"] == op_id:
                return dict(event)


def lines(process: AppProcess, event: str) -> list[dict[str, Any]]:
    return [r for r in records(process) if r.get("event") == event]


def rename(title: str) -> dict[str, Any]:
    return {"kind": "doc.rename", "title": title}


async def test_an_op_id_traces_the_op_through_command_commit_publish_and_delivery(
    pg_clean: str, redis_url: str, redis_prefix: str
) -> None:
    async with AppStack(pg_clean, redis_url, redis_prefix, LOG_LEVEL="debug") as stack:
        gateway = await stack.start("serve")
        relay = await stack.start("relay")
        doc = await make_doc(stack, "alice", bob="viewer")
        viewer, _ = await joined(stack, doc, "bob")
        editor, session = await joined(stack, doc, "alice")
        op_id = "trace-" + uuid.uuid4().hex[:8]
        try:
            await editor.send(
                orjson.dumps({"type": "op", "id": op_id, "op": rename("Traced")}).decode()
            )
            ack = await answer(editor, op_id)
            assert ack["type"] == "ack", ack
            v = ack["v"]
            assert (await event_of(viewer, op_id))["v"] == v
            # The same id again: replayed; an op that cannot apply: rejected.
            await editor.send(
                orjson.dumps({"type": "op", "id": op_id, "op": rename("Traced")}).decode()
            )
            assert (await answer(editor, op_id))["v"] == v
            bad = op_id + "-bad"
            missing = {"kind": "element.remove", "element": "nothing"}
            await editor.send(orjson.dumps({"type": "op", "id": bad, "op": missing}).decode())
            assert (await answer(editor, bad))["type"] == "reject"
        finally:
            await viewer.close()
            await editor.close()

        def traced() -> bool:
            return bool(
                [r for r in lines(relay, "relay published") if _carries(r["events"], op_id)]
                and [r for r in lines(gateway, "fanout delivered") if r["op_id"] == op_id]
            )

        await wait_for(traced, 30, f"the op's publish and delivery lines:\n{relay.output}")

    who = {"doc": doc, "user": "alice", "session": session}
    # command: one outcome line per op, with doc, user, session and the op id bound
    [accepted] = [r for r in lines(gateway, "op accepted") if r["op_id"] == op_id]
    assert accepted | who == accepted and accepted["v"] == v, accepted
    assert accepted["level"] == "info" and accepted["logger"] == "app.gateway.ws"
    [replayed] = [r for r in lines(gateway, "op replayed") if r["op_id"] == op_id]
    assert replayed | who == replayed and replayed["v"] == v, replayed
    [rejected] = [r for r in lines(gateway, "op rejected") if r["op_id"] == bad]
    assert rejected | who == rejected and rejected["code"] == "conflict", rejected
    # commit: the group-commit line lists the op with its document, user and version
    [commit] = [r for r in lines(gateway, "group commit") if _carries(r["ops"], op_id)]
    [mine] = [o for o in commit["ops"] if o["op_id"] == op_id]
    assert mine["doc"] == doc and mine["user"] == "alice" and mine["v"] == v, commit
    assert mine["status"] == "ok" and mine["position"] > 0 and commit["level"] == "debug"
    # publish: the relay's line carries the event's position, document and op id
    [published] = [r for r in lines(relay, "relay published") if _carries(r["events"], op_id)]
    [entry] = [e for e in published["events"] if e["op_id"] == op_id]
    assert entry == {
        "position": mine["position"],
        "doc": doc,
        "user": "alice",
        "v": v,
        "op_id": op_id,
    }
    assert published["first"] <= mine["position"] <= published["last"]
    # delivery: ONE line for the event in this gateway process, whatever its sockets
    [delivered] = [r for r in lines(gateway, "fanout delivered") if r["op_id"] == op_id]
    assert delivered["doc"] == doc and delivered["user"] == "alice" and delivered["v"] == v
    assert delivered["sockets"] == 2, delivered  # the viewer's and the editor's
    assert delivered["level"] == "debug"
    # in the committing gateway: the commit and the delivery, then the ack. The commit's
    # line and the delivery's may come in either order: the event can also reach the
    # gateway through the relay and Redis, and when the commit's answer and that read
    # are ready in the same turn of a busy loop, the read may be handled first.
    order = records(gateway)
    assert order.index(commit) < order.index(accepted)
    assert order.index(delivered) < order.index(accepted)
    # connections: one line when a socket joins, one when it closes
    assert [r["session"] for r in lines(gateway, "websocket joined")].count(session) == 1
    assert [r["session"] for r in lines(gateway, "websocket closed")].count(session) == 1


async def test_at_info_an_op_leaves_its_outcome_line_and_no_per_event_line(
    pg_clean: str, redis_url: str, redis_prefix: str
) -> None:
    async with AppStack(pg_clean, redis_url, redis_prefix, LOG_LEVEL="info") as stack:
        gateway = await stack.start("serve")
        relay = await stack.start("relay")
        doc = await make_doc(stack, "alice", bob="viewer")
        viewer, _ = await joined(stack, doc, "bob")
        editor, session = await joined(stack, doc, "alice")
        try:
            for n in range(5):
                op = {"type": "op", "id": f"quiet-{n}", "op": rename(f"T{n}")}
                await editor.send(orjson.dumps(op).decode())
                assert (await answer(editor, f"quiet-{n}"))["type"] == "ack"
                await event_of(viewer, f"quiet-{n}")
        finally:
            await viewer.close()
            await editor.close()
        # The relay published them (its position metric reached the head) before we look.
        await wait_for(
            lambda: _published(stack, relay), 30, f"the relay to publish:\n{relay.output}"
        )
        await wait_for(
            lambda: len(lines(gateway, "websocket closed")) == 2, 30, "both closes logged"
        )

    accepted = [r for r in lines(gateway, "op accepted") if r["session"] == session]
    assert sorted(r["op_id"] for r in accepted) == [f"quiet-{n}" for n in range(5)]
    for process in (gateway, relay):
        for record in records(process):
            assert record["level"] != "debug", record
            assert record["event"] not in {
                "group commit",
                "relay published",
                "fanout delivered",
            }, record
    # Per connection and per op, nothing else at info from the websocket path: the
    # lines about these sockets are their joins, closes and the five outcomes.
    about = [r for r in records(gateway) if r.get("doc") == doc]
    assert sorted({r["event"] for r in about}) == [
        "op accepted",
        "websocket closed",
        "websocket joined",
    ], about
    assert len(about) == 2 + 2 + 5, about


def _carries(items: list[dict[str, Any]], op_id: str) -> bool:
    return any(item.get("op_id") == op_id for item in items)


async def _published(stack: AppStack, relay: AppProcess) -> bool:
    samples = await scrape(stack.metrics_url(relay))
    # The document's creation and the five ops.
    return samples["atelier_relay_published"][("atelier_relay_published_total", ())] >= 6
