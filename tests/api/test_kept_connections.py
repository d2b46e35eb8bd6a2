"""On SQLite the store keeps a connection checked out between calls (``Store._connection``): what it keeps must
be exactly what a fresh checkout would give, and nothing it keeps may hold a transaction or a lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutout.service import Exchange
from cutout.settings import load_settings
from cutout.store import Store, sql


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    settings = load_settings(tmp_path / "broker", environ={})
    Exchange.init(settings, "kept connections")
    ex = Exchange.open(settings)
    yield ex.store
    ex.close()


def _write_lock_free(store: Store) -> bool:
    """Whether another connection could take SQLite's write lock right now."""
    other = sqlite3.connect(store.engine.url.database or "", timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def _kept(store: Store) -> list[object]:
    return store._kept[store.engine]  # type: ignore[return-value]


def test_a_connection_kept_after_a_write_reads_without_the_write_lock(store: Store) -> None:
    with store.write() as tx:
        tx.set_meta("kept", "1")
    assert len(_kept(store)) == 1
    kept = _kept(store)[0]
    with store.read() as tx:
        assert tx.conn is kept  # taken back, not checked out anew
        assert tx.get_meta("kept") == "1"
        assert _write_lock_free(store)  # BEGIN DEFERRED, though the connection's last transaction wrote
    with store.write() as tx:
        assert tx.conn is kept
        assert not _write_lock_free(store)  # and a write takes it again
    assert _write_lock_free(store)


def test_a_call_that_raised_gives_its_connection_back_rolled_back(store: Store) -> None:
    with store.read():
        pass
    before = list(_kept(store))

    def write_then_fail() -> None:
        with store.write() as tx:
            tx.set_meta("gone", "1")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert all(c not in _kept(store) for c in before)  # closed: back to the pool, which rolled it back
    assert _write_lock_free(store)
    with store.read() as tx:
        assert tx.get_meta("gone") is None


def test_a_connection_left_in_a_transaction_is_not_kept(store: Store) -> None:
    with store._connection() as conn:
        conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        left = conn
    assert left not in _kept(store)
    assert _write_lock_free(store)  # the pool rolled it back


def test_it_keeps_no_more_than_the_pool_and_gives_every_one_back_on_close(store: Store) -> None:
    wanted = sql.KEPT_CONNECTIONS + 4
    barrier = threading.Barrier(wanted, timeout=30)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            with store.read() as tx:
                barrier.wait()  # all of them in a transaction at once: as many connections
                tx.get_meta("identity")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(wanted)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(_kept(store)) == sql.KEPT_CONNECTIONS
    assert store.engine.pool.checkedout() == sql.KEPT_CONNECTIONS  # type: ignore[attr-defined]
    assert store.party_by_token("no such hash") is None  # an authentication takes a kept one too
    assert store.engine.pool.checkedout() == sql.KEPT_CONNECTIONS  # type: ignore[attr-defined]
    store.close()
    assert _kept(store) == []
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
