"""The pub/sub channel names of ``Keys``: hash-tagged like the document's stream."""

from __future__ import annotations

import pytest

from app.bus import Keys


def test_presence_and_members_channels_share_the_documents_hash_tag() -> None:
    keys = Keys("t:")
    assert keys.doc_presence("d1") == "t:presence:{d1}"
    assert keys.doc_members("d1") == "t:members:{d1}"
    assert keys.doc_stream("d1") == "t:doc:{d1}"


@pytest.mark.parametrize("doc_id", ["a{b", "a}b"])
def test_a_brace_in_the_document_id_is_refused(doc_id: str) -> None:
    with pytest.raises(ValueError, match="a document id"):
        Keys().doc_presence(doc_id)
    with pytest.raises(ValueError, match="a document id"):
        Keys().doc_members(doc_id)
