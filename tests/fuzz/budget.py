"""The fuzz budget: small by default so `make test` stays fast; ATELIER_FUZZ_EXAMPLES=N
runs N examples per property (and per API operation for schemathesis)."""

from __future__ import annotations

import os


def examples(default: int) -> int:
    raw = os.environ.get("ATELIER_FUZZ_EXAMPLES")
    return int(raw) if raw else default
