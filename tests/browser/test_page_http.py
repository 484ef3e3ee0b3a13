"""The page and its files over plain HTTP: what is served, and under which headers."""

from __future__ import annotations

import httpx

from app.gateway.web import content_security_policy
from tests.browser.conftest import Server

MODULES = ("main.js", "session.js", "outbox.js", "model.js", "render.js", "editor.js")


def test_the_page_is_served_with_a_strict_policy(server: Server) -> None:
    page = httpx.get(f"{server.url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<body data-env="dev">' in page.text  # the server runs with APP_ENV=dev
    assert "<script>" not in page.text and " style=" not in page.text  # nothing inline
    csp = page.headers["content-security-policy"]
    host = server.url.removeprefix("http://")
    assert csp == content_security_policy(host)
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'"):
        assert directive in csp
    assert f"connect-src 'self' ws://{host} wss://{host}" in csp
    assert "unsafe" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"


def test_the_modules_are_served_as_javascript(server: Server) -> None:
    for name in (*MODULES, "panels.js", "api.js"):
        r = httpx.get(f"{server.url}/static/{name}", timeout=10)
        assert r.status_code == 200, name
        assert "javascript" in r.headers["content-type"], name
        assert "content-security-policy" in r.headers
        etag = r.headers["etag"]
        again = httpx.get(f"{server.url}/static/{name}", headers={"If-None-Match": etag})
        assert again.status_code == 304, name
    css = httpx.get(f"{server.url}/static/style.css", timeout=10)
    assert css.headers["content-type"].startswith("text/css")
    assert httpx.get(f"{server.url}/static/nothing.js", timeout=10).status_code == 404


def test_the_policy_keeps_only_host_characters() -> None:
    assert "ws://a.example:80 " in content_security_policy("a.example:80")
    assert "evil" in content_security_policy("evil; script-src *")  # no ; nor space, nor *
    assert "script-src *" not in content_security_policy("evil; script-src *")
    assert "connect-src 'self';" in content_security_policy("")
