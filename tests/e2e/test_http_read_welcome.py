"""The websocket ``welcome`` state comes from the read side when its view has reached
the document's version (no wait on the write model), else from the write model: the
view's row is marked here so the test can tell which one answered."""

from __future__ import annotations

import asyncpg
import orjson
from websockets.asyncio.client import connect

from app.views.writer import catch_up
from tests.e2e.conftest import Gateway
from tests.e2e.test_http_read import create, post_ops, rect
from tests.e2e.ws_client import Client, ws_url


async def welcome_of(gateway: Gateway, doc_id: str) -> dict[str, object]:
    async with connect(ws_url(gateway, doc_id)) as ws:
        return await Client(ws).hello(gateway.token("alice"))


async def test_welcome_state_is_the_views_when_it_is_current(
    gateway: Gateway, pg_pool: asyncpg.Pool
) -> None:
    await create(gateway)
    async with gateway.client("alice") as c:
        head = await post_ops(c, "d1", [rect("e1"), rect("e2")])
    await catch_up(pg_pool)
    stored = orjson.loads(
        await pg_pool.fetchval("SELECT state FROM read.doc_state WHERE doc_id = 'd1'")
    )
    marked = {**stored, "title": "from the view"}
    await pg_pool.execute(
        "UPDATE read.doc_state SET state = $1 WHERE doc_id = 'd1'", orjson.dumps(marked)
    )
    welcome = await welcome_of(gateway, "d1")
    assert (welcome["v"], welcome["state"]) == (head, marked)
    # The view behind the write side: the write model answers, at the newer version.
    async with gateway.client("alice") as c:
        newer = await post_ops(c, "d1", [rect("e3")])
    welcome = await welcome_of(gateway, "d1")
    state = welcome["state"]
    assert isinstance(state, dict)
    assert (welcome["v"], state["title"], state["v"]) == (newer, "P", newer)
