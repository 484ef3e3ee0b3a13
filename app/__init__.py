"""Atelier: a real-time collaboration server for layered-canvas co-editing."""

__all__ = ["__version__"]

__version__ = "0.1.0"
