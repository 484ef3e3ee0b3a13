"""app.bus.keys: the key names and entry ids of the relay contract (docs/relay.md)."""

from __future__ import annotations

import pytest

from app.bus import DEFAULT_PREFIX, Keys, entry_id, position_of


def test_the_names_under_the_default_prefix() -> None:
    keys = Keys()
    assert keys.prefix == DEFAULT_PREFIX == "atelier:"
    assert keys.doc_stream("d1") == "atelier:doc:{d1}"
    assert keys.relay_position == "atelier:relay:{relay}:position"
    assert keys.relay_epoch == "atelier:relay:{relay}:epoch"
    assert keys.relay_store == "atelier:relay:{relay}:store"
    assert keys.relay_legacy == (
        "atelier:relay:position",
        "atelier:relay:epoch",
        "atelier:relay:store",
    )


def test_the_relay_progress_keys_share_one_hash_tag() -> None:
    # One slot on a Redis Cluster: read and written together on one node, in order.
    keys = Keys("t:")
    tags = {
        k[k.index("{") + 1 : k.index("}")]
        for k in (keys.relay_position, keys.relay_epoch, keys.relay_store)
    }
    assert tags == {"relay"}


def test_the_hash_tag_is_exactly_the_document_id() -> None:
    # Redis Cluster hashes the text between the first "{" and the next "}": the id.
    key = Keys("t:").doc_stream("Doc_9-x")
    start = key.index("{")
    assert key[start + 1 : key.index("}", start)] == "Doc_9-x"
    assert key.count("{") == key.count("}") == 1


def test_the_prefix_is_used_as_given() -> None:
    keys = Keys("atelier_test_ab12:")
    assert keys.doc_stream("x") == "atelier_test_ab12:doc:{x}"
    assert keys.doc_id_of(keys.doc_stream("x")) == "x"
    assert keys.doc_id_of(keys.doc_stream("x").encode()) == "x"
    with pytest.raises(ValueError):
        keys.doc_id_of("other:doc:{x}")


@pytest.mark.parametrize("prefix", ["a{b}:", "{atelier}:", "x}"])
def test_a_brace_in_the_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Keys(prefix)


@pytest.mark.parametrize("doc_id", ["a{b", "a}b", "{}"])
def test_a_brace_in_the_document_id_is_refused(doc_id: str) -> None:
    with pytest.raises(ValueError, match="document id"):
        Keys().doc_stream(doc_id)


def test_scan_patterns_escape_glob_characters_of_the_prefix() -> None:
    assert Keys("atelier:").doc_stream_pattern == "atelier:doc:{*}"
    assert Keys("a*b?[c]:").all_pattern == r"a\*b\?\[c\]:*"
    assert Keys("a*:").doc_stream_pattern == r"a\*:doc:{*}"


def test_entry_ids_are_positions() -> None:
    assert entry_id(1) == "1-0"
    assert entry_id(123456789012) == "123456789012-0"
    assert position_of("42-0") == 42
    assert position_of(b"42-0") == 42
    for position in (1, 7, 10**15):
        assert position_of(entry_id(position)) == position


@pytest.mark.parametrize("bad", ["42", "42-1", "x-0", "-0", "", "1-0-0"])
def test_foreign_entry_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        position_of(bad)


def test_position_zero_has_no_entry() -> None:
    with pytest.raises(ValueError):
        entry_id(0)
