"""A lock that another session holds past ``lock_timeout``: the request is a retryable 503 store-unavailable,
nothing of it is stored, and the same request succeeds once the lock is gone.

Real locks on real databases: SQLite's write lock held by another connection to the file (the CLI, a second
``cutout serve`` on the same folder), and on PostgreSQL the write lock every node takes (an advisory lock) or
a row every write changes, held by a stuck session. The row is met by a statement the store runs on the
driver's cursor, whose errors the driver raises unwrapped; the write lock by the transaction's start.

And on SQLite, the calls that may not wait (``Store.no_wait``, what a request alone runs on the event loop):
refused at once by a lock, having changed nothing, and run again where they may wait.
"""

from __future__ import annotations

import sqlite3
import threading
import time
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
from cutout.errors import StoreUnavailable, WouldWait
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


# -- calls that may not wait (Store.no_wait: what the API runs on the event loop when a request is alone) --------


@pytest.fixture
def patient(tmp_path: Path) -> Iterator[tuple[Exchange, Settings]]:
    """A broker on SQLite whose transactions would wait far longer than any test runs for a lock."""
    settings = load_settings(tmp_path / "broker", {"lock_timeout": 600}, environ={})
    Exchange.init(settings, "Patient Exchange")
    ex = Exchange.open(settings)
    try:
        yield ex, settings
    finally:
        ex.close()


def _busy_timeout(ex: Exchange) -> int:
    with ex.store.read() as tx:
        return int(tx.conn.connection.dbapi_connection.execute("PRAGMA busy_timeout").fetchone()[0])  # type: ignore[union-attr]


def test_a_call_that_may_not_wait_gives_up_at_once_on_a_lock_and_changes_nothing(
    patient: tuple[Exchange, Settings],
) -> None:
    ex, settings = patient
    assert ex.can_refuse_to_wait
    assert _busy_timeout(ex) == 600_000
    with ex.no_wait():
        assert _busy_timeout(ex) == 0  # its calls use a connection that gives up at once
    assert _busy_timeout(ex) == 600_000  # the others, one that waits
    status_id = str(uuid.uuid4())
    with _sqlite_writer(settings):
        with ex.no_wait(), pytest.raises(WouldWait) as caught, ex.store.write() as tx:
            tx.add_status(status_id, 1, 0, b"{}")
        assert "locked" in str(caught.value.__cause__)  # the driver's words stay in the chain...
        assert "lock" not in caught.value.message  # ...should it ever reach a client, it says what a 503 says
        with ex.no_wait(), pytest.raises(WouldWait), ex.store.read() as tx:  # a deferred one, at its first write
            tx.add_status(status_id, 1, 0, b"{}")
        with ex.no_wait(), ex.store.read() as tx:  # reads go on: the lock is a writer's (WAL)
            assert tx.status(status_id, 1) is None
        with ex.no_wait():
            assert ex.store.party_by_token("no such hash") is None
    with ex.store.read() as tx:
        assert tx.status(status_id, 1) is None
    assert _busy_timeout(ex) == 600_000


def test_once_a_call_has_committed_it_waits_like_any_other(tmp_path: Path) -> None:
    """A WouldWait must mean "nothing was done": after a write commits inside no_wait, the call's next
    transaction waits for the lock (here until lock_timeout) and is StoreUnavailable, never WouldWait."""
    settings = _settings(tmp_path, "sqlite")  # lock_timeout WAIT
    Exchange.init(settings, "Waiting Exchange")
    ex = Exchange.open(settings)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        with ex.no_wait():
            with ex.store.write() as tx:
                tx.add_status(first, 1, 0, b"{}")
            with _sqlite_writer(settings), pytest.raises(StoreUnavailable) as caught, ex.store.write() as tx:
                tx.add_status(second, 1, 0, b"{}")
            assert not isinstance(caught.value, WouldWait)
        with ex.store.read() as tx:
            assert tx.status(first, 1) == b"{}" and tx.status(second, 1) is None
    finally:
        ex.close()


def test_a_call_that_may_not_wait_takes_no_connection_it_would_have_to_wait_for(
    patient: tuple[Exchange, Settings],
) -> None:
    """Its connection is one: a call that asks for a second while holding it (none does; the event loop makes
    one call at a time) is WouldWait, not a wait for the pool."""
    ex, _ = patient
    with ex.no_wait(), ex.store.read() as tx:
        assert tx.get_meta("identity") is not None
        with pytest.raises(WouldWait), ex.store.read() as inner:
            inner.get_meta("identity")
        with pytest.raises(WouldWait):
            ex.store.party_by_token("no such hash")
    with ex.no_wait(), ex.store.read() as tx:  # given back: the next call has it
        assert tx.get_meta("identity") is not None


@contextmanager
def _writing_in_another_thread(ex: Exchange) -> Iterator[None]:
    """Another thread of this process is inside a write transaction of the same store for the block."""
    inside, leave = threading.Event(), threading.Event()

    def write() -> None:
        with ex.store.write() as tx:
            tx.add_status(str(uuid.uuid4()), 1, 0, b"{}")
            inside.set()
            leave.wait(30)

    holder = threading.Thread(target=write)
    holder.start()
    try:
        assert inside.wait(10)
        yield
    finally:
        leave.set()
        holder.join(30)
    assert not holder.is_alive()


