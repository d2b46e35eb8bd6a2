"""PostgreSQL's planner gets statistics for cutout's tables as soon as they hold enough rows to matter.

Without them it takes any equality for 0.5% of a table, and finds a batch's ids (``coll = ? AND id_hash IN
(...)``) by reading the whole collection through its ``coll`` index and filtering: a cost that grows with the
collection. Autovacuum gathers them only on its next round (a minute by default), so the store does it once
per process, after it has stored ``STATISTICS_AFTER`` objects (``Store._ensure_statistics``).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import orjson
import psycopg
import psycopg.sql
import pytest
from sqlalchemy import text

from cutout.store import Store, sql
from cutout.store.sql import NewObject, _by_ids, _format_style

T0 = 1_790_000_000_000_000  # µs

#: the ``settings`` fixture's PostgreSQL store only (skipped, with its message, without CUTOUT_TEST_POSTGRES)
on_postgres = pytest.mark.parametrize("settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


def _objects(start: int, n: int) -> list[NewObject]:
    out = []
    for i in range(start, start + n):
        stix_id = f"indicator--00000000-0000-4000-8000-{i:012d}"
        # as large as the benchmark's objects, and as incompressible
        body = orjson.dumps({"id": stix_id, "pattern": hashlib.sha512(stix_id.encode()).hexdigest() * 8})
        out.append(NewObject(stix_id, "indicator", f"v{T0}", T0, "2.1", body))
    return out


def _collection(store: Store) -> Any:
    with store.write() as tx:
        pid = tx.add_party("Statistics Party", True, True, "s" * 64, T0)
        tx.add_collection("0c0c0c0c-0000-4000-8000-0000000000aa", pid, "outbox")
        return tx.collection(pid, "outbox")


def _store(store: Store, coll: Any, start: int, n: int) -> None:
    with store.write() as tx:
        tx.add_objects(coll, _objects(start, n), T0 + start)


def _analysed(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = current_schema()")
        ).fetchall()
    return {r[0] for r in rows}


def _lookup_plan(store: Store, coll_id: int, generic: bool = False) -> str:
    """The plan of the lookup every submission makes of its ids (``Tx.add_objects``), for 100 ids; with
    ``generic``, the plan of the statement prepared, made without its values, as the server may choose for a
    statement psycopg has prepared (its text is the same whatever the number of ids beyond ``_ARRAY_FROM``)."""
    ids = [f"indicator--00000000-0000-4000-8000-{i:012d}" for i in range(5000, 5100)]
    cond, params = _by_ids(False, ids, "coll = ?", (coll_id,), both=False)
    sql_text = f"SELECT pk, stix_id, version_us, latest FROM objects WHERE {cond}"
    with store.engine.connect() as conn:
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        if not generic:
            cur.execute("EXPLAIN " + _format_style(sql_text), params)
        else:
            numbered = sql_text.replace("?", "$1", 1).replace("?", "$2", 1).replace("?", "$3", 1)
            cur.execute("SET plan_cache_mode = force_generic_plan")
            cur.execute(f"PREPARE lookup (integer, bigint[], text[]) AS {numbered}")
            # the values as literals: a utility statement's parameters would have no types
            values = [psycopg.sql.Literal(v) for v in params]
            cur.execute(psycopg.sql.SQL("EXPLAIN EXECUTE lookup ({}, {}, {})").format(*values))
        plan = "\n".join(r[0] for r in cur.fetchall())
        conn.rollback()
        return plan


@on_postgres
def test_the_store_gathers_statistics_once_it_has_stored_enough_objects(exchange: Any) -> None:
    store: Store = exchange.store
    coll = _collection(store)
    _store(store, coll, 0, sql.STATISTICS_AFTER - 1)
    assert "objects" not in _analysed(store)  # not yet: autovacuum has not been round either
    _store(store, coll, sql.STATISTICS_AFTER, 1)
    assert {"objects", "audit"} - _analysed(store) == set()  # audit: the set-up's entries
    _store(store, coll, 2 * sql.STATISTICS_AFTER, 4 * sql.STATISTICS_AFTER)  # large enough for an index to pay
    for generic in (False, True):
        plan = _lookup_plan(store, coll.id, generic)
        # the ids are found through the index on (coll, id_hash), not by filtering the whole collection
        assert "ix_objects_id" in plan, plan
        assert "Index Cond: ((coll = " in plan and "id_hash = ANY" in plan.split("Index Cond:")[1], plan
        assert "Filter: (id_hash" not in plan, plan
        assert ("ANY ($2)" in plan) == generic, plan  # a generic plan names its parameters, not their values


@on_postgres
def test_it_checks_once_per_process(exchange: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store: Store = exchange.store
    coll = _collection(store)
    calls: list[None] = []
    real = Store._ensure_statistics

    def counted(self: Store) -> None:
        calls.append(None)
        real(self)

    monkeypatch.setattr(Store, "_ensure_statistics", counted)
    _store(store, coll, 0, sql.STATISTICS_AFTER)
    _store(store, coll, sql.STATISTICS_AFTER, sql.STATISTICS_AFTER)
    assert len(calls) == 1


@on_postgres
def test_a_failure_is_logged_and_the_committed_call_stands(
    exchange: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store: Store = exchange.store
    coll = _collection(store)
    monkeypatch.setattr(sql, "PLANNED_TABLES", ("objects", "no_such_table"))
    with caplog.at_level(logging.WARNING, logger="cutout.store"):
        _store(store, coll, 0, sql.STATISTICS_AFTER)
    assert "could not gather the planner's statistics" in caplog.text
    assert "no_such_table" in caplog.text
    with store.read() as tx:
        assert tx.has_object(coll.id, "indicator--00000000-0000-4000-8000-000000000000")


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_sqlite_has_nothing_to_gather(exchange: Any) -> None:
    store: Store = exchange.store
    coll = _collection(store)
    _store(store, coll, 0, sql.STATISTICS_AFTER)
    assert store._unplanned is None
