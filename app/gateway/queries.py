"""HTTP queries on documents (PROTOCOL.md section 5): the GET routes, served from the
read side's views (docs/readside.md, "Queries").

Access is checked against the write side's ``members`` (the truth, I8) before anything
is read: 404 for an unknown document, 403 for a non-member; viewers may read. The
views are eventually consistent: an answer may be a little behind the last ack, and
``GET /api/documents/{id}?min_v=`` is how a client waits for its own write.

The queries read ``svc.reads`` and ``svc.read_store``: a streaming replica's when
``DATABASE_READ_URL`` is set, else the primary's. The access checks and ``/events``
(which clients use to fill gaps in what they hold) stay on the primary
(docs/readside.md, "Reading a replica").

State bytes are spliced into the answers as stored, never parsed and re-encoded, so a
large document costs one copy, not a decode and an encode.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.domain import diff, state_to_json
from app.errors import Invalid
from app.gateway.access import require_role
from app.gateway.auth import authenticate
from app.gateway.responses import json_response
from app.gateway.services import Services, services
from app.protocol.messages import encode_event
from app.views.reader import CatalogEntry

__all__ = ["MIN_V_TIMEOUT", "decode_cursor", "encode_cursor", "routes"]

MIN_V_TIMEOUT: Final = 5.0  # seconds: PROTOCOL.md 5, min_v waits at most 5 s, then 504
_INT: Final = re.compile(r"-?[0-9]{1,18}")
_MAX_V: Final = 2**63 - 1  # bigint


def _doc_id(request: Request) -> str:
    return str(request.path_params["doc_id"])


def _int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """Query parameter ``name`` as an integer in ``lo..hi``; ``default`` when absent.
    Anything else (not a plain decimal integer, out of range) is 400 ``invalid``."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _INT.fullmatch(raw):
        raise Invalid(f"{name} must be an integer, not {raw[:40]!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise Invalid(f"{name} must be in {lo}..{hi}, not {value}")
    return value


def _required_int(request: Request, name: str, lo: int, hi: int) -> int:
    value = _int_param(request, name, None, lo, hi)
    if value is None:
        raise Invalid(f"{name} is required")
    return value


def encode_cursor(entry: CatalogEntry) -> str:
    """An opaque keyset cursor: the last summary's (updated_at, id), base64url."""
    raw = orjson.dumps([entry.updated_at, entry.id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, doc_id = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise Invalid("cursor is not one this server gave out") from None
    if type(updated_at) is not int or not isinstance(doc_id, str):
        raise Invalid("cursor is not one this server gave out")
    return updated_at, doc_id


def _json_bytes(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _state_body(doc_id: str, v: int, state: bytes) -> bytes:
    """``{"id", "v", "state"}`` with the stored state bytes spliced in as they are."""
    return b'{"id":' + orjson.dumps(doc_id) + b',"v":%d,"state":' % v + state + b"}"


async def list_documents(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    limit = _int_param(request, "limit", 50, 1, 100)
    assert limit is not None
    cursor = request.query_params.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    rows = await svc.reads.catalog(who.user, limit + 1, after)
    page = rows[:limit]
    following = encode_cursor(page[-1]) if len(rows) > limit else None
    return json_response({"documents": [r.to_json() for r in page], "next": following})


async def get_document(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    doc_id = _doc_id(request)
    at = _int_param(request, "at", None, 1, _MAX_V)
    min_v = _int_param(request, "min_v", None, 0, _MAX_V)
    await require_role(svc.store, doc_id, who.user)
    if min_v:
        await svc.watch.wait_for(doc_id, min_v, MIN_V_TIMEOUT)
    if at is not None:
        return _json_bytes(_state_body(doc_id, at, await svc.history.state_at(doc_id, at)))
    # After a wait, the state at or past min_v, never an older one: should the reads have
    # moved from the primary back to a replica that is behind since the wait, the
    # primary's view (at or past the replica's) answers.
    if min_v:
        row = await svc.reads.state_at_least(doc_id, min_v)
        if row is None and svc.reads is not svc.views:
            row = await svc.views.state_at_least(doc_id, min_v)
    else:
        row = await svc.reads.state(doc_id)
    if row is not None:
        return _json_bytes(_state_body(doc_id, row.v, row.state))
    return _json_bytes(await _committed_state(svc, doc_id))


async def _committed_state(svc: Services, doc_id: str) -> bytes:
    """The view has no row yet (a document created a moment ago): the command
    handler's committed state, so a document that exists never answers 404."""
    model = await svc.handler.committed_model(doc_id)
    return _state_body(doc_id, model.v, orjson.dumps(state_to_json(model.doc)))


async def list_events(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    doc_id = _doc_id(request)
    after = _int_param(request, "after", 0, 0, _MAX_V)
    limit = _int_param(request, "limit", 100, 1, 1000)
    assert after is not None and limit is not None
    await require_role(svc.store, doc_id, who.user)
    stored = await svc.store.read_stream(doc_id, after_v=after, limit=limit + 1)
    page = stored[:limit]
    bodies = [encode_event(e.v, e.op, e.actor, e.op_id, e.ts).encode() for e in page]
    following = b"%d" % page[-1].v if len(stored) > limit else b"null"
    return _json_bytes(b'{"events":[' + b",".join(bodies) + b'],"next":' + following + b"}")


async def get_diff(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    doc_id = _doc_id(request)
    v_from = _required_int(request, "from", 1, _MAX_V)
    v_to = _required_int(request, "to", 1, _MAX_V)
    await require_role(svc.store, doc_id, who.user)
    before = await svc.history.document_at(doc_id, v_from)
    after = await svc.history.document_at(doc_id, v_to)
    return json_response(diff(before, after))


async def list_activity(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    doc_id = _doc_id(request)
    limit = _int_param(request, "limit", 50, 1, 100)
    assert limit is not None
    await require_role(svc.store, doc_id, who.user)
    items = await svc.reads.activity(doc_id, limit)
    return json_response(
        {"items": [{"v": a.v, "actor": a.actor, "kind": a.kind, "ts": a.ts} for a in items]}
    )


async def list_versions(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    doc_id = _doc_id(request)
    await require_role(svc.store, doc_id, who.user)
    named = await svc.read_store.list_versions(doc_id)
    return json_response(
        {"versions": [{"name": n.name, "v": n.v, "ts": n.ts, "actor": n.actor} for n in named]}
    )


routes = [
    Route("/api/documents", list_documents, methods=["GET"]),
    Route("/api/documents/{doc_id}", get_document, methods=["GET"]),
    Route("/api/documents/{doc_id}/events", list_events, methods=["GET"]),
    Route("/api/documents/{doc_id}/diff", get_diff, methods=["GET"]),
    Route("/api/documents/{doc_id}/activity", list_activity, methods=["GET"]),
    Route("/api/documents/{doc_id}/versions", list_versions, methods=["GET"]),
]
