"""Shared fixtures: a fresh broker in a temporary folder, on SQLite and (when enabled) on PostgreSQL.

PostgreSQL tests run when CUTOUT_TEST_POSTGRES holds a database URL (``.ci/run`` sets it to the server this
machine kind starts at 127.0.0.1:5432); without it they are skipped with that message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from cutout.service import Exchange
from cutout.settings import Settings, load_settings
from cutout.store import sql

POSTGRES_URL = os.environ.get("CUTOUT_TEST_POSTGRES", "")


def reset_postgres(url: str) -> None:
    """Drop and recreate the public schema, so each test starts from an empty database."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(autouse=True)
def both_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite, rows go to the small level of the ids indexes from the first (``sql.FRESH_FROM``) and are
    merged into the large one every few rows (``sql.MERGE_AFTER``), so that every test's reads by id meet rows
    in both levels: at the sizes of a real exchange, a test's few rows would all stay in the large one. (A
    server a test starts as a process of its own runs with the real sizes.)"""
    monkeypatch.setattr(sql, "FRESH_FROM", 0)
    monkeypatch.setattr(sql, "MERGE_AFTER", 7)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "postgres":
        if not POSTGRES_URL:
            pytest.skip("PostgreSQL tests need CUTOUT_TEST_POSTGRES=postgresql://… (CI sets it)")
        reset_postgres(POSTGRES_URL)
        return load_settings(tmp_path / "broker", {"database_url": POSTGRES_URL}, environ={})
    return load_settings(tmp_path / "broker", environ={})


@pytest.fixture
def exchange(settings: Settings) -> Iterator[Exchange]:
    Exchange.init(settings, "test exchange")
    ex = Exchange.open(settings)
    yield ex
    ex.close()
