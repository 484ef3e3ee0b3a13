"""Logging and metrics set-up, shared by every process.

``configure_logging`` is called once by ``app.cli`` before a runner starts; modules only
ever ask for a logger (``structlog.get_logger(__name__)``). ``metrics`` holds the
Prometheus metrics on the project's own registry, rendered by the gateway at ``/metrics``;
``exporter`` serves them for the processes without HTTP of their own (relay, snapshotter,
read worker).
"""

from app.observability.logging import configure_logging

__all__ = ["configure_logging"]
