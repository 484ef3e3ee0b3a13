"""schemathesis against a real gateway process (``python -m app serve``) and its
/openapi.json: every operation, with a valid owner token and a document that exists.
No 5xx; every status documented; every body matching its schema where the spec gives
one. The number of cases tried is printed (docs/reliability.md has a run's figure)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from app.gateway.openapi import SPEC
from app.tokens import issue_token
from tests.e2e.conftest import SECRET
from tests.fuzz.budget import examples

schema = schemathesis.openapi.from_dict(SPEC)
DOC = "fz1"
CHECKS = [
    checks.ignored_auth,  # an operation answers without the token: a finding
    checks.response_headers_conformance,
    checks.unsupported_method,  # 405 with Allow for methods the spec does not list
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
tried: dict[str, int] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(pg_dsn: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "APP_ENV": "dev",
        "APP_SECRET": SECRET,
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"atelier_test_{uuid.uuid4().hex[:12]}:",
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(port),
        "APP_DATA_DIR": str(tmp_path_factory.mktemp("gw")),
        "LOG_LEVEL": "error",
    }
    log = Path(env["APP_DATA_DIR"]) / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"], env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        token = issue_token(SECRET, "alice", name=None, ttl=3600, now=time.time())
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(url + "/api/documents", json={"id": DOC, "title": "Fuzz"}, headers=auth)
        assert r.status_code == 201, r.text
        op = {"kind": "layer.add", "layer": "L1", "name": "a"}
        r = httpx.post(f"{url}/api/documents/{DOC}/ops", json={"id": "l1", "op": op}, headers=auth)
        assert r.status_code == 200, r.text
        yield url
        assert proc.poll() is None, "the gateway died"
        total = sum(tried.values())
        print(f"\nschemathesis: {total} cases over {len(tried)} operations, 0 5xx")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One HTTP session for every case, closed at the end: schemathesis makes one per
    call otherwise and leaves its sockets to the garbage collector (a ResourceWarning
    that lands in whichever test runs when it collects)."""
    with requests.Session() as http:
        yield http


@schema.parametrize()
@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi(case: Any, served: str, session: requests.Session) -> None:
    if "doc_id" in (case.path_parameters or {}):
        case.path_parameters["doc_id"] = DOC
    query = dict(case.query or {})
    if str(query.get("min_v", "0")).strip() not in ("0", "") and str(query["min_v"]).isdigit():
        query["min_v"] = 0  # no read worker runs here: any wait would be the 5 s timeout
        case.query = query
    token = issue_token(SECRET, "alice", name=None, ttl=3600, now=time.time())
    name = case.operation.label
    tried[name] = tried.get(name, 0) + 1
    case.call_and_validate(
        base_url=served,
        session=session,
        headers={"Authorization": f"Bearer {token}"},
        checks=CHECKS,
        timeout=10,
    )
