"""``python -m app token``: mint an identity token with the server's own secret.

For development and operations: the production identity service holds the same secret
and mints the same tokens (PROTOCOL.md section 1).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from app.config import Settings
from app.tokens import issue_token

__all__ = ["run"]


def run(
    settings: Settings,
    *,
    user: str,
    name: str | None,
    ttl: int,
    out: TextIO | None = None,
) -> int:
    """Print a token for ``user`` valid for ``ttl`` seconds; ``Invalid`` for bad input."""
    token = issue_token(settings.secret, user, name=name, ttl=ttl, now=time.time())
    print(token, file=out or sys.stdout)
    return 0
