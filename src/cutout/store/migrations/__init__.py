"""Alembic migrations: one source for SQLite and PostgreSQL. ``cutout db upgrade`` runs them."""
