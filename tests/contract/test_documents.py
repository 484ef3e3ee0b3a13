"""Documents, members, snapshots, named versions and assets."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from app.errors import Conflict, Invalid, NotFound
from app.store.ports import Member, Snapshot
from app.store.postgres import PostgresStore
from tests.contract.helpers import assert_log_consistent, create_doc, request


async def test_create_and_get(store: PostgresStore) -> None:
    created = await create_doc(store, "d1", owner="alice")
    assert (created.doc_id, created.v, created.kind, created.actor) == (
        "d1",
        1,
        "doc.create",
        "alice",
    )
    doc = await store.get_document("d1")
    assert doc is not None
    assert (doc.id, doc.title, doc.owner, doc.v) == ("d1", "Title of d1", "alice", 1)
    assert doc.created_at == doc.updated_at == created.ts
    assert await store.get_document("nope") is None
    assert await store.read_log(0, 10) == [created]


async def test_create_an_existing_id_conflicts_and_writes_nothing(store: PostgresStore) -> None:
    await create_doc(store, "d1", owner="alice")
    with pytest.raises(Conflict):
        await create_doc(store, "d1", owner="mallory")
    doc = await store.get_document("d1")
    assert doc is not None and doc.owner == "alice"
    assert await store.list_members("d1") == [Member("alice", "owner")]
    assert await store.head() == 1


async def test_concurrent_creates_of_one_id_have_one_winner(store: PostgresStore) -> None:
    outcomes = await asyncio.gather(
        *(create_doc(store, "d1", owner=f"u{i}") for i in range(6)), return_exceptions=True
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, Conflict) for o in outcomes if isinstance(o, BaseException))
    assert await assert_log_consistent(store.pool) == 1


async def test_members(store: PostgresStore) -> None:
    await create_doc(store, "d1", owner="alice")
    assert await store.get_role("d1", "alice") == "owner"
    assert await store.get_role("d1", "bob") is None
    await store.set_member("d1", "bob", "viewer")
    await store.set_member("d1", "carol", "editor")
    await store.set_member("d1", "bob", "editor")  # a change of role
    assert await store.list_members("d1") == [
        Member("alice", "owner"),
        Member("bob", "editor"),
        Member("carol", "editor"),
    ]
    assert await store.remove_member("d1", "carol") is True
    assert await store.remove_member("d1", "carol") is False
    assert await store.get_role("d1", "carol") is None
    with pytest.raises(NotFound):
        await store.set_member("nope", "bob", "viewer")
    with pytest.raises(Invalid):
        await store.set_member("d1", "bob", "admin")  # type: ignore[arg-type]


async def test_snapshots_keep_the_latest_two_and_match_the_schema(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    await store.append([request("d1", v) for v in range(1, 10)])
    assert await store.latest_snapshot("d1", 1) is None
    for v in (2, 4, 6, 8):
        await store.save_snapshot(Snapshot("d1", v, 1, f"state@{v}".encode()))
    assert await store.latest_snapshot("d1", 1) == Snapshot("d1", 8, 1, b"state@8")
    kept = await store.pool.fetch("SELECT v FROM snapshots WHERE doc_id = 'd1' ORDER BY v")
    assert [r["v"] for r in kept] == [6, 8]
    # Another state format: ignored by readers of format 1, and vice versa.
    await store.save_snapshot(Snapshot("d1", 10, 2, b"v2-format"))
    assert await store.latest_snapshot("d1", 1) == Snapshot("d1", 8, 1, b"state@8")
    assert await store.latest_snapshot("d1", 2) == Snapshot("d1", 10, 2, b"v2-format")
    # Re-saving a version replaces it.
    await store.save_snapshot(Snapshot("d1", 10, 2, b"again"))
    assert await store.latest_snapshot("d1", 2) == Snapshot("d1", 10, 2, b"again")


async def test_snapshot_beyond_the_document_is_refused(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    with pytest.raises(Invalid):
        await store.save_snapshot(Snapshot("d1", 2, 1, b"from the future"))
    with pytest.raises(NotFound):
        await store.save_snapshot(Snapshot("nope", 1, 1, b""))


async def test_named_versions(store: PostgresStore) -> None:
    await create_doc(store, "d1")
    await store.append([request("d1", v) for v in range(1, 5)])
    first = await store.add_version("d1", "draft", 3, "alice")
    assert (first.name, first.v, first.actor) == ("draft", 3, "alice") and first.ts > 0
    await store.add_version("d1", "final", 5, "bob")
    await store.add_version("d1", "draft", 1, "alice")  # names may repeat
    assert [(n.name, n.v) for n in await store.list_versions("d1")] == [
        ("draft", 1),
        ("draft", 3),
        ("final", 5),
    ]
    with pytest.raises(Invalid):
        await store.add_version("d1", "too far", 6, "alice")
    with pytest.raises(NotFound):
        await store.add_version("nope", "x", 1, "alice")


async def test_assets_are_content_addressed_and_deduplicated(store: PostgresStore) -> None:
    data = b"\x89PNG\r\n" + bytes(range(256)) * 1200  # > 256 KiB: hashed in a thread
    key = hashlib.sha256(data).hexdigest()
    assert await store.asset_exists(key) is False
    assert await store.get_asset(key) is None
    assert await store.put_asset(key, "image/png", data) is True
    assert await store.put_asset(key, "image/png", data) is False
    racing = await asyncio.gather(*(store.put_asset(key, "image/png", data) for _ in range(4)))
    assert racing == [False] * 4
    asset = await store.get_asset(key)
    assert asset is not None and asset.data == data and asset.content_type == "image/png"
    assert await store.asset_exists(key) is True
    assert await store.pool.fetchval("SELECT count(*) FROM assets") == 1


async def test_an_asset_key_must_be_the_hash_of_its_bytes(store: PostgresStore) -> None:
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(Invalid):
        await store.put_asset(wrong, "image/png", b"these bytes")
    with pytest.raises(Invalid):
        await store.put_asset("NOT-A-HASH", "image/png", b"")
    assert await store.get_asset("NOT-A-HASH") is None
