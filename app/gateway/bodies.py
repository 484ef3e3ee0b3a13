"""Request bodies: read with a size limit, decoded and validated declaratively (msgspec).

Anything wrong with a body becomes a coded 4xx and changes nothing (I7): a body over
the limit is ``too_large`` (413), bytes that are not a JSON object ``bad_message``,
wrong types, unknown fields and values out of range ``invalid``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from starlette.requests import Request

from app.errors import BadMessage, Invalid, TooLarge

__all__ = [
    "CreateDocument",
    "MemberRole",
    "NameVersion",
    "RestoreTo",
    "SubmitOp",
    "decode",
    "read_body",
]

_ID = r"^[A-Za-z0-9_-]{1,64}$"
_NO_NUL = r"\A[^\x00]*\Z"  # PostgreSQL text cannot hold a NUL

T = TypeVar("T")


class CreateDocument(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_NO_NUL)]
    id: Annotated[str, msgspec.Meta(pattern=_ID)] | None = None


class SubmitOp(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(pattern=_ID)]
    op: dict[str, Any]


class MemberRole(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["editor", "viewer"]


class NameVersion(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_NO_NUL)]


class RestoreTo(msgspec.Struct, forbid_unknown_fields=True):
    v: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]  # a version is a bigint


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLarge(f"body over the limit of {limit} bytes")
        except ValueError:
            raise BadMessage("content-length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def decode(request: Request, kind: type[T], limit: int) -> T:
    body = await read_body(request, limit)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        if str(exc).startswith("Expected `object`"):
            raise BadMessage("the body must be a JSON object") from None
        raise Invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadMessage(f"the body is not valid JSON: {exc}") from None
