"""Operator commands that are not servers: the dev supervisor, migrate, token.

Each module has a ``run(settings, ...) -> int`` that ``app.cli`` imports lazily, so that
``python -m app token`` never pays for importing the gateway or the store.
"""

__all__: list[str] = []
