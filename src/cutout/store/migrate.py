"""Schema migrations with Alembic, run through the store's own engine (so SQLite's pragmas apply)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from cutout.store.sql import Store

__all__ = ["current_revision", "downgrade", "head_revision", "upgrade"]

_HERE = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(store: Store, revision: str = "head") -> None:
    """Bring the database to ``revision`` (the newest by default); idempotent."""
    cfg = _config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(store: Store, revision: str) -> None:
    """Take the database back to ``revision`` (an older cutout's schema), carrying its data along."""
    cfg = _config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def new_revision(message: str) -> None:
    """For developers: write the migration from the newest revision to the tables declared in schema.py."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/scratch.db")
        try:
            upgrade(store)
            cfg = _config()
            with store.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.revision(cfg, message=message, autogenerate=True)
        finally:
            store.close()


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit('usage: python -m cutout.store.migrate "what the change is"')
    new_revision(sys.argv[1])
