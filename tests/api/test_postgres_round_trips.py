"""On PostgreSQL an authentication and a read run their statements in autocommit: the driver sends no ``BEGIN``
before them and no ``COMMIT`` or ``ROLLBACK`` ends them (two round trips of four for a poll's authentication,
and again for its read), and each connection goes back to the pool as it came, so that the transactions
later made on it are transactions still. A read at read committed saw what is committed when each statement
starts either way."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from cutout.errors import AuthError
from cutout.service import Exchange

T0 = 1_790_000_000_000_000  # µs

#: the ``settings`` fixture's PostgreSQL store only (skipped, with its message, without CUTOUT_TEST_POSTGRES)
on_postgres = pytest.mark.parametrize("settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


def _writes_stay_all_or_nothing(exchange: Exchange, parties: list[str]) -> None:
    """A write that fails leaves nothing, on whichever pooled connection it is made: none was left in
    autocommit."""

    def add_and_fail() -> None:
        with exchange.store.write() as tx:
            tx.add_party("Never Added", True, False, "n" * 64, T0)
            raise RuntimeError("rolled back")

    for _ in range(3):
        with pytest.raises(RuntimeError, match="rolled back"):
            add_and_fail()
    assert [p["name"] for p in exchange.list_parties()] == parties


@on_postgres
def test_an_authentication_opens_no_transaction_and_leaves_autocommit_off(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = exchange.add_party("Auth Party", provider=True, consumer=False)
    reset: list[tuple[psycopg.pq.TransactionStatus, bool]] = []
    rollback = psycopg.Connection.rollback

    def spy(self: psycopg.Connection[object]) -> None:
        reset.append((psycopg.pq.TransactionStatus(self.pgconn.transaction_status), self.autocommit))
        rollback(self)

    monkeypatch.setattr(psycopg.Connection, "rollback", spy)
    for _ in range(5):
        assert exchange.authenticate(None, token).name == "Auth Party"
    with pytest.raises(AuthError):
        exchange.authenticate(None, "not a token")
    monkeypatch.undo()
    assert len(reset) == 6  # the pool reset each connection it got back...
    # ...and found no transaction to end, on a connection out of autocommit again
    assert reset == [(psycopg.pq.TransactionStatus.IDLE, False)] * 6
    _writes_stay_all_or_nothing(exchange, ["Auth Party"])


@on_postgres
def test_a_read_opens_no_transaction_and_its_connection_comes_back_as_it_was(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    exchange.add_party("Read Party", provider=True, consumer=False)
    ended: list[psycopg.pq.TransactionStatus] = []
    commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback

    def on_commit(self: psycopg.Connection[object]) -> None:
        ended.append(psycopg.pq.TransactionStatus(self.pgconn.transaction_status))
        commit(self)

    def on_rollback(self: psycopg.Connection[object]) -> None:
        ended.append(psycopg.pq.TransactionStatus(self.pgconn.transaction_status))
        rollback(self)

    monkeypatch.setattr(psycopg.Connection, "commit", on_commit)
    monkeypatch.setattr(psycopg.Connection, "rollback", on_rollback)
    for _ in range(4):
        assert [p["name"] for p in exchange.list_parties()] == ["Read Party"]
        with exchange.store.read() as tx:
            assert tx.get_meta("schema_version") is not None
            assert [r.name for r in tx.parties()] == ["Read Party"]  # two statements, in one read
    monkeypatch.undo()
    assert ended  # the reads were ended (and the pool reset their connections)...
    assert set(ended) == {psycopg.pq.TransactionStatus.IDLE}  # ...with no transaction to end
    pool: Any = exchange.store.engine.pool
    idle = [exchange.store.engine.raw_connection() for _ in range(pool.checkedin())]  # every pooled one
    try:
        assert idle and all(c.dbapi_connection is not None and not c.dbapi_connection.autocommit for c in idle)
    finally:
        for c in idle:
            c.close()
    _writes_stay_all_or_nothing(exchange, ["Read Party"])
