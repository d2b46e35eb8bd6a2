"""Alembic environment: always run programmatically with the store's own connection (see store/migrate.py)."""

from __future__ import annotations

from alembic import context

from cutout.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