def test_writers_of_one_process_take_turns_instead_of_polling_sqlites_lock(
    patient: tuple[Exchange, Settings],
) -> None:
    """A second writer of the process waits for its turn without a connection (not in SQLite's busy handler,
    which sleeps and tries again), and is in the moment the first one's transaction ends."""
    ex, _ = patient
    done = threading.Event()
    status_id = str(uuid.uuid4())

    def second() -> None:
        with ex.store.write() as tx:
            tx.add_status(status_id, 1, 0, b"{}")
        done.set()

    with _writing_in_another_thread(ex):
        waiter = threading.Thread(target=second)
        waiter.start()
        for _ in range(50):  # give it every chance to take a connection, had it one to take
            if done.is_set():
                break
            time.sleep(0.01)
        assert not done.is_set()
        assert ex.store.engine.pool.checkedout() == 1  # the holder's: the waiter has none
    assert done.wait(10)
    waiter.join(10)
    with ex.store.read() as tx:
        assert tx.status(status_id, 1) == b"{}"


def test_a_writer_waits_for_its_turn_at_most_lock_timeout(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "sqlite")  # lock_timeout WAIT
    Exchange.init(settings, "Waiting Exchange")
    ex = Exchange.open(settings)
    status_id = str(uuid.uuid4())
    try:
        with _writing_in_another_thread(ex):
            with pytest.raises(StoreUnavailable) as caught, ex.store.write() as tx:
                tx.add_status(status_id, 1, 0, b"{}")
            assert not isinstance(caught.value, WouldWait)
            assert "try again" in caught.value.message
            with ex.no_wait(), pytest.raises(WouldWait), ex.store.write() as tx:  # at once, not after WAIT
                tx.add_status(status_id, 1, 0, b"{}")
        with ex.store.write() as tx:  # the turn is free again
            tx.add_status(status_id, 1, 0, b"{}")
    finally:
        ex.close()


@pytest.mark.postgres
def test_postgres_calls_always_may_wait(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "postgres")
    Exchange.init(settings, "Waiting Exchange")
    ex = Exchange.open(settings)
    try:
        assert not ex.can_refuse_to_wait
        with pytest.raises(AssertionError), ex.no_wait():
            pass
    finally:
        ex.close()


def test_a_request_alone_that_meets_a_lock_waits_on_a_worker_thread_and_stalls_no_one(
    patient: tuple[Exchange, Settings],
) -> None:
    """A one-object submission, alone, starts on the event loop; SQLite's write lock is held by another
    connection, so it gives up there, changing nothing, and waits on a worker thread instead. Meanwhile the
    server answers others (the health check, a read: no longer alone, they run on a worker thread too). Once
    the lock is gone the submission is stored, once, and its copy released."""
    ex, settings = patient
    _, token = ex.add_party("Patient Provider", provider=True, consumer=False)
    _, reader_token = ex.add_party("Patient Reader", provider=False, consumer=True)
    ex.add_agreement("Patient Provider", "Patient Reader", delay=0)
    headers = {"Accept": TAXII, "Content-Type": TAXII, "Authorization": f"Bearer {token}"}
    obj = indicator()
    with TestClient(create_app(settings, ex, run_scheduler=False)) as client:
        workers = client.app.state.workers  # type: ignore[attr-defined]
        cols = client.get("/exchange/collections/", headers=headers).json()["collections"]
        url = f"/exchange/collections/{next(c['id'] for c in cols if c['title'] == 'outbox')}/objects/"
        answers: list[Any] = []
        with _sqlite_writer(settings):
            started, fell_back = workers.inline, workers.fell_back
            body = orjson.dumps({"objects": [obj]})
            poster = threading.Thread(target=lambda: answers.append(client.post(url, content=body, headers=headers)))
            poster.start()
            deadline = time.monotonic() + 60  # not a timing: only so that a stalled loop fails instead of hanging
            while workers.fell_back == fell_back:  # the submission met the lock on the loop and gave up there
                poster.join(0.01)
                assert poster.is_alive(), answers
                assert time.monotonic() < deadline, "the submission never gave up on the loop"
            assert workers.inline == started + 1
            assert client.get("/health").status_code == 200  # the loop is free: the submission waits elsewhere
            assert client.get(url, headers=headers).status_code == 200
            assert poster.is_alive() and not answers, "the submission ended while the lock was held"
            assert workers.inline == started + 1  # not alone: the others ran on worker threads
        poster.join(60)
        assert not poster.is_alive()
        (r,) = answers
        assert r.status_code == 202, r.text
        assert r.json()["success_count"] == 1
        assert [o["id"] for o in client.get(url, headers=headers).json()["objects"]] == [obj["id"]]
        reader = {"Accept": TAXII, "Authorization": f"Bearer {reader_token}"}
        cols = client.get("/exchange/collections/", headers=reader).json()["collections"]
        inbox = next(c["id"] for c in cols if c["title"] == "inbox")
        assert len(client.get(f"/exchange/collections/{inbox}/objects/", headers=reader).json()["objects"]) == 1
    assert ex.verify_audit().ok
