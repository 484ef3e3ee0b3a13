"""Adapters to PostgreSQL behind the ports of ``app.store.ports``."""
