"""The chaos run's pure parts and its proxy: the fault plan, the ledger of acks, the
convergence check, and cutting and restoring a connection through ``TcpProxy``."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.chaos.checks import check_clients
from app.chaos.clients import Ledger, Tally, WsClient
from app.chaos.faults import KINDS, parse_kinds, plan
from app.chaos.proxy import TcpProxy

# -- the fault plan ------------------------------------------------------------------------


def test_plan_has_every_kind_once_in_order_and_no_overlap() -> None:
    kinds = list(KINDS)
    faults = plan(5, 60, kinds, gateways=2, workers=2, every=5)
    assert {f.kind for f in faults[: len(kinds)]} == set(kinds)
    assert len(faults) == max(len(kinds), int(60 * 0.9 / 5))
    slot = 60 * 0.9 / len(faults)
    for i, fault in enumerate(faults):
        assert i * slot <= fault.at < (i + 1) * slot  # one per slot, in time order
        assert fault.at + fault.hold <= (i + 1) * slot  # the hold ends inside the slot
        assert fault.hold <= KINDS[fault.kind][2]  # at most the kind's longest hold
    assert all(f.target in (0, 1) for f in faults)
    assert max(f.at for f in faults) < 60 * 0.9  # the tail of the run is quiet


def test_plan_is_the_seeds_alone() -> None:
    kinds = ["kill-gateway", "cut-pg", "redis-restart-empty"]
    assert plan(3, 100, kinds, gateways=3) == plan(3, 100, kinds, gateways=3)
    assert plan(3, 100, kinds, gateways=3) != plan(4, 100, kinds, gateways=3)
    assert plan(3, 100, [], gateways=3) == []


def test_parse_kinds() -> None:
    assert parse_kinds("cut-pg, kill-relay,cut-pg,") == ["cut-pg", "kill-relay"]
    with pytest.raises(ValueError, match="unknown fault 'kill-everything'"):
        parse_kinds("cut-pg,kill-everything")


# -- the ledger and the convergence check ----------------------------------------------------


def test_ledger_counts_a_second_ack_with_another_version() -> None:
    ledger = Ledger()
    assert ledger.ack("d", "u", "op1", 5)
    assert not ledger.ack("d", "u", "op1", 5)  # the answer to a re-send
    assert ledger.mismatched == []
    assert not ledger.ack("d", "u", "op1", 6)
    assert ledger.mismatched == [("d", "u", "op1", 5, 6)]


def client(doc: str, last_v: int, elements: dict[str, Any], *, ready: bool = True) -> WsClient:
    c = WsClient("c", doc, "u", "t", ["ws://x"], random.Random(1), Tally(), Ledger())
    c.last_v = last_v
    c.elements = elements
    if ready:
        c.ready.set()
    return c


def state(v: int, elements: dict[str, dict[str, Any]]) -> dict[str, Any]:
    layer = {"id": "L", "elements": [{"id": k, "props": p} for k, p in elements.items()]}
    return {"v": v, "state": {"layers": [layer]}}


async def test_check_clients_finds_what_differs() -> None:
    states = {"d": state(7, {"e": {"x": 1}})}
    good = client("d", 7, {"e": {"x": 1}})
    check, counts = check_clients([good], states)
    assert check.ok and counts["not_converged"] == 0

    behind = client("d", 6, {"e": {"x": 1}})
    other = client("d", 7, {"e": {"x": 2}})
    gone = client("d", 7, {"e": {"x": 1}}, ready=False)
    skipped = client("d", 7, {"e": {"x": 1}})
    skipped.gaps = 1
    check, counts = check_clients([good, behind, other, gone, skipped], states)
    assert not check.ok
    assert counts == {"clients": 5, "not_converged": 3, "delivery": 1}


# -- the proxy ----------------------------------------------------------------------------


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def read(reader: asyncio.StreamReader) -> bytes:
    """What comes next; b"" once the connection is closed or reset."""
    try:
        async with asyncio.timeout(10):
            return await reader.read(1024)
    except ConnectionResetError:
        return b""


async def roundtrip(port: int, data: bytes = b"hi") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await read(reader)
    finally:
        writer.close()


async def test_proxy_cut_drop_restore(echo: int) -> None:
    proxy = await TcpProxy("127.0.0.1", echo).start()
    try:
        assert await roundtrip(proxy.port) == b"hi"
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"a")
        assert await reader.read(10) == b"a"

        proxy.drop()  # open connections break, new ones go through
        assert await read(reader) == b""
        writer.close()
        assert await roundtrip(proxy.port, b"again") == b"again"

        proxy.cut()  # refused until restored
        assert not proxy.up
        assert await roundtrip(proxy.port) == b""
        proxy.restore()
        assert await roundtrip(proxy.port, b"back") == b"back"
        assert proxy.accepted == 4
    finally:
        await proxy.close()
