"""The TCP proxy tests cut and restore: the one the chaos run uses (app/chaos/proxy.py)."""

from __future__ import annotations

from app.chaos.proxy import TcpProxy

__all__ = ["TcpProxy"]
