"""Persistence: one SQL store (SQLAlchemy Core) over SQLite or PostgreSQL."""

from cutout.store.sql import Store, Tx

__all__ = ["Store", "Tx"]
