"""Production mode refuses to start with a missing, short or default secret, and the
web page is served with a Content-Security-Policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import Gateway


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "APP_SECRET is required"),
        ("", "APP_SECRET is required"),
        ("short", "at least 32 bytes"),
        ("REPLACE-ME", "at least 32 bytes"),  # deploy/k8s/secret.yaml's placeholder
        ("x" * 31, "at least 32 bytes"),
    ],
    ids=["missing", "empty", "short", "deploy-placeholder", "31-bytes"],
)
def test_production_refuses_to_start_without_a_real_secret(
    secret: str | None, message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "APP_SECRET"}
    env.update(
        {
            "APP_ENV": "production",
            "APP_PORT": "0",
            "DATABASE_URL": "postgresql://x@127.0.0.1:1/none",
        }
    )
    if secret is not None:
        env["APP_SECRET"] = secret
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


async def test_the_web_page_has_a_content_security_policy(gateway: Gateway) -> None:
    async with gateway.client() as anonymous:
        for path in ("/", "/static/app.js"):
            r = await anonymous.get(path)
            if r.status_code == 404 and path != "/":
                continue
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            for rule in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
                assert rule in csp, (path, csp)
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
