"""A lock that another session holds past ``lock_timeout``: the request is a retryable 503 store-unavailable,
nothing of it is stored, and the same request succeeds once the lock is gone.

Real locks on real databases: SQLite's write lock held by another connection to the file (the CLI, a second
``cutout serve`` on the same folder), and on PostgreSQL the write lock every node takes (an advisory lock) or
a row every write changes, held by a stuck session. The row is met by a statement the store runs on the
driver's cursor, whose errors the driver raises unwrapped; the write lock by the transaction's start.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from starlette.testclient import TestClient

from cutout.api import create_app
from cutout.errors import StoreUnavailable
from cutout.service import Exchange
from cutout.settings import Settings, load_settings
from cutout.store.sql import WRITE_LOCK
from tests.api.conftest import TAXII, indicator
from tests.conftest import POSTGRES_URL, reset_postgres

WAIT = 0.3  # seconds: the lock_timeout these brokers run with


def _settings(tmp_path: Path, backend: str) -> Settings:
    if backend == "sqlite":
        return load_settings(tmp_path / "broker", {"lock_timeout": WAIT}, environ={})
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need CUTOUT_TEST_POSTGRES=postgresql://… (CI sets it)")
    reset_postgres(POSTGRES_URL)
    return load_settings(tmp_path / "broker", {"database_url": POSTGRES_URL, "lock_timeout": WAIT}, environ={})


@contextmanager
def _sqlite_writer(settings: Settings) -> Iterator[None]:
    """Another connection to the file holds SQLite's one write lock."""
    other = sqlite3.connect(settings.db_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


@contextmanager
def _pg_session(statements: tuple[str, ...]) -> Iterator[None]:
    with psycopg.connect(POSTGRES_URL) as other:  # a transaction, open until the block ends
        for sql in statements:
            other.execute(sql)
        yield
        other.rollback()


def _pg_write_lock(settings: Settings) -> AbstractContextManager[None]:
    return _pg_session((f"SELECT pg_advisory_xact_lock({WRITE_LOCK})",))


def _pg_audit_row(settings: Settings) -> AbstractContextManager[None]:
    return _pg_session(("SELECT value FROM meta WHERE key = 'audit_range' FOR UPDATE",))


BLOCKERS: dict[str, tuple[str, Callable[[Settings], AbstractContextManager[None]]]] = {
    "sqlite-write-lock": ("sqlite", _sqlite_writer),
    "postgres-write-lock": ("postgres", _pg_write_lock),
    "postgres-row-lock": ("postgres", _pg_audit_row),
}
PARAMS = [
    pytest.param(name, marks=pytest.mark.postgres) if backend == "postgres" else name
    for name, (backend, _) in BLOCKERS.items()
]


@pytest.fixture(params=PARAMS)
def blocked(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Exchange, Settings, Any]]:
    backend, blocker = BLOCKERS[request.param]
    settings = _settings(tmp_path, backend)
    Exchange.init(settings, "Waiting Exchange")
    ex = Exchange.open(settings)
    try:
        yield ex, settings, blocker
    finally:
        ex.close()


def test_a_lock_held_elsewhere_is_a_retryable_503_and_the_resend_is_stored_once(
    blocked: tuple[Exchange, Settings, Any],
) -> None:
    ex, settings, blocker = blocked
    _, token = ex.add_party("Patient Provider", provider=True, consumer=False)
    _, reader_token = ex.add_party("Patient Reader", provider=False, consumer=True)
    ex.add_agreement("Patient Provider", "Patient Reader", delay=0)
    headers = {"Accept": TAXII, "Content-Type": TAXII, "Authorization": f"Bearer {token}"}
    obj = indicator()
    body = orjson.dumps({"objects": [obj]})
    with TestClient(create_app(settings, ex, run_scheduler=False)) as client:
        cols = client.get("/exchange/collections/", headers=headers).json()["collections"]
        outbox = next(c["id"] for c in cols if c["title"] == "outbox")
        url = f"/exchange/collections/{outbox}/objects/"
        with blocker(settings):
            r = client.post(url, content=body, headers=headers)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "2"
            doc = r.json()
            assert doc["error_code"] == "store-unavailable" and doc["http_status"] == "503"
            for word in ("lock", "sqlite", "psycopg", "timeout", "meta", "audit"):
                assert word not in r.text.lower()
            # reads go on meanwhile: the lock is a writer's
            assert client.get(url, headers=headers).status_code == 200
        assert client.get(url, headers=headers).json().get("objects", []) == [], "the refused POST stored something"
        r = client.post(url, content=body, headers=headers)
        assert r.status_code == 202, r.text
        assert r.json()["success_count"] == 1
        mine = client.get(url, headers=headers).json()["objects"]
        assert [o["id"] for o in mine] == [obj["id"]]
        reader = {"Accept": TAXII, "Authorization": f"Bearer {reader_token}"}
        cols = client.get("/exchange/collections/", headers=reader).json()["collections"]
        inbox = next(c["id"] for c in cols if c["title"] == "inbox")
        assert len(client.get(f"/exchange/collections/{inbox}/objects/", headers=reader).json()["objects"]) == 1
    assert ex.verify_audit().ok


def test_a_statement_on_the_drivers_cursor_that_meets_a_lock_is_store_unavailable(tmp_path: Path) -> None:
    """Store level, SQLite: a statement the store runs on the driver's cursor (not through SQLAlchemy) waits
    for the write lock another connection holds; the driver's own error becomes StoreUnavailable, as
    SQLAlchemy's would, and the transaction is rolled back."""
    settings = _settings(tmp_path, "sqlite")
    Exchange.init(settings, "Waiting Exchange")
    ex = Exchange.open(settings)
    status_id = str(uuid.uuid4())
    try:
        # a deferred transaction: the insert asks for the write lock
        with _sqlite_writer(settings), pytest.raises(StoreUnavailable) as caught, ex.store.read() as tx:
            tx.add_status(status_id, 1, 0, b"{}")
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert "locked" in str(caught.value.__cause__)
        with ex.store.read() as tx:
            assert tx.status(status_id, 1) is None
    finally:
        ex.close()
