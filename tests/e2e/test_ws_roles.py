"""Roles, live (PROTOCOL.md section 4): a member removed while connected is cut off at
once (4403); a role change applies to the next op. The change is made over HTTP on
one gateway; the sessions may be on another (Redis pub/sub, app/gateway/members.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.e2e.conftest import Gateway
from tests.e2e.ws_client import close_code, make_doc, open_ws, rename


async def set_role(
    gateway: Gateway, doc: str, user: str, role: str | None, *, across: bool = False
) -> None:
    async with gateway.client("alice") as http:
        path = f"/api/documents/{doc}/members/{user}"
        if role is None:
            r = await http.delete(path)
            assert r.status_code == 204, r.text
        else:
            r = await http.put(path, json={"role": role})
            assert r.status_code == 200, r.text
    if across:
        # On the gateway that made the change, its sessions have it before the response;
        # another process gets it one pub/sub hop later (milliseconds), which a client's
        # next op could otherwise overtake.
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("across", [False, True], ids=["same-gateway", "other-gateway"])
async def test_a_removed_member_is_cut_off_at_once_4403(make_gateway: Any, across: bool) -> None:
    here = await make_gateway()
    there = await make_gateway() if across else here
    doc = await make_doc(here, bob="editor", carol="viewer")
    bob, carol = await open_ws(there, doc), await open_ws(there, doc)
    await bob.hello(there.token("bob"))
    await carol.hello(there.token("carol"))
    started = time.monotonic()
    await set_role(here, doc, "bob", None)
    assert await close_code(bob, 2.0) == 4403
    assert time.monotonic() - started < 1.5
    # Carol, still a member, is not touched.
    await carol.send({"type": "ping", "t": 1})
    assert (await carol.recv())["type"] == "pong"
    # And bob cannot come back.
    again = await open_ws(here, doc)
    await again.send({"type": "hello", "token": here.token("bob")})
    assert await close_code(again) == 4403


@pytest.mark.parametrize("across", [False, True], ids=["same-gateway", "other-gateway"])
async def test_a_demoted_editors_next_op_is_rejected_forbidden(
    make_gateway: Any, across: bool
) -> None:
    here = await make_gateway()
    there = await make_gateway() if across else here
    doc = await make_doc(here, bob="editor")
    bob = await open_ws(there, doc)
    await bob.hello(there.token("bob"))
    await bob.op("b1", rename("before"))
    assert (await bob.until("ack"))[-1]["id"] == "b1"
    await set_role(here, doc, "bob", "viewer", across=across)
    await bob.op("b2", rename("after"))
    reject = (await bob.until("reject"))[-1]
    assert (reject["id"], reject["code"]) == ("b2", "forbidden")


@pytest.mark.parametrize("across", [False, True], ids=["same-gateway", "other-gateway"])
async def test_a_promoted_viewers_next_op_is_acked(make_gateway: Any, across: bool) -> None:
    here = await make_gateway()
    there = await make_gateway() if across else here
    doc = await make_doc(here, bob="viewer")
    bob = await open_ws(there, doc)
    await bob.hello(there.token("bob"))
    await bob.op("b1", rename("no"))
    assert (await bob.until("reject"))[-1]["code"] == "forbidden"
    await set_role(here, doc, "bob", "editor", across=across)
    await bob.op("b2", rename("yes"))
    ack = (await bob.until("ack"))[-1]
    assert ack["id"] == "b2"
    assert ack["v"] == 2
