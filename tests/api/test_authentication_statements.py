"""On PostgreSQL an authentication is one statement in autocommit: the driver sends no ``BEGIN`` before it and
the pool no ``ROLLBACK`` after it (two round trips of four), and the connection goes back to the pool as it
came, so that the transactions later made on it are transactions still."""

from __future__ import annotations

import psycopg
import pytest

from cutout.errors import AuthError
from cutout.service import Exchange

T0 = 1_790_000_000_000_000  # µs

#: the ``settings`` fixture's PostgreSQL store only (skipped, with its message, without CUTOUT_TEST_POSTGRES)
on_postgres = pytest.mark.parametrize("settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


@on_postgres
def test_an_authentication_opens_no_transaction_and_leaves_autocommit_off(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = exchange.add_party("Auth Party", provider=True, consumer=False)
    reset: list[tuple[psycopg.pq.TransactionStatus, bool]] = []
    rollback = psycopg.Connection.rollback

    def spy(self: psycopg.Connection[object]) -> None:
        reset.append((self.pgconn.transaction_status, self.autocommit))
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

    def add_and_fail() -> None:
        with exchange.store.write() as tx:
            tx.add_party("Never Added", True, False, "n" * 64, T0)
            raise RuntimeError("rolled back")

    for _ in range(3):  # on whichever pooled connection: a write that fails still leaves nothing
        with pytest.raises(RuntimeError, match="rolled back"):
            add_and_fail()
    assert [p["name"] for p in exchange.list_parties()] == ["Auth Party"]
