"""Identifier rules (PROTOCOL.md sections 1 and 2).

Ids of documents, layers, elements and client ops: 1-64 chars of ``[A-Za-z0-9_-]``.
User ids (the token's ``sub``): 1-64 chars of ``[A-Za-z0-9_.@-]``.
"""

from __future__ import annotations

import re

__all__ = ["ID_PATTERN", "USER_PATTERN", "valid_id", "valid_user"]

# \A ... \Z rather than ^ ... $: "$" also matches before a trailing newline.
ID_PATTERN = r"\A[A-Za-z0-9_-]{1,64}\Z"
USER_PATTERN = r"\A[A-Za-z0-9_.@-]{1,64}\Z"

_ID = re.compile(ID_PATTERN)
_USER = re.compile(USER_PATTERN)


def valid_id(s: str) -> bool:
    """True when ``s`` is a valid document, layer, element or op id."""
    return isinstance(s, str) and _ID.match(s) is not None


def valid_user(s: str) -> bool:
    """True when ``s`` is a valid user id."""
    return isinstance(s, str) and _USER.match(s) is not None
