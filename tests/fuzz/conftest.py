"""The real-gateway fixtures of tests/e2e, shared here."""

from tests.e2e.conftest import gateway, make_gateway

__all__ = ["gateway", "make_gateway"]
