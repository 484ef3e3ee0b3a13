"""HTTP write endpoints on documents (PROTOCOL.md section 5): parse, call, encode."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.domain import valid_user
from app.errors import Invalid, NotFound, RateLimited, Unavailable
from app.gateway.access import require_manager, require_role, require_writer
from app.gateway.auth import authenticate
from app.gateway.bodies import CreateDocument, MemberRole, NameVersion, RestoreTo, SubmitOp, decode
from app.gateway.responses import json_response
from app.gateway.services import services

__all__ = ["routes"]

T = TypeVar("T")


def _doc_id(request: Request) -> str:
    return str(request.path_params["doc_id"])


async def create_document(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    body = await decode(request, CreateDocument, svc.settings.max_body_bytes)
    doc_id = body.id or secrets.token_urlsafe(12)
    event = await svc.handler.create_document(doc_id, who.user, body.title)
    summary = {
        "id": doc_id,
        "title": body.title,
        "v": event.v,
        "owner": who.user,
        "role": "owner",
        "layers": 0,
        "elements": 0,
        "updated_at": event.ts,
    }
    return json_response(summary, 201, headers={"Location": f"/api/documents/{doc_id}"})


async def submit_op(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    doc_id = _doc_id(request)
    body = await decode(request, SubmitOp, svc.settings.max_body_bytes)
    quotas = svc.quotas
    if not quotas.take_op(who.user, asyncio.get_running_loop().time()):
        raise RateLimited(
            f"at most {quotas.op_rate:g} ops a second for one user over all its "
            "connections; retry with the same id",
            retry_after=quotas.retry_after(),
        )
    role = await _within(
        require_role(svc.store, doc_id, who.user), svc.settings.op_commit_timeout_ms / 1000
    )
    ack = await svc.handler.submit(doc_id, who.user, role, body.id, body.op)
    return json_response({"v": ack.v})


async def _within(read: Coroutine[Any, Any, T], seconds: float) -> T:
    """A store read on the op path, bounded like the op's commit, so a store that stops
    answering (a partition) is `unavailable` in seconds, not at the driver's command
    timeout. The read is left to finish on its own rather than cancelled: cancelling an
    asyncpg query waits for the server to hear of it, which a partition also holds."""
    task = asyncio.ensure_future(read)
    done, _ = await asyncio.wait((task,), timeout=seconds)
    if not done:
        task.add_done_callback(_forget)
        raise Unavailable.store_silent(seconds)
    return task.result()


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the request was answered long ago


async def put_member(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    doc_id, user = _doc_id(request), str(request.path_params["user"])
    body = await decode(request, MemberRole, svc.settings.max_body_bytes)
    await require_manager(svc.store, doc_id, who.user)
    if not valid_user(user):
        raise Invalid("user must be 1-64 characters of [A-Za-z0-9_.@-]")
    if await svc.store.get_role(doc_id, user) == "owner":
        raise Invalid("the owner's role cannot be changed")
    await svc.store.set_member(doc_id, user, body.role)
    await svc.members.changed(doc_id, user, body.role)  # the next op of a live session
    return json_response({"user": user, "role": body.role})


async def delete_member(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    doc_id, user = _doc_id(request), str(request.path_params["user"])
    await require_manager(svc.store, doc_id, who.user)
    if await svc.store.get_role(doc_id, user) == "owner":
        raise Invalid("the owner cannot be removed")
    if not await svc.store.remove_member(doc_id, user):
        raise NotFound(f"{user!r} is not a member of this document")
    await svc.members.changed(doc_id, user, None)  # live sessions are closed 4403
    return Response(status_code=204)


async def name_version(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    doc_id = _doc_id(request)
    body = await decode(request, NameVersion, svc.settings.max_body_bytes)
    await require_writer(svc.store, doc_id, who.user)
    row = await svc.store.get_document(doc_id)
    if row is None:
        raise NotFound(f"document {doc_id!r} does not exist")
    named = await svc.store.add_version(doc_id, body.name, row.v, who.user)
    return json_response(
        {"name": named.name, "v": named.v, "ts": named.ts, "actor": named.actor}, 201
    )


async def restore(request: Request) -> Response:
    svc = services(request)
    who = authenticate(request, svc.settings.secret)
    doc_id = _doc_id(request)
    body = await decode(request, RestoreTo, svc.settings.max_body_bytes)
    role = await require_writer(svc.store, doc_id, who.user)
    ack = await svc.handler.restore(doc_id, who.user, role, body.v)
    return json_response({"v": ack.v})


routes = [
    Route("/api/documents", create_document, methods=["POST"]),
    Route("/api/documents/{doc_id}/ops", submit_op, methods=["POST"]),
    Route("/api/documents/{doc_id}/members/{user}", put_member, methods=["PUT"]),
    Route("/api/documents/{doc_id}/members/{user}", delete_member, methods=["DELETE"]),
    Route("/api/documents/{doc_id}/versions", name_version, methods=["POST"]),
    Route("/api/documents/{doc_id}/restore", restore, methods=["POST"]),
]
