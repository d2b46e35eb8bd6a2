"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cutout.settings import Settings
from cutout.store import Store
from cutout.store.migrate import current_revision, head_revision, upgrade
from cutout.store.schema import metadata


def test_migrations_match_the_declared_schema(settings: Settings) -> None:
    store = Store(settings.db_url)
    try:
        if settings.db_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(store)
        assert current_revision(store) == head_revision()
        upgrade(store)  # idempotent
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == [], "a schema change needs a migration: cd src/cutout/store && alembic revision --autogenerate"
    finally:
        store.close()
