"""The store's contract, the same on SQLite and on PostgreSQL: what the service relies on from ``Tx``.

Each test runs against both stores (the ``settings`` fixture; PostgreSQL when CUTOUT_TEST_POSTGRES is set,
as in CI). The service's behaviour is tested through the API elsewhere; these pin the store itself, so a
rewrite of its SQL (or a new store) is held to the same answers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest
from sqlalchemy import event

from cutout.audit import audit_row
from cutout.audit.merkle import TILE_LEVEL, CompactRange, MerkleTree, leaf_hash
from cutout.errors import StoreUnavailable
from cutout.service import Exchange
from cutout.store import Store, Tx, sql
from cutout.store.sql import NewObject, PageQuery
from tests.conftest import POSTGRES_URL

T0 = 1_790_000_000_000_000  # µs


def _obj(n: int, version_us: int = T0, stix_type: str = "indicator") -> NewObject:
    """An object to add; an even-numbered one comes with its id's hash, as the exchange's rows do, and the
    store works out the others' (``sql.id_hash`` at call time: the ``hashes`` fixture's, where it is used)."""
    stix_id = f"{stix_type}--00000000-0000-4000-8000-{n:012d}"
    version = "" if stix_type == "ipv4-addr" else f"v{version_us}"
    body = orjson.dumps({"id": stix_id, "v": version_us})
    hashed = sql.id_hash(stix_id) if n % 2 == 0 else None
    return NewObject(stix_id, stix_type, version, version_us if version else 0, "2.1", body, None, hashed)


@pytest.fixture
def store(exchange: Exchange) -> Store:
    return exchange.store


@pytest.fixture
def party(store: Store) -> int:
    with store.write() as tx:
        pid = tx.add_party("Contract Party", True, True, "h" * 64, T0)
        tx.add_collection("0c0c0c0c-0000-4000-8000-000000000001", pid, "inbox")
        tx.add_collection("0c0c0c0c-0000-4000-8000-000000000002", pid, "outbox")
        return pid


@pytest.fixture(params=["blake2b", "one hash for every id"])
def hashes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects are looked up through a hash of their id that two ids may share: the answers must not change
    when every id shares one."""
    if request.param != "blake2b":
        monkeypatch.setattr(sql, "id_hash", lambda _stix_id: 7)


def _inbox(tx: Tx, party: int):  # type: ignore[no-untyped-def]
    return tx.collection(party, "inbox")


def test_providers_holding_counts_active_providers_of_a_grade_up_to_a_limit(store: Store, party: int) -> None:
    with store.write() as tx:
        a = tx.add_party("Graded A", True, False, "a" * 64, T0)
        b = tx.add_party("Graded B", True, False, "b" * 64, T0)
        reader = tx.add_party("Reader", False, True, "c" * 64, T0)  # a consumer only: not counted
        gone = tx.add_party("Gone", True, False, "d" * 64, T0)
        for pid in (a, b, gone, reader):
            tx.update_party(pid, grade="A")
        tx.update_party(gone, revoked=T0)
    with store.read() as tx:
        assert tx.providers_holding("A", 10) == 2
        assert tx.providers_holding("A", 1) == 1  # counted no further than asked
        assert tx.providers_holding("F", 10) == 1  # the contract party is a provider with the default F
        assert tx.providers_holding("B", 10) == 0


def test_parties_and_collections(store: Store, party: int) -> None:
    with store.read() as tx:
        row = tx.party_by_name("Contract Party")
        assert row is not None and row.id == party and row.provider is True and row.consumer is True
        assert row.grade == "F" and row.terms == "[]" and row.revoked is None
        assert sorted(c.kind for c in tx.collections_of(party)) == ["inbox", "outbox"]
        assert tx.collection_by_uuid("0c0c0c0c-0000-4000-8000-000000000001").kind == "inbox"  # type: ignore[union-attr]
    with store.write() as tx:
        tx.update_party(party, grade="B", terms='["x"]')
    with store.read() as tx:
        assert (tx.party_by_id(party).grade, tx.party_by_id(party).terms) == ("B", '["x"]')


def test_a_collection_is_known_by_its_id_once_committed(store: Store, party: int) -> None:
    """``collection`` reads a collection's id once and keeps it, but only once the transaction that read it
    has committed: one rolled back may have created it, and its id then goes to another collection."""
    with store.read() as tx:
        inbox = tx.collection_by_uuid("0c0c0c0c-0000-4000-8000-000000000001")
    with store.write() as tx:
        assert inbox is not None and tx.collection(party, "inbox").id == inbox.id

    def create_then_fail() -> int:
        with store.write() as tx:
            pid = tx.add_party("Gone", True, True, "g" * 64, T0)
            tx.add_collection("9a9a9a9a-0000-4000-8000-000000000001", pid, "inbox")
            tx.add_collection("9a9a9a9a-0000-4000-8000-000000000002", pid, "outbox")
            assert tx.collection(pid, "outbox").id == tx.collection_by_uuid("9a9a9a9a-0000-4000-8000-000000000002").id  # type: ignore[union-attr]
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        create_then_fail()
    with store.write() as tx:  # SQLite gives the same ids again, here to the outbox first
        pid = tx.add_party("Next", True, True, "n" * 64, T0)
        tx.add_collection("9b9b9b9b-0000-4000-8000-000000000002", pid, "outbox")
        tx.add_collection("9b9b9b9b-0000-4000-8000-000000000001", pid, "inbox")
    with store.read() as tx:
        outbox = tx.collection_by_uuid("9b9b9b9b-0000-4000-8000-000000000002")
        assert outbox is not None and tx.collection(pid, "outbox").id == outbox.id
        assert tx.collection(pid, "inbox").id == tx.collection_by_uuid("9b9b9b9b-0000-4000-8000-000000000001").id  # type: ignore[union-attr]


