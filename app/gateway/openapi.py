"""``/openapi.json``: the HTTP API as served by this gateway (PROTOCOL.md section 5).

Written out rather than generated: the contract is PROTOCOL.md, and this document
lists exactly the routes this build serves, so a test can hold the two together.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import __version__
from app.gateway.responses import json_response

__all__ = ["SPEC", "routes"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ERROR, "error: {code, message}") for s in statuses}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def _query(name: str, description: str, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "integer", **schema},
    }


_DOC = {"name": "doc_id", "in": "path", "required": True, "schema": {"type": "string"}}
_USER = {"name": "user", "in": "path", "required": True, "schema": {"type": "string"}}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
_V = _obj({"v": {"type": "integer"}}, ["v"])
_MAX_V = 2**63 - 1  # versions are PostgreSQL bigints

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Atelier",
        "version": __version__,
        "description": "Real-time co-editing of layered canvases. WebSocket: PROTOCOL.md 4.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "Error": _obj(
                {"code": {"type": "string"}, "message": {"type": "string"}}, ["code", "message"]
            ),
            "Summary": _obj(
                {
                    k: {"type": t}
                    for k, t in (
                        ("id", "string"),
                        ("title", "string"),
                        ("v", "integer"),
                        ("owner", "string"),
                        ("role", "string"),
                        ("layers", "integer"),
                        ("elements", "integer"),
                        ("updated_at", "integer"),
                    )
                },
                ["id", "title", "v", "owner", "role"],
            ),
            "Event": _obj(
                {
                    "v": {"type": "integer"},
                    "op": {"type": "object"},
                    "actor": {"type": "string"},
                    "id": {"type": ["string", "null"]},
                    "ts": {"type": "integer"},
                },
                ["v", "op", "actor", "id", "ts"],
            ),
        },
    },
    "paths": {
        "/api/documents": {
            "post": {
                "summary": "Create a document; the caller is its owner",
                "security": _SECURED,
                "requestBody": _body(
                    _obj(
                        {
                            "title": {"type": "string", "minLength": 1, "maxLength": 200},
                            "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                        },
                        ["title"],
                    )
                ),
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/Summary"}, "created"),
                    **_errors(400, 401, 409, 413, 503),
                },
            },
            "get": {
                "summary": "The documents the caller may read, most recently edited first",
                "security": _SECURED,
                "parameters": [
                    _query("limit", "page size, 1..100 (default 50)", minimum=1, maximum=100),
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "opaque: the previous page's next",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json(
                        _obj(
                            {
                                "documents": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Summary"},
                                },
                                "next": {"type": ["string", "null"]},
                            },
                            ["documents", "next"],
                        ),
                        "a page of summaries; next is null on the last page",
                    ),
                    **_errors(400, 401, 503),
                },
            },
        },
        "/api/documents/{doc_id}": {
            "get": {
                "summary": "The document's state (from the read side: eventually consistent)",
                "security": _SECURED,
                "parameters": [
                    _DOC,
                    _query(
                        "at",
                        "the state as it was at this version (1..v)",
                        minimum=1,
                        maximum=_MAX_V,
                    ),
                    _query(
                        "min_v",
                        "wait (at most 5 s, then 504) until the read side has this version",
                        minimum=0,
                        maximum=_MAX_V,
                    ),
                ],
                "responses": {
                    "200": _json(
                        _obj(
                            {
                                "id": {"type": "string"},
                                "v": {"type": "integer"},
                                "state": {"type": "object"},
                            },
                            ["id", "v", "state"],
                        ),
                        "the state (PROTOCOL.md section 2)",
                    ),
                    **_errors(400, 401, 403, 404, 503, 504),
                },
            }
        },
        "/api/documents/{doc_id}/events": {
            "get": {
                "summary": "The document's events after a version, in version order",
                "security": _SECURED,
                "parameters": [
                    _DOC,
                    _query(
                        "after",
                        "events with a version above this (default 0)",
                        minimum=0,
                        maximum=_MAX_V,
                    ),
                    _query("limit", "page size, 1..1000 (default 100)", minimum=1, maximum=1000),
                ],
                "responses": {
                    "200": _json(
                        _obj(
                            {
                                "events": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Event"},
                                },
                                "next": {"type": ["integer", "null"]},
                            },
                            ["events", "next"],
                        ),
                        "events; next is the after of the next page, null at the end",
                    ),
                    **_errors(400, 401, 403, 404, 503),
                },
            }
        },
        "/api/documents/{doc_id}/diff": {
            "get": {
                "summary": "What changed between two versions",
                "security": _SECURED,
                "parameters": [
                    _DOC,
                    _query("from", "a version (1..v)", required=True, minimum=1, maximum=_MAX_V),
                    _query("to", "a version (1..v)", required=True, minimum=1, maximum=_MAX_V),
                ],
                "responses": {
                    "200": _json(
                        _obj(
                            {
                                "from": {"type": "integer"},
                                "to": {"type": "integer"},
                                "added": {"type": "array", "items": {"type": "string"}},
                                "removed": {"type": "array", "items": {"type": "string"}},
                                "changed": {"type": "object"},
                                "layers": _obj(
                                    {
                                        "added": {"type": "array", "items": {"type": "string"}},
                                        "removed": {
                                            "type": "array",
                                            "items": {"type": "string"},
                                        },
                                        "changed": {"type": "object"},
                                    },
                                    ["added", "removed", "changed"],
                                ),
                            },
                            ["from", "to", "added", "removed", "changed", "layers"],
                        ),
                        "the diff (PROTOCOL.md section 5)",
                    ),
                    **_errors(400, 401, 403, 404, 503),
                },
            }
        },
        "/api/documents/{doc_id}/activity": {
            "get": {
                "summary": "Recent edits, newest first (from the read side)",
                "security": _SECURED,
                "parameters": [
                    _DOC,
                    _query("limit", "how many, 1..100 (default 50)", minimum=1, maximum=100),
                ],
                "responses": {
                    "200": _json(
                        _obj(
                            {
                                "items": {
                                    "type": "array",
                                    "items": _obj(
                                        {
                                            "v": {"type": "integer"},
                                            "actor": {"type": "string"},
                                            "kind": {"type": "string"},
                                            "ts": {"type": "integer"},
                                        },
                                        ["v", "actor", "kind", "ts"],
                                    ),
                                }
                            },
                            ["items"],
                        ),
                        "activity",
                    ),
                    **_errors(400, 401, 403, 404, 503),
                },
            }
        },
        "/api/documents/{doc_id}/ops": {
            "post": {
                "summary": "Submit an op; answered after it is durably committed",
                "security": _SECURED,
                "parameters": [_DOC],
                "requestBody": _body(
                    _obj({"id": {"type": "string"}, "op": {"type": "object"}}, ["id", "op"])
                ),
                "responses": {
                    "200": _json(_V, "ack"),
                    **_errors(400, 401, 403, 404, 409, 413, 429, 503),
                },
            }
        },
        "/api/documents/{doc_id}/members/{user}": {
            "put": {
                "summary": "Add or change a member (owner only)",
                "security": _SECURED,
                "parameters": [_DOC, _USER],
                "requestBody": _body(_obj({"role": {"enum": ["editor", "viewer"]}}, ["role"])),
                "responses": {
                    "200": _json(
                        _obj(
                            {"user": {"type": "string"}, "role": {"type": "string"}},
                            ["user", "role"],
                        ),
                        "member set",
                    ),
                    **_errors(400, 401, 403, 404),
                },
            },
            "delete": {
                "summary": "Remove a member (owner only)",
                "security": _SECURED,
                "parameters": [_DOC, _USER],
                "responses": {"204": {"description": "removed"}, **_errors(400, 401, 403, 404)},
            },
        },
        "/api/documents/{doc_id}/versions": {
            "get": {
                "summary": "The named versions, oldest version first",
                "security": _SECURED,
                "parameters": [_DOC],
                "responses": {
                    "200": _json(
                        _obj(
                            {
                                "versions": {
                                    "type": "array",
                                    "items": _obj(
                                        {
                                            "name": {"type": "string"},
                                            "v": {"type": "integer"},
                                            "ts": {"type": "integer"},
                                            "actor": {"type": "string"},
                                        },
                                        ["name", "v", "ts", "actor"],
                                    ),
                                }
                            },
                            ["versions"],
                        ),
                        "named versions",
                    ),
                    **_errors(401, 403, 404, 503),
                },
            },
            "post": {
                "summary": "Name the current version",
                "security": _SECURED,
                "parameters": [_DOC],
                "requestBody": _body(
                    _obj({"name": {"type": "string", "minLength": 1, "maxLength": 200}}, ["name"])
                ),
                "responses": {
                    "201": _json({"type": "object"}, "named"),
                    **_errors(400, 401, 403, 404, 409),
                },
            },
        },
        "/api/documents/{doc_id}/restore": {
            "post": {
                "summary": "Append a restore event that brings the state back to version v",
                "security": _SECURED,
                "parameters": [_DOC],
                "requestBody": _body(
                    _obj({"v": {"type": "integer", "minimum": 1, "maximum": _MAX_V}}, ["v"])
                ),
                "responses": {"200": _json(_V, "restored"), **_errors(400, 401, 403, 404, 503)},
            }
        },
        "/api/assets": {
            "post": {
                "summary": "Upload an image (raw bytes, at most 20 MiB)",
                "security": _SECURED,
                "requestBody": {"required": True, "content": {"image/*": {}}},
                "responses": {
                    "201": _json(_obj({"asset": {"type": "string"}}, ["asset"]), "stored"),
                    **_errors(400, 401, 413),
                },
            }
        },
        "/api/assets/{sha256}": {
            "get": {
                "summary": "The bytes of an asset",
                "security": _SECURED,
                "parameters": [
                    {"name": "sha256", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "the bytes", "content": {"image/*": {}}},
                    **_errors(400, 401, 404),
                },
            }
        },
        "/api/dev/token": {
            "get": {
                "summary": "A token for ?user= (APP_ENV=dev only; 404 otherwise)",
                "parameters": [
                    {"name": "user", "in": "query", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(_obj({"token": {"type": "string"}}, ["token"]), "token"),
                    **_errors(400, 404),
                },
            }
        },
        "/": {"get": {"summary": "The index page", "responses": {"200": {"description": "HTML"}}}},
        # A mount: /static/<file> are the web page's ES modules and styles (app/web).
        "/static": {
            "get": {
                "summary": "The web page's files, at /static/<path> (docs/webclient.md)",
                "responses": {"200": {"description": "a file"}, "404": {"description": "none"}},
            }
        },
        "/healthz": {
            "get": {
                "summary": "200 while the process runs",
                "responses": {"200": {"description": "alive"}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "200 when PostgreSQL and Redis answer and the schema is current "
                "(a replica, DATABASE_READ_URL, is reported as `replica`, not required)",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text format",
                "responses": {"200": {"description": "metrics"}},
            }
        },
    },
}


async def openapi(request: Request) -> Response:
    return json_response(SPEC)


routes = [Route("/openapi.json", openapi, methods=["GET"])]