def test_a_party_by_token_outside_a_transaction(store: Store, party: int) -> None:
    """Authentication reads the token's party with one statement on a pooled connection: the same row as in a
    transaction, booleans as ``bool``, the latest committed state (a revocation counts at once), and each
    connection back in the pool."""
    with store.read() as tx:
        expected = tx.party_by_id(party)
    found = store.party_by_token("h" * 64)
    assert found == expected and found is not None and found.provider is True and found.consumer is True
    assert store.party_by_token("x" * 64) is None
    with store.write() as tx:
        tx.update_party(party, revoked=T0)
    assert store.party_by_token("h" * 64).revoked == T0  # type: ignore[union-attr]
    for _ in range(3 * 16):  # more than the pool holds: a connection not given back would run it dry
        store.party_by_token("h" * 64)
    with store.write() as tx:  # and nothing is left holding a transaction open
        tx.update_party(party, revoked=None)
    assert store.party_by_token("h" * 64).revoked is None  # type: ignore[union-attr]


@pytest.mark.postgres
def test_a_party_by_token_on_a_connection_the_server_drops_logs_no_traceback(
    store: Store, party: int, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL ends the session between the pool's pre-ping and the statement (a restart at that moment):
    the authentication is StoreUnavailable (the client resends), the dead connection is dropped instead of
    being reset (SQLAlchemy logs a traceback for a reset that fails: an unhandled error in the node's log), and
    the next authentication draws a live one."""
    if store.is_sqlite:
        pytest.skip("only a PostgreSQL server ends a session under the store")
    store.party_by_token("h" * 64)  # a pooled connection exists

    def end_session(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (dbapi_conn.info.backend_pid,))

    event.listen(store.engine, "checkout", end_session)
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(StoreUnavailable):
            store.party_by_token("h" * 64)
    finally:
        event.remove(store.engine, "checkout", end_session)
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert store.party_by_token("h" * 64) is not None


@pytest.mark.postgres
@contextlib.contextmanager
def _session_ended_at_reset(store: Store, caplog: pytest.LogCaptureFixture) -> Iterator[list[int]]:
    """Inside the block, the server ends a connection's session once, just before the pool gives it back (a
    PostgreSQL restart at that moment); yields the backend pids ended. The log is captured at DEBUG, and no
    record of it may carry a traceback (an unhandled error in the node's log)."""
    if store.is_sqlite:
        pytest.skip("only a PostgreSQL server ends a session under the store")
    ended: list[int] = []

    def end_session(dbapi_conn: Any, _record: Any, _state: Any) -> None:
        if not ended:  # once: the pool's reset event comes just before its rollback
            ended.append(dbapi_conn.info.backend_pid)
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (ended[0],))

    event.listen(store.engine, "reset", end_session)
    try:
        with caplog.at_level(logging.DEBUG):
            yield ended
    finally:
        event.remove(store.engine, "reset", end_session)
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


def test_a_connection_the_server_drops_once_its_work_is_done_logs_no_traceback(
    store: Store, party: int, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL ends the session of a connection given back to the pool with a transaction open (as an
    authentication's was before it ran in autocommit), while the pool gives it back (a restart at that
    moment): the pool's rollback fails. The pool replaces the connection and logs one warning line, not a
    traceback; the next call draws a live connection."""
    with _session_ended_at_reset(store, caplog) as ended:
        raw = store.engine.raw_connection()  # given back with its transaction open: the pool rolls it back
        cur = raw.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        cur.close()
        raw.close()
        assert ended
        assert store.party_by_token("h" * 64) is not None
    lost = [r for r in caplog.records if "lost while it was given back" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING


def test_an_authentication_whose_session_the_server_ends_leaves_no_trace(
    store: Store, party: int, caplog: pytest.LogCaptureFixture
) -> None:
    """An authentication runs in autocommit, so the pool has nothing to roll back when it is given back: a
    session the server ends at that moment fails nothing then, and the next authentication's ping finds the
    connection gone and draws another, without a traceback or a warning."""
    with _session_ended_at_reset(store, caplog) as ended:
        assert store.party_by_token("h" * 64) is not None
        assert ended
        for _ in range(3):
            assert store.party_by_token("h" * 64) is not None
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_add_objects_dedupes_and_orders(store: Store, party: int, hashes: None) -> None:
    with store.write() as tx:
        coll = _inbox(tx, party)
        first = tx.add_objects(coll, [_obj(1), _obj(2), _obj(1)], T0)  # the same version twice in one call
        assert first[0] is not None and first[1] is not None and first[2] is None
        again = tx.add_objects(coll, [_obj(1), _obj(1, T0 + 5), _obj(3)], T0)  # clock did not move
        assert again[0] is None and again[1] is not None and again[2] is not None
    with store.read() as tx:
        rows = tx.page(coll.id, PageQuery(versions=("all",), limit=100))
        added = [r.date_added for r in rows]
        assert added == sorted(added) and len(set(added)) == len(added) == 4  # unique, strictly increasing
        latest = tx.page(coll.id, PageQuery(limit=100))
        assert [(r.stix_id[-1], r.version) for r in latest] == [("2", f"v{T0}"), ("1", f"v{T0 + 5}"), ("3", f"v{T0}")]
        first_versions = tx.page(coll.id, PageQuery(versions=("first",), limit=100))
        assert {r.version for r in first_versions if r.stix_id.endswith("1")} == {f"v{T0}"}
        assert set(tx.latest_objects(coll.id, [_obj(1).stix_id])) == {_obj(1).stix_id}
        assert tx.has_object(coll.id, _obj(3).stix_id) and not tx.has_object(coll.id, _obj(9).stix_id)


def test_an_older_version_arriving_late_does_not_become_latest(store: Store, party: int, hashes: None) -> None:
    with store.write() as tx:
        coll = _inbox(tx, party)
        tx.add_objects(coll, [_obj(1, T0 + 10)], T0)
        tx.add_objects(coll, [_obj(1, T0)], T0 + 1)
    with store.read() as tx:
        (row,) = tx.page(coll.id, PageQuery())
        assert row.version == f"v{T0 + 10}"


def test_page_filters_and_limit(store: Store, party: int, hashes: None) -> None:
    with store.write() as tx:
        coll = _inbox(tx, party)
        objs = [_obj(i, stix_type="indicator" if i % 2 else "ipv4-addr") for i in range(10)]
        tx.add_objects(coll, objs, T0 + 10**9)  # added long after the indicators' version
    with store.read() as tx:
        every = tx.page(coll.id, PageQuery(limit=100))
        assert len(every) == 10
        assert len(tx.page(coll.id, PageQuery(limit=3))) == 4  # limit + 1: the caller learns there is more
        after = tx.page(coll.id, PageQuery(after=every[4].date_added, limit=100))
        assert [r.stix_id for r in after] == [r.stix_id for r in every[5:]]
        assert {r.stix_id for r in tx.page(coll.id, PageQuery(types=("ipv4-addr",), limit=100))} == {
            _obj(i, stix_type="ipv4-addr").stix_id for i in range(0, 10, 2)
        }
        ids = (every[1].stix_id, every[7].stix_id)
        assert [r.stix_id for r in tx.page(coll.id, PageQuery(ids=ids, limit=100))] == list(ids)
        sco = next(r for r in every if r.version == "")  # an SCO's version is its date_added (§3.4.2)
        got = tx.page(coll.id, PageQuery(versions=(str(sco.date_added),), limit=100))
        assert [r.stix_id for r in got] == [sco.stix_id]
        assert tx.unversioned_added(coll.id, [sco.stix_id, every[1].stix_id]) == {sco.stix_id: sco.date_added}
        assert tx.page(coll.id, PageQuery(spec_versions=("2.0",), limit=100)) == []


@contextlib.contextmanager
def _traced() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """The statements ``Tx._exec`` runs inside the block, with their parameters, in order."""
    statements: list[tuple[str, tuple[Any, ...]]] = []
    run = Tx._exec

    def traced(self: Tx, q: str, params: Any = ()) -> Any:
        statements.append((q, tuple(params)))
        return run(self, q, params)

    Tx._exec = traced  # type: ignore[method-assign]
    try:
        yield statements
    finally:
        Tx._exec = run  # type: ignore[method-assign]


def _rows_read(store: Store, tx: Tx, q: PageQuery, coll: int) -> tuple[list[str], int]:
    """``tx.page``'s ids, and how many rows of ``objects`` its statements read: on SQLite the virtual machine's
    steps, counted by a progress handler (a step per row read and more), on PostgreSQL the rows ``EXPLAIN
    ANALYZE`` says its scans of ``objects`` gave (before any filter dropped them)."""
    if store.is_sqlite:
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        raw = tx.conn.connection.dbapi_connection
        raw.set_progress_handler(count, 1)  # type: ignore[union-attr]
        try:
            ids = [r.stix_id for r in tx.page(coll, q)]
        finally:
            raw.set_progress_handler(None, 1)  # type: ignore[union-attr]
        return ids, steps[0]
    with _traced() as statements:
        ids = [r.stix_id for r in tx.page(coll, q)]
    read = 0
    for sql_, params in statements:
        if "FROM objects" not in sql_:
            continue
        plan = tx._exec("EXPLAIN (ANALYZE, FORMAT JSON) " + sql_, params).fetchone()[0]
        nodes = [plan[0]["Plan"]]
        while nodes:
            node = nodes.pop()
            nodes.extend(node.get("Plans", ()))
            if node.get("Relation Name") == "objects" or "objects" in str(node.get("Index Name", "")):
                read += int(node["Actual Rows"]) + int(node.get("Rows Removed by Filter", 0))
    return ids, read


def test_a_filter_by_type_reads_from_the_first_object_of_the_type_on(store: Store, party: int) -> None:
    """``match[type]`` or ``match[spec_version]`` without ``added_after``: a type the collection never held reads
    no row of it, and one that came late reads from its first object on, not every row before it
    (schema.collection_types; it read the whole collection: 316 ms for a type absent from an inbox of 1,000,000
    objects)."""
    with store.write() as tx:
        coll = _inbox(tx, party)
        tx.add_objects(coll, [_obj(i, stix_type="ipv4-addr") for i in range(300)], T0)
    with store.write() as tx:
        tx.add_objects(coll, [_obj(1000 + i, T0 + i) for i in range(3)], T0 + 10**6)
    with store.read() as tx:
        # a filter the table cannot answer reads every row of the collection: what the others are held to
        nothing, every = _rows_read(store, tx, PageQuery(versions=(str(T0 - 1),)), coll.id)
        assert nothing == []
        ids, late = _rows_read(store, tx, PageQuery(types=("indicator",)), coll.id)
        assert ids == [_obj(1000 + i).stix_id for i in range(3)]
        absent, none = _rows_read(store, tx, PageQuery(types=("malware", "tool")), coll.id)
        assert absent == []
        both, _ = _rows_read(store, tx, PageQuery(types=("malware", "indicator")), coll.id)
        assert both == ids
        older_spec, spec_none = _rows_read(store, tx, PageQuery(spec_versions=("2.0",)), coll.id)
        assert older_spec == []
        assert [r.stix_id for r in tx.page(coll.id, PageQuery(types=("indicator",), spec_versions=("2.1",)))] == ids
        assert tx.page(coll.id, PageQuery(types=("indicator",), spec_versions=("2.0",))) == []
        # added_after before the type's first object is moved up to it, after it is kept
        after = tx.page(coll.id, PageQuery(after=T0, types=("indicator",)))
        assert [r.stix_id for r in after] == ids
        last = tx.page(coll.id, PageQuery(after=after[0].date_added, types=("indicator",)))
        assert [r.stix_id for r in last] == ids[1:]
        older = tx.page(coll.id, PageQuery(types=("ipv4-addr",), limit=1000))
        assert len(older) == 300
    assert every >= 300, f"the unanswerable filter read {every}: the count does not count rows"
    assert late < every / 10, f"a filter by a type that came late read {late}; the whole collection is {every}"
    assert none < every / 10, f"a filter by types the collection never held read {none}"
    assert spec_none < every / 10, f"a filter by a spec version the collection never held read {spec_none}"
    with store.write() as tx:  # the first withdrawn: the bound stays where it was, and the rest are found
        tx.delete_versions(coll.id, _obj(1000).stix_id, PageQuery(versions=("all",)))
    with store.read() as tx:
        assert [r.stix_id for r in tx.page(coll.id, PageQuery(types=("indicator",)))] == ids[1:]


def test_a_page_by_type_is_one_statement(store: Store, party: int) -> None:
    """The bound from ``collection_types`` is read inside the page's own statement: on PostgreSQL each
    statement is a round trip, and a filter by type took two."""
    with store.write() as tx:
        coll = _inbox(tx, party)
        tx.add_objects(coll, [_obj(i, stix_type="ipv4-addr") for i in range(5)], T0)
    with store.read() as tx:
        for q, found in (
            (PageQuery(types=("ipv4-addr",)), 5),
            (PageQuery(types=("malware",)), 0),
            (PageQuery(after=T0 + 2, spec_versions=("2.1",)), 2),
        ):
            with _traced() as statements:
                assert len(tx.page(coll.id, q)) == found
            assert len(statements) == 1, statements


def test_a_type_is_known_to_a_collection_only_once_committed(store: Store, party: int) -> None:
    """The store remembers which types each collection holds, so as not to insert the row again; a type a
    rolled-back transaction brought is not remembered, and its next object still inserts the row (otherwise
    a filter by that type would find none of the collection's objects of it)."""

    def add_then_fail() -> None:
        with store.write() as tx:
            tx.add_objects(_inbox(tx, party), [_obj(1, stix_type="malware")], T0)
            assert [r.stix_id for r in tx.page(_inbox(tx, party).id, PageQuery(types=("malware",)))] == [
                _obj(1, stix_type="malware").stix_id
            ]
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        add_then_fail()
    with store.write() as tx:
        coll = _inbox(tx, party)
        tx.add_objects(coll, [_obj(2, stix_type="malware")], T0)
    with store.write() as tx:  # known now: no statement for it, and the next objects are found all the same
        tx.add_objects(coll, [_obj(3, stix_type="malware"), _obj(4, stix_type="tool")], T0)
    with store.read() as tx:
        assert [r.stix_id for r in tx.page(coll.id, PageQuery(types=("malware",)))] == [
            _obj(n, stix_type="malware").stix_id for n in (2, 3)
        ]
        assert [r.stix_id for r in tx.page(coll.id, PageQuery(types=("tool",)))] == [_obj(4, stix_type="tool").stix_id]
        held = tx._exec("SELECT type FROM collection_types WHERE coll = ? ORDER BY type", (coll.id,)).fetchall()
        assert [t for (t,) in held] == ["malware", "tool"]


def test_the_types_a_store_remembers_are_bounded(store: Store, party: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender of ever new custom types does not grow what a node remembers past ``KNOWN_TYPES``; the types it
    no longer remembers are inserted again (a no-op), and every filter by type still finds its objects."""
    monkeypatch.setattr(sql, "KNOWN_TYPES", 3)
    with store.write() as tx:
        coll = _inbox(tx, party)
    for n in range(6):
        with store.write() as tx:
            tx.add_objects(coll, [_obj(n, stix_type=f"x-custom-{n}"), _obj(100 + n, stix_type="x-custom-0")], T0)
    assert len(store._known_types) <= 3 + 2  # the last write before the bound may take it a little past
    with store.read() as tx:
        for n in range(6):
            found = [r.stix_id for r in tx.page(coll.id, PageQuery(types=(f"x-custom-{n}",)))]
            assert _obj(n, stix_type=f"x-custom-{n}").stix_id in found


def test_delete_versions_restores_the_latest(store: Store, party: int, hashes: None) -> None:
    with store.write() as tx:
        coll = _inbox(tx, party)
        tx.add_objects(coll, [_obj(1, T0), _obj(1, T0 + 1), _obj(2, T0 + 2), _obj(1, T0 + 2)], T0)
        every = PageQuery(versions=("all",), limit=100)
        assert [r.version for r in tx.page(coll.id, every, _obj(1).stix_id)] == [f"v{T0 + i}" for i in range(3)]
        assert tx.delete_versions(coll.id, _obj(1).stix_id, PageQuery(versions=("last",))) == 1
    with store.read() as tx:
        assert [(r.stix_id, r.version) for r in tx.page(coll.id, PageQuery())] == [
            (_obj(1).stix_id, f"v{T0 + 1}"),
            (_obj(2).stix_id, f"v{T0 + 2}"),
        ]


def test_copies_planned_then_recorded(store: Store, party: int, hashes: None) -> None:
    with store.write() as tx:
        other = tx.add_party("Other", True, True, "o" * 64, T0)
        tx.plan_copies(party, other, ["a--1", "b--2"])
        tx.plan_copies(party, other, ["a--1", "c--3", "c--3"])  # planning again keeps what is there
        tx.plan_copies(other, party, ["a--1"])  # the other way round: another copy
        assert sorted(tx.copies(party, other, ["a--1", "b--2", "c--3", "d--4"])) == ["a--1", "b--2", "c--3"]
        assert tx.copies(party, other, ["a--1"])["a--1"].out_id is None
        tx.record_copies(
            [
                {
                    "recipient_id": party,
                    "sender_id": other,
                    "orig_id": "a--1",
                    "out_id": "a--99",
                    "out_hash": sql.id_hash("a--99"),  # as the exchange passes it (without it: worked out)
                    "created_out": T0,
                    "modified_out": T0 + 1,
                    "origin_version_us": T0 + 2,
                }
            ]
        )
    with store.read() as tx:
        c = tx.copies(party, other, ["a--1"])["a--1"]
        assert (c.out_id, c.created_out, c.modified_out, c.origin_version_us) == ("a--99", T0, T0 + 1, T0 + 2)
        assert [r.orig_id for r in tx.copies_by_out(party, ["a--99", "zz"])] == ["a--1"]
        assert [r.recipient_id for r in tx.copies_of(other, "a--1")] == [party]
        assert [(r.recipient_id, r.out_id) for r in tx.copies_of(party, "a--1")] == [(other, None)]
        assert [c.orig_id for c in tx.copies_of(other, "b--2")] == ["b--2"]
        assert tx.conn.exec_driver_sql("SELECT count(*) FROM copies").scalar() == 4  # each planned once
        assert [c.out_id for c in tx.copies(party, other, ["b--2", "c--3"]).values()] == [None, None]


def test_a_copy_planned_and_released_in_one_transaction_is_written_once(
    store: Store, party: int, hashes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planned copies are written at release or at commit, never twice; a rollback leaves none; one planned in
    an earlier transaction is updated on release."""
    statements: list[str] = []
    run_many = Tx._many

    def many(tx: Tx, q: str, rows: object) -> None:
        if "copies" in q and rows:
            statements.append(q.split()[0])
        run_many(tx, q, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(Tx, "_many", many)

    def record(tx: Tx, recipient: int, sender: int, orig: str, out: str) -> None:
        row = {"recipient_id": recipient, "sender_id": sender, "orig_id": orig, "out_id": out}
        tx.record_copies([row | {"created_out": T0, "modified_out": T0 + 1, "origin_version_us": T0 + 2}])

    with store.write() as tx:
        other = tx.add_party("Other", True, True, "o" * 64, T0)

    def plan_then_fail() -> None:
        with store.write() as tx:
            tx.plan_copies(party, other, ["r--1"])
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        plan_then_fail()
    with store.write() as tx:
        tx.plan_copies(party, other, ["a--1", "b--2", "c--3"])
        # seen as held by the transaction that planned them, before anything is written
        assert {k: v.out_id for k, v in tx.copies(party, other, ["a--1", "b--2", "c--3", "r--1"]).items()} == {
            "a--1": None,
            "b--2": None,
            "c--3": None,
        }
        record(tx, party, other, "a--1", "a--99")
        assert tx.copies(party, other, ["a--1"])["a--1"].out_id == "a--99"
        record(tx, party, other, "a--1", "a--98")  # released again in the same transaction: an update
        tx.plan_copies(party, other, ["a--1", "b--2"])  # planning again keeps what is there
    assert statements == ["INSERT", "UPDATE", "INSERT"]  # a--1 whole, then again; b--2 and c--3 held at commit
    statements.clear()
    with store.write() as tx:
        record(tx, party, other, "b--2", "b--99")  # planned in the transaction before: an update
        tx.plan_copies(other, party, ["d--4"])
        assert [c.recipient_id for c in tx.copies_of(party, "d--4")] == [other]  # written before it is read
    assert statements == ["UPDATE", "INSERT"]
    with store.read() as tx:
        got = {c.orig_id: c.out_id for c in tx.copies(party, other, ["a--1", "b--2", "c--3", "r--1"]).values()}
        assert got == {"a--1": "a--98", "b--2": "b--99", "c--3": None}
        assert tx.conn.exec_driver_sql("SELECT count(*) FROM copies").scalar() == 4
        # found by the reader's latest id, whichever of the writes above gave it (through its hash)
        found = {c.out_id: c.orig_id for c in tx.copies_by_out(party, ["a--98", "a--99", "b--99", "c--3", "zz"])}
        assert found == {"a--98": "a--1", "b--99": "b--2"}


def _batch_rows(store: Store, reader: int, sender: int) -> dict[str, list[tuple[Any, ...]]]:
    """A batch of every kind of row a submission or release inserts, written by one party pair; the rows as
    stored, without the columns that name the pair, their collection or their place in the tables."""
    objects = [_obj(n) for n in range(20)] + [_obj(n, stix_type="ipv4-addr") for n in range(20)]
    orig = [f"indicator--batch-{n}" for n in range(40)]
    with store.write() as tx:
        coll = tx.collection(reader, "inbox")
        tx.add_objects(coll, objects, T0, audit_seq=3)
        tx.add_objects(coll, [_obj(n, T0 + 1) for n in range(20)], T0)  # newer versions: the first go not latest
        tx.plan_copies(reader, sender, orig)
        tx.record_copies(
            [
                {
                    "recipient_id": reader,
                    "sender_id": sender,
                    "orig_id": o,
                    "out_id": f"x--{o}",
                    "created_out": T0 if n % 2 else None,
                    "modified_out": T0 + n,
                    "origin_version_us": T0,
                }
                for n, o in enumerate(orig[:30])
            ]
        )  # the last ten stay held (out_id NULL), written at commit
        tx.hold(
            [
                {"due": T0 + n, "recipient_id": reader, "sender_id": sender, "source_pk": n, "kind": "intel"}
                for n in range(20)
            ]
        )
        tx.add_reviews(
            [
                {"at": T0, "recipient_id": reader, "sender_id": sender, "source_pk": n, "kind": "intel"}
                | {"preview": orjson.dumps({"n": n})}
                for n in range(20)
            ]
        )
        tx.append_audit([audit_row("test", {"n": n}, T0) for n in range(20)])
    with store.read() as tx:
        q = tx.conn.exec_driver_sql
        return {
            "objects": [
                tuple(r)
                for r in q(
                    "SELECT o.stix_id, o.id_hash, o.type, o.version, o.version_us, o.spec_version, o.latest, o.body,"
                    " o.origin, o.audit_seq, o.date_added - c.last_added FROM objects o"
                    f" JOIN collections c ON c.id = o.coll WHERE o.coll = {coll.id} ORDER BY o.date_added"
                )
            ],
            "copies": [
                tuple(r)
                for r in q(
                    "SELECT orig_id, orig_hash, out_id IS NULL, created_out, modified_out, origin_version_us"
                    f" FROM copies WHERE recipient_id = {reader} ORDER BY orig_id"
                )
            ],
            "releases": [
                tuple(r)
                for r in q(
                    "SELECT due, source_pk, kind, pool_k, epoch, review, agreement_id FROM releases"
                    f" WHERE recipient_id = {reader} ORDER BY due"
                )
            ],
            "reviews": [
                tuple(r)
                for r in q(
                    f"SELECT at, source_pk, kind, preview FROM reviews WHERE recipient_id = {reader} ORDER BY source_pk"
                )
            ],
            "audit": [
                (orjson.loads(r[1])["n"], r[0], r[1])
                for r in q("SELECT at, event FROM audit WHERE kind = 'test' ORDER BY seq")
            ],
        }


def test_a_batch_is_stored_the_same_by_copy_and_by_insert(
    store: Store, party: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a batch of ``_COPY_FROM`` rows or more goes in by ``COPY`` (``Tx._put``), fewer by an
    ``INSERT`` each: both must store the same values (bytes, booleans, NULLs, the tables' defaults; the ``COPY``
    is binary, so each column's type must be the table's). SQLite has one way, which this checks against
    itself."""
    copies: list[str] = []
    if not store.is_sqlite:
        real = psycopg.Cursor.copy

        def spy(cur: psycopg.Cursor[Any], statement: Any, *args: Any, **kw: Any) -> Any:
            copies.append(str(statement).split()[1])
            return real(cur, statement, *args, **kw)

        monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    with store.write() as tx:
        other = tx.add_party("Other", True, True, "o" * 64, T0)
        tx.add_collection("0c0c0c0c-0000-4000-8000-000000000003", other, "inbox")
        tx.add_collection("0c0c0c0c-0000-4000-8000-000000000004", other, "outbox")
    monkeypatch.setattr(sql, "_COPY_FROM", 1 << 30)
    by_insert = _batch_rows(store, party, other)
    assert copies == []
    monkeypatch.setattr(sql, "_COPY_FROM", 1)
    by_copy = _batch_rows(store, other, party)
    if not store.is_sqlite:
        assert sorted(set(copies)) == ["audit", "copies", "objects", "releases", "reviews"]
    assert by_insert.keys() == by_copy.keys()
    for table, rows in by_insert.items():
        assert len(rows) >= 20, table
        if table == "audit":  # one log: each call's twenty entries, in order
            assert [r[0] for r in by_copy[table]] == [*range(20), *range(20)], by_copy[table]
            assert by_copy[table][:20] == by_copy[table][20:] == rows
        else:
            assert by_copy[table] == rows, table


def test_releases_due_postpone_drop(store: Store, party: int) -> None:
    def row(due: int, pool_k: int = 0, agreement_id: int | None = None) -> dict[str, object]:
        return {
            "due": due,
            "recipient_id": party,
            "sender_id": party,
            "source_pk": 1,
            "kind": "intel",
            "pool_k": pool_k,
            "epoch": 60 if pool_k else 0,
            "review": False,
            "agreement_id": agreement_id,
        }

    with store.write() as tx:
        tx.hold([row(T0 + 30), row(T0 + 10, agreement_id=7), row(T0 + 20, pool_k=2)])
        assert tx.next_due() == T0 + 10
        due = tx.due(T0 + 20, 10)
        assert [r.due for r in due] == [T0 + 10, T0 + 20] and due[0].agreement_id == 7
        assert len(tx.due(T0 + 100, 1)) == 1
        assert [r.due for r in tx.pooled_due(party, T0 + 100)] == [T0 + 20]
        tx.postpone([due[0].pk], T0 + 50)
        tx.drop_releases([due[1].pk])
    with store.read() as tx:
        assert [r.due for r in tx.due(T0 + 1000, 10)] == [T0 + 30, T0 + 50]


def test_outcomes_keep_the_latest_per_consumer_and_object(store: Store, party: int) -> None:
    def oc(consumer: int, orig: str, outcome: str) -> dict[str, object]:
        return {"provider_id": party, "consumer_id": consumer, "orig_id": orig, "outcome": outcome, "at": T0}

    with store.write() as tx:
        tx.record_outcomes([oc(10, "a", "confirmed-hit"), oc(11, "a", "confirmed-hit"), oc(10, "b", "stale")])
        tx.record_outcomes([oc(10, "a", "false-positive")])
        tx.record_outcomes([])
    with store.read() as tx:
        assert tx.outcome_counts() == {party: {"confirmed-hit": 1, "false-positive": 1, "stale": 1}}


def test_statuses_belong_to_their_party(store: Store, party: int) -> None:
    with store.write() as tx:
        tx.add_status("5a5a5a5a-0000-4000-8000-000000000001", party, T0, b'{"x":1}')
    with store.read() as tx:
        assert tx.status("5a5a5a5a-0000-4000-8000-000000000001", party) == b'{"x":1}'
        assert tx.status("5a5a5a5a-0000-4000-8000-000000000001", party + 1) is None


def test_audit_appends_without_gaps_and_keeps_the_range(store: Store, party: int) -> None:
    with store.read() as tx:
        before = len(tx.audit_rows())
    with store.write() as tx:
        assert tx.append_audit([audit_row("test", {"n": 1}, T0), audit_row("test", {"n": 2}, T0)]) == [
            before + 1,
            before + 2,
        ]
    with store.write() as tx:
        assert tx.append_audit([audit_row("test", {"n": 3}, T0)]) == [before + 3]
        assert tx.append_audit([]) == []
    with store.read() as tx:
        rows = tx.audit_rows()
        assert [r.seq for r in rows] == list(range(1, before + 4))
        expected = CompactRange()
        expected.extend([leaf_hash(r.commitment) for r in rows])
        assert tx.audit_range().root() == expected.root()


def test_the_audit_trees_subtrees_are_stored_and_proofs_read_only_a_few(store: Store, party: int) -> None:
    """Every perfect subtree of a tile (256 entries) or more is stored by the transaction that completes it,
    whatever the transactions' sizes, and a proof (``audit_proof``) is the whole tree's, at the log's size and at
    an earlier checkpoint's, read from O(log n) of them and at most two tiles of commitments."""
    with store.read() as tx:
        before = len(tx.audit_rows())
    n = 0
    for batch in (1, 3, 250, 2, 1, 300, 7, 200):  # 764 entries, across tiles and within them
        with store.write() as tx:
            tx.append_audit([audit_row("test", {"n": n + i}, T0) for i in range(batch)])
        n += batch
    with store.read() as tx:
        leaves = [leaf_hash(bytes(r.commitment)) for r in tx.audit_rows()]
        stored = list(tx.audit_nodes())
    size = before + n
    assert len(leaves) == size
    tree = MerkleTree(leaves)
    assert sorted((v.level, v.position) for v in stored) == [
        (level, position) for level in range(TILE_LEVEL, size.bit_length()) for position in range(size >> level)
    ]
    assert all(v.hash == tree.subtree(v.level, v.position) for v in stored)

    for index, at in ((0, size), (300, size), (size - 1, size), (5, 513), (512, 513), (600, 700)):
        with store.read() as tx, _traced() as traced:
            assert tx.audit_proof(index, at) == tree.inclusion_proof(index, at), (index, at)
        statements = [q for q, _ in traced]
        tiles = [q for q in statements if "FROM audit " in q]
        assert len(tiles) <= 2 and all("seq > ? AND seq <= ?" in q for q in tiles), statements
        assert len(statements) - len(tiles) <= at.bit_length(), statements


def test_copies_planned_in_the_transaction_are_not_looked_up(
    store: Store, party: int, hashes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``copies`` reads the table only for ids not planned in this transaction (those have no row yet, as
    ``plan_copies`` found): a release right after its planning asks nothing of the database."""
    with store.write() as tx:
        other = tx.add_party("Other", True, True, "o" * 64, T0)
        tx.plan_copies(party, other, ["a--1"])
    looked_up: list[object] = []
    run = Tx._fetch

    def counted(tx: Tx, table: str, q: str, params: object = ()) -> object:
        if table == "copies":
            looked_up.append(params)
        return run(tx, table, q, params)  # type: ignore[arg-type]

    monkeypatch.setattr(Tx, "_fetch", counted)
    with store.write() as tx:
        tx.plan_copies(party, other, ["b--2", "c--3"])
        assert set(tx.copies(party, other, ["b--2", "c--3"])) == {"b--2", "c--3"}
        assert looked_up == []
        found = tx.copies(party, other, ["a--1", "b--2", "z--9"])  # a--1 from the one before; z--9 unknown
        assert set(found) == {"a--1", "b--2"} and found["a--1"].out_id is None
        assert len(looked_up) == 1 and "b--2" not in looked_up[0]  # type: ignore[operator]


def test_a_transaction_writes_the_audit_range_once_and_a_rollback_keeps_the_old_one(
    store: Store, party: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends in one transaction extend the range it holds (``audit_range`` sees them); the range's row is
    written once, before commit; a transaction rolled back leaves the range and the log as they were."""
    with store.read() as tx:
        before = tx.audit_range()
    writes: list[str] = []
    run = Tx._exec

    def counted(tx: Tx, q: str, params: object = ()) -> object:
        if "meta" in q and not q.startswith("SELECT"):
            writes.append(q.split()[0])
        return run(tx, q, params)  # type: ignore[arg-type]

    monkeypatch.setattr(Tx, "_exec", counted)
    with store.write() as tx:
        seqs = [tx.append_audit([audit_row("test", {"n": n}, T0)])[0] for n in range(5)]
        assert seqs == list(range(before.size + 1, before.size + 6))
        assert tx.audit_range().size == before.size + 5
        assert writes == []  # not yet: once, at the end
    assert len(writes) == 1
    with store.read() as tx:
        after = tx.audit_range()
        expected = CompactRange()
        expected.extend([leaf_hash(r.commitment) for r in tx.audit_rows()])
    assert after.size == before.size + 5 and after.root() == expected.root()

    def append_then_fail() -> None:
        with store.write() as tx:
            tx.append_audit([audit_row("test", {"n": 9}, T0)])
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        append_then_fail()
    with store.write() as tx:
        assert tx.append_audit([audit_row("test", {"n": 10}, T0)]) == [after.size + 1]
    with store.read() as tx:
        assert [r.seq for r in tx.audit_rows()] == list(range(1, after.size + 2))


def test_audit_rows_appended_in_a_transaction_are_read_back_in_it(store: Store, party: int) -> None:
    """Appended rows are written together before the commit, and before any read of the log in between."""
    with store.read() as tx:
        before = len(tx.audit_rows())
    with store.write() as tx:
        first, second = tx.append_audit([audit_row("test", {"n": 1}, T0), audit_row("test", {"n": 2}, T0 + 5)])
        row = tx.audit_row(second)
        assert row is not None and row.kind == "test" and b'"n":2' in bytes(row.event)
        (third,) = tx.append_audit([audit_row("test", {"n": 3}, T0 + 10)])
        assert [r.seq for r in tx.audit_rows()][-3:] == [first, second, third]
        assert third == before + 3
        leaves = [leaf_hash(bytes(r.commitment)) for r in tx.audit_rows()]
        assert tx.audit_proof(third - 1, third) == MerkleTree(leaves).inclusion_proof(third - 1)
        (fourth,) = tx.append_audit([audit_row("test", {"n": 4}, T0)])
        assert tx.forget_audit_before(T0 + 1) >= 2  # the first and the fourth, not yet written a moment ago
    with store.read() as tx:
        rows = {r.seq: r for r in tx.audit_rows()}
        assert rows[first].salt is None and rows[fourth].salt is None and rows[fourth].event is None
        assert rows[second].salt is not None and rows[third].salt is not None


def test_receipts_are_found_by_status_and_by_delivered_object(store: Store, party: int, hashes: None) -> None:
    status = "5a5a5a5a-0000-4000-8000-000000000002"
    with store.write() as tx:
        a, b, c = tx.append_audit([audit_row("test", {"n": n}, T0) for n in range(3)])
        tx.add_status(status, party, T0, b"{}", audit_seq=a)
        inbox, outbox = _inbox(tx, party), tx.collection(party, "outbox")
        tx.add_objects(inbox, [_obj(1), _obj(2)], T0, audit_seq=b)
        tx.add_objects(outbox, [_obj(3)], T0)  # a submission's objects: their receipt is the status's
    with store.read() as tx:
        assert tx.audit_seq_of(party, status) == a
        assert tx.audit_seq_of(party + 1, status) is None
        assert tx.audit_seq_of(party, _obj(1).stix_id) == b
        assert tx.audit_seq_of(party, _obj(3).stix_id) is None
        assert tx.audit_seq_of(party, "no-such-ref") is None
    with store.write() as tx:
        inbox = _inbox(tx, party)
        tx.add_objects(inbox, [_obj(1, T0 + 1)], T0 + 1)  # a version without a delivery (a revocation)
        # delivered again, a version already there: the latest delivery names it, so its receipt is that one
        tx.add_objects(inbox, [_obj(2)], T0 + 2, audit_seq=c)
    with store.read() as tx:
        assert tx.audit_seq_of(party, _obj(1).stix_id) == b
        assert tx.audit_seq_of(party, _obj(2).stix_id) == c


def _released(recipient: int, sender: int, orig_id: str, out_id: str) -> dict[str, Any]:
    return {
        "recipient_id": recipient,
        "sender_id": sender,
        "orig_id": orig_id,
        "out_id": out_id,
        "created_out": T0,
        "modified_out": T0,
        "origin_version_us": T0,
    }


def test_rows_are_found_in_either_level_of_their_index(
    store: Store, party: int, hashes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the rows added lately are in small indexes of their own until ``Tx.merge_fresh`` moves them
    into the large ones (``cutout.store.schema.objects.fresh``): every read by id finds rows in either level,
    and an object's versions split between them; a copy held in the large level is released in place. On
    PostgreSQL every row is stored merged, and the same reads give the same answers."""
    monkeypatch.setattr(sql, "MERGE_AFTER", 1 << 30)  # no merge but this test's own
    monkeypatch.setattr(sql, "FRESH_FROM", 0)  # rows added to the small level from the first
    sqlite = store.is_sqlite
    one, two, three = (_obj(n).stix_id for n in (1, 2, 3))
    with store.write() as tx:
        coll = _inbox(tx, party)
        other = tx.add_party("Other", True, True, "o" * 64, T0)
        tx.add_objects(coll, [_obj(1, T0), _obj(2, T0)], T0)
        tx.plan_copies(party, other, ["a--1", "b--2"])
        tx.record_copies([_released(party, other, "a--1", "a--91")])  # b--2 stays held
    with store.write() as tx:
        assert tx.fresh_rows() == (4 if sqlite else 0)  # two objects, two copies
        assert tx.merge_fresh() == (4 if sqlite else 0)
        assert tx.fresh_rows() == 0
    with store.read() as tx:  # the small level empty: reads name the large one alone
        assert tx.has_object(coll.id, two) and sorted(tx.copies(party, other, ["a--1", "b--2"])) == ["a--1", "b--2"]
        assert [r.orig_id for r in tx.copies_by_out(party, ["a--91"])] == ["a--1"]
    with store.write() as tx:
        tx.add_objects(coll, [_obj(1, T0 + 1), _obj(3, T0)], T0 + 1)  # a newer version of a merged object
        tx.plan_copies(party, other, ["a--1", "c--3"])  # a--1 is there (merged): not planned again
        tx.record_copies([_released(party, other, "b--2", "b--92"), _released(party, other, "c--3", "c--93")])
        assert tx.fresh_rows() == (3 if sqlite else 0)  # two objects and c--3's copy; b--2's was there
    with store.read() as tx:
        every = PageQuery(versions=("all",), limit=100)
        assert [r.version for r in tx.page(coll.id, every, one)] == [f"v{T0}", f"v{T0 + 1}"]
        first = PageQuery(versions=("first",), limit=100)
        assert [r.version for r in tx.page(coll.id, first, one)] == [f"v{T0}"]
        by_ids = tx.page(coll.id, PageQuery(ids=(one, two, three), limit=100))
        assert [(r.stix_id, r.version) for r in by_ids] == [(two, f"v{T0}"), (one, f"v{T0 + 1}"), (three, f"v{T0}")]
        assert tx.latest_objects(coll.id, [one, two])[one].version == f"v{T0 + 1}"
        assert tx.has_object(coll.id, two) and tx.has_object(coll.id, three)
        assert tx.unversioned_added(coll.id, [one, two, three]) == {}  # none is an SCO
        copies = tx.copies(party, other, ["a--1", "b--2", "c--3"])
        assert {k: c.out_id for k, c in copies.items()} == {"a--1": "a--91", "b--2": "b--92", "c--3": "c--93"}
        found = tx.copies_by_out(party, ["a--91", "b--92", "c--93"])
        assert sorted(r.orig_id for r in found) == ["a--1", "b--2", "c--3"]
        assert [r.out_id for r in tx.copies_of(other, "a--1")] == ["a--91"]
        assert [r.out_id for r in tx.copies_of(other, "c--3")] == ["c--93"]
        assert tx.conn.exec_driver_sql("SELECT count(*) FROM copies").scalar() == 3  # each once
    with store.write() as tx:
        assert tx.delete_versions(coll.id, one, PageQuery(versions=("last",))) == 1  # the fresh one
    with store.read() as tx:
        assert [r.version for r in tx.page(coll.id, PageQuery(), one)] == [f"v{T0}"]  # the merged one is latest


def _add(store: Store, party: int, first: int, n: int) -> None:
    with store.write() as tx:
        tx.add_objects(_inbox(tx, party), [_obj(i) for i in range(first, first + n)], T0)


def _fresh(store: Store) -> int:
    with store.read() as tx:
        return tx.fresh_rows()


def test_the_store_merges_the_rows_added_lately_once_they_are_many(
    store: Store, party: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite: rows go to the small indexes once the objects table holds ``FRESH_FROM`` rows; the commit that
    takes those to ``MERGE_AFTER`` rows is followed by a merge; a store opened anew (another process) counts
    the rows already there at its first write; a merge that fails is logged, and leaves the commit before it
    and every row found, to be merged after a later commit; a call that may not wait (``Store.no_wait``) leaves
    the merge to a thread."""
    monkeypatch.setattr(sql, "MERGE_AFTER", 5)
    monkeypatch.setattr(sql, "FRESH_FROM", 2)
    if not store.is_sqlite:
        _add(store, party, 0, 6)
        assert _fresh(store) == 0  # every row stored merged
        return
    _add(store, party, 0, 2)
    assert _fresh(store) == 0  # the table was smaller than FRESH_FROM
    _add(store, party, 2, 3)
    assert _fresh(store) == 3
    _add(store, party, 5, 2)
    assert _fresh(store) == 0  # merged
    _add(store, party, 7, 4)
    assert _fresh(store) == 4
    again = Store(store.url)
    try:
        _add(again, party, 11, 1)  # 4 there + 1: counted, then merged
        assert _fresh(again) == 0
    finally:
        again.close()

    def broken(tx: Tx) -> int:
        raise sql.sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as m:
        m.setattr(Tx, "merge_fresh", broken)
        with caplog.at_level(logging.WARNING, logger="cutout.store"):
            _add(store, party, 12, 5)
        assert "could not merge the rows added lately into the large indexes: disk I/O error" in caplog.text
        assert _fresh(store) == 5
    with store.read() as tx:
        ids = [_obj(i).stix_id for i in range(17)]
        assert len(tx.latest_objects(_inbox(tx, party).id, ids)) == 17
    _add(store, party, 17, 1)  # the next commit tries again
    assert _fresh(store) == 0

    # a call that may not wait (a request on the event loop) leaves the merge to a thread of its own
    merged_on: list[threading.Thread] = []
    merge = Tx.merge_fresh

    def recorded(tx: Tx) -> int:
        merged_on.append(threading.current_thread())
        return merge(tx)

    monkeypatch.setattr(Tx, "merge_fresh", recorded)
    with store.no_wait():
        _add(store, party, 18, 5)
    store.wait_for_merge()
    assert len(merged_on) == 1 and merged_on[0] is not threading.current_thread()
    assert _fresh(store) == 0
    _add(store, party, 23, 5)  # and one that may wait merges before it returns
    assert merged_on[1:] == [threading.current_thread()] and _fresh(store) == 0
