"""What a request costs must not grow with the exchange: every statement on the paths parties take reaches its
rows through an index, never by reading a whole table, on SQLite and on PostgreSQL.

The statements are the ones the store ran (with their values) while parties did everything they do through
the API: submissions released at once and held, polls, the manifest, a status, feedback and a request for
information, a withdrawal, and the scheduler's releases. Each is then asked for its query plan:

- SQLite (``EXPLAIN QUERY PLAN``): a ``SCAN`` of a table is a read of every row, whose cost grows with the
  number of parties, agreements, objects or copies;
- PostgreSQL (``EXPLAIN``, with ``enable_seqscan`` off): the planner takes a table's few rows in a test by a
  sequential scan whatever its indexes, so it is told to avoid them; a ``Seq Scan`` it still chooses is one
  no index can replace.

A full scan of ``agreements`` on every submission (fixed by migration 0005) and a read of every party into
Python on every release run both cost milliseconds per request on an exchange of 1,000 parties; a withdrawal
read the whole copies table (a row per object and reader) while it held the write lock; the grade crowd
counted every party's grade on every release run (94 µs with 1,000 parties; migration 0006 made it a few
probes of an index).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from cutout.store import sql as store_sql
from cutout.store.sql import _ARRAY_FROM, Tx, _format_style
from tests.api.conftest import location
from tests.api.test_channel_back import Four, _intel, _opinion, _request, four  # noqa: F401 (the fixture)

#: statement -> the tables it may read whole
ALLOWED_SCANS: dict[str, set[str]] = {
    # a withdrawal, on PostgreSQL: the parties' ids, each then a probe of ix_copies_orig (SQLite probes through
    # the parties' primary key instead); the membership, not the copies (a row per object and reader)
    "SELECT * FROM copies WHERE NOT fresh AND recipient_id = ANY(ARRAY(SELECT id FROM parties)) AND sender_id = ?"
    " AND orig_hash = ? AND orig_id = ? ORDER BY recipient_id": {"parties"},
}
#: SQLite: the small level of an ids index (the rows added lately: cutout.store.schema.objects.fresh) may be read
#: whole, to count or merge its rows; it holds at most about sql.MERGE_AFTER of them, whatever the exchange holds
_SMALL_LEVEL = re.compile(r"^SCAN \w+ USING (COVERING )?INDEX \w+_fresh$")

#: a statement as the store ran it: its SQL (qmark style, as the store writes it) and its first row of values
Statement = tuple[str, tuple[Any, ...] | dict[str, Any]]


@pytest.fixture
def traced(four: Four, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Statement]]:  # noqa: F811 (the fixture)
    """Every statement the store runs from here on: those it runs on the driver's cursor (``Tx._exec`` and
    ``Tx._many``) and those it runs through SQLAlchemy (as SQLAlchemy hands them to the driver)."""
    statements: list[Statement] = []
    raw_exec, raw_many = Tx._exec, Tx._many

    def exec_(tx: Tx, sql: str, params: Sequence[Any] = ()) -> Any:
        statements.append((sql, tuple(params)))
        return raw_exec(tx, sql, params)

    def many(tx: Tx, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            statements.append((sql, tuple(rows[0])))
        raw_many(tx, sql, rows)

    def core(conn: Any, cursor: Any, sql: str, params: Any, context: Any, executemany: bool) -> None:
        first = params[0] if executemany and params else params
        statements.append((sql, first if isinstance(first, dict) else tuple(first or ())))

    monkeypatch.setattr(Tx, "_exec", exec_)
    monkeypatch.setattr(Tx, "_many", many)
    store = four.exchange.store
    # on SQLite a request alone runs on the event loop through an engine of its own (Store.no_wait)
    engines = [e for e in (store.engine, store._no_wait_engine) if e is not None]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", core)
    yield statements
    for engine in engines:
        event.remove(engine, "before_cursor_execute", core)


def test_every_statement_a_party_causes_reads_through_an_index(four: Four, traced: list[Statement]) -> None:  # noqa: F811
    four.exchange.add_agreement("Northern Watch", "Eastern Desk", area="30,44,36,48", delay=600)  # one held
    traced.clear()  # the operator's commands may read whole tables (listing parties, say); parties' requests not
    copies = _intel(four)
    (valley, *_) = [o["id"] for o in copies["c1"] if o["name"].startswith("valley")]
    r = four.c1.send([_opinion([valley], "confirmed-hit"), _request()])
    assert r.status_code == 202, r.text
    status = r.json()["id"]
    assert four.c1.get(f"/status/{status}/").status_code == 200
    outbox = four.p1.collection_id("outbox")
    assert four.p1.get(f"/collections/{outbox}/manifest/").status_code == 200
    assert four.p1.send([location(46.5, 33.5, name="valley later")]).status_code == 202
    # a batch long enough that PostgreSQL's statements name its ids in one array (``_one_of``)
    batch = [location(46.5 + i / 1000, 33.5, name=f"valley batch {i}") for i in range(_ARRAY_FROM + 6)]
    assert four.p1.send(batch).status_code == 202
    withdrawn = four.p1.send([location(46.7, 33.7, name="valley withdrawn")]).json()["successes"][0]["id"]
    assert (
        four.p1.client.delete(
            f"{four.p1.root}/collections/{outbox}/objects/{withdrawn}/", headers=four.p1._headers()
        ).status_code
        == 200
    )
    four.flush()  # the feedback and request batch, and the held copy
    assert four.inbox("p1") and four.inbox("c1", added_after="2026-01-01T00:00:00Z")
    statements = {" ".join(sql.split()): params for sql, params in traced}
    asked = [(sql, params) for sql, params in statements.items() if sql.upper().startswith(_PLANNED)]
    assert len(asked) > 30, f"only {len(asked)} statements were traced"
    assert any("FROM parties WHERE grade = ?" in sql for sql, _ in asked), "the grade crowd was not asked"
    url = four.exchange.settings.db_url
    if url.startswith("postgresql"):
        assert any("= ANY(?)" in sql for sql, _ in asked), "no statement named a batch's ids in an array"
    scans = _pg_scans(url, asked) if url.startswith("postgresql") else _sqlite_scans(url, asked)
    assert not scans, "statements that read a whole table:\n" + "\n".join(f"{v}: {k}" for k, v in scans.items())


#: statements that have a plan (not BEGIN, COMMIT, PRAGMA, SET)
_PLANNED = ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")


def _sqlite_plans(url: str, asked: list[Statement]) -> Iterator[tuple[str, list[str]]]:
    """Each statement with the steps of its plan (``EXPLAIN QUERY PLAN``)."""
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        for sql, params in asked:
            yield sql, [str(row[3]) for row in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
    finally:
        db.close()


def _pg_plans(url: str, asked: list[Statement]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each statement with its plan's root (``EXPLAIN (FORMAT JSON)``), sequential scans turned off: a test's
    tables are small, and without it any table is scanned."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("SET enable_seqscan = off")
        for sql, params in asked:
            driver_sql = sql if isinstance(params, dict) else _format_style(sql)  # the store's own are qmark
            (plan,) = db.execute("EXPLAIN (FORMAT JSON) " + driver_sql, params).fetchone()  # type: ignore[misc]
            yield sql, plan[0]["Plan"]


def _sqlite_scans(url: str, asked: list[Statement]) -> dict[str, list[str]]:
    scans: dict[str, list[str]] = {}
    for sql, plan in _sqlite_plans(url, asked):
        found = [step for step in plan if step.startswith("SCAN") and "CONSTANT ROW" not in step]
        found = [step for step in found if not _SMALL_LEVEL.match(step)]
        found = [step for step in found if step.split()[1] not in ALLOWED_SCANS.get(sql, set())]
        if found:
            scans[sql[:300]] = found
    return scans


def _pg_scans(url: str, asked: list[Statement]) -> dict[str, list[str]]:
    with psycopg.connect(url, autocommit=True) as db:
        leading = {  # each index's table and first column: a scan bounded by the index names it in its condition
            index: (table, column)
            for index, table, column in db.execute(
                "SELECT c.relname, t.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_class t ON t.oid = i.indrelid "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            ).fetchall()
        }
    scans: dict[str, list[str]] = {}
    for sql, plan in _pg_plans(url, asked):
        allowed = ALLOWED_SCANS.get(sql, set())
        found = sorted(what for table, what in _whole_reads(plan, leading) if table not in allowed)
        if found:
            scans[sql[:300]] = found
    return scans


def _whole_reads(
    node: dict[str, Any], leading: dict[str, tuple[str, str]], limited: bool = False
) -> Iterator[tuple[str, str]]:
    """The plan's reads of a whole table, as (table, what): a sequential scan, or (the planner's way round
    ``enable_seqscan``) a scan of a whole index, whose condition, if any, is not on the index's first column;
    unless a limit stops it (``min(due)`` reads one entry)."""
    kind = node.get("Node Type")
    if kind == "Seq Scan":
        yield str(node.get("Relation Name")), f"Seq Scan on {node.get('Relation Name')}"
    elif kind in ("Index Scan", "Index Only Scan", "Bitmap Index Scan") and not limited:
        index = str(node.get("Index Name"))
        table, column = leading[index]
        if not re.search(rf"\b{re.escape(column)}\b", str(node.get("Index Cond", ""))):
            yield table, f"{kind} of all of {index}"
    for child in node.get("Plans", ()):
        yield from _whole_reads(child, leading, limited or kind == "Limit")


def test_the_operators_agreement_commands_read_the_parties_once(four: Four, traced: list[Statement]) -> None:  # noqa: F811
    """Listing agreements named each one's two parties by reading every party, once per agreement (9.5 s for
    5,000 agreements among 1,000 parties); adding or ending one read every party too (2.6 ms an agreement
    there). The list reads them once; adding and ending look up the two parties they name."""

    def whole_party_reads() -> int:
        n = sum(1 for sql, _ in traced if " FROM parties" in sql and " WHERE " not in " ".join(sql.split()))
        traced.clear()
        return n

    ex = four.exchange
    for consumer in ("Harbor Command", "Eastern Desk"):
        ex.add_agreement("Northern Watch", consumer, types=["indicator"])
        assert whole_party_reads() == 0
    listed = ex.list_agreements()
    assert len(listed) == 6 and whole_party_reads() == 1
    assert ("Northern Watch", "Harbor Command") in {(a["from"], a["to"]) for a in listed}
    ended = ex.end_agreement(listed[-1]["id"])
    assert whole_party_reads() == 0
    assert (ended["from"], ended["to"]) == (listed[-1]["from"], listed[-1]["to"]) and ended["ended"] is not None


#: the indexes of objects a read that names objects by id goes through: on SQLite both levels of ix_objects_id
#: (the rows added lately, and the rest: cutout.store.schema.objects.fresh), each of which holds rows the other
#: does not, or the large one alone where the statement names it alone (the small one was empty); PostgreSQL
#: stores every row in the large one
_LEVELS = ("ix_objects_id", "ix_objects_id_fresh")
_BY_ID = re.compile(r"\bix_objects_id(_fresh)?\b")
#: a statement that names the small level (cutout.store.sql._in_both)
_SMALL_NAMED = re.compile(r"\((\w+\.)?fresh AND ")


def test_reads_that_name_objects_by_id_go_through_the_ids_index(four: Four, traced: list[Statement]) -> None:  # noqa: F811
    """A read of objects by id finds them through ``ix_objects_id`` (collection, id hash: on SQLite both its
    levels, or the large one alone where the statement names it alone because the small one is empty), never
    by reading the collection in date-added order through ``ix_objects_coll_added``: that is a search of an
    index, which the test above lets pass, yet it reads every object of the collection. SQLite's planner,
    which has no statistics, takes it whenever it spares itself sorting the few rows of an id (``Tx.page``
    asks for its ids' rows with ``+o.date_added`` for that reason)."""
    copies = _intel(four)
    inbox = four.c1.collection_id("inbox")
    one, other = (o["id"] for o in copies["c1"][:2])
    traced.clear()
    reads: list[tuple[str, dict[str, str], str]] = [  # (path, query, what the answer holds)
        (f"/collections/{inbox}/objects/{one}/", {}, one),
        (f"/collections/{inbox}/objects/{one}/", {"match[version]": "all", "added_after": "2026-01-01T00:00:00Z"}, one),
        (f"/collections/{inbox}/objects/{one}/versions/", {}, '"versions":["'),
        (f"/collections/{inbox}/objects/", {"match[id]": f"{one},{other}"}, other),
        (f"/collections/{inbox}/objects/", {"match[id]": one, "added_after": "2026-01-01T00:00:00Z"}, one),
        (f"/collections/{inbox}/objects/", {"match[id]": one, "match[version]": "first"}, one),
        (f"/collections/{inbox}/manifest/", {"match[id]": one}, one),
    ]
    for path, params, holds in reads:
        r = four.c1.get(path, params=params)
        assert r.status_code == 200 and holds in r.text, (path, params, r.text)
    assert four.p1.send([location(46.2, 33.2, name="valley again")]).status_code == 202  # add_objects' lookups
    # a withdrawal's own statements (Tx.delete_versions, written with SQLAlchemy): its "fresh = 1" was not the
    # partial indexes' condition, and each searched the whole outbox (1.2 s a withdrawal at 1,000,000 objects)
    outbox = four.p1.collection_id("outbox")
    mine = four.p1.get(f"/collections/{outbox}/objects/").json()["objects"][0]["id"]
    gone = four.p1.client.delete(f"{four.p1.root}/collections/{outbox}/objects/{mine}/", headers=four.p1._headers())
    assert gone.status_code == 200
    statements = {" ".join(sql.split()): params for sql, params in traced}
    by_id = [
        (sql, p)
        for sql, p in statements.items()
        if ("FROM objects" in sql or sql.startswith("UPDATE objects")) and "id_hash" in sql
    ]
    assert len(by_id) >= 5, f"only {len(by_id)} reads of objects by id were traced"
    assert any(sql.startswith("DELETE FROM objects") for sql, _ in by_id), "the withdrawal was not traced"
    url = four.exchange.settings.db_url
    if url.startswith("sqlite"):  # the submission's lookup at least names both levels (it adds to the small one)
        assert any(_SMALL_NAMED.search(sql) for sql, _ in by_id), "no read of objects by id named both levels"
    wrong = _pg_objects_plans(url, by_id) if url.startswith("postgresql") else _sqlite_objects_plans(url, by_id)
    assert not wrong, "reads of objects by id not through ix_objects_id:\n" + "\n".join(
        f"{v}: {k}" for k, v in wrong.items()
    )


def test_the_first_versions_of_a_whole_collection_look_each_id_up(
    four: Four,  # noqa: F811
    traced: list[Statement],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``match[version]=first`` over a whole collection asks, for each row, whether its id has an earlier
    version: through ``ix_objects_id`` (each of its levels). With both levels named in one condition, SQLite
    searched the whole collection through ``ix_objects_coll_added`` for every row instead, which the tests above
    let pass (a search by collection, not a scan): a first page of 1,000 took 380 s on an inbox of 1,000,000."""
    monkeypatch.setattr(store_sql, "MERGE_AFTER", 1 << 30)  # what is sent here stays in the small level: both named
    copies = _intel(four)
    inbox = four.c1.collection_id("inbox")
    traced.clear()
    r = four.c1.get(f"/collections/{inbox}/objects/", params={"match[version]": "first"})
    assert r.status_code == 200
    assert {o["id"] for o in copies["c1"]} <= {o["id"] for o in r.json()["objects"]}
    asked = [(q, p) for q, p in traced if "FROM objects" in q and " o2" in q]
    assert len(asked) == 1, asked
    url = four.exchange.settings.db_url
    if url.startswith("postgresql"):
        found = [sorted(set(_objects_reads(plan))) for _, plan in _pg_plans(url, asked)]
        assert found == [["ix_objects_coll_added", "ix_objects_id"]], found
        return
    assert _SMALL_NAMED.search(asked[0][0]), "the read named one level only: the test did not make both"
    ((_, plan),) = _sqlite_plans(url, asked)
    inner = [step for step in plan if re.match(r"(SEARCH|SCAN) o2\b", step)]
    assert inner and all(_BY_ID.search(step) for step in inner), plan
    assert {m.group(0) for step in inner for m in [_BY_ID.search(step)] if m} == set(_LEVELS), plan


def _sqlite_objects_plans(url: str, asked: list[Statement]) -> dict[str, list[str]]:
    """Each statement's steps that read objects other than through ``ix_objects_id`` (or by primary key)."""
    wrong: dict[str, list[str]] = {}
    for sql, plan in _sqlite_plans(url, asked):
        steps = [s for s in plan if re.match(r"(SEARCH|SCAN) (objects|o|o2)\b", s)]
        bad = [s for s in steps if not _BY_ID.search(s) and "INTEGER PRIMARY KEY" not in s]
        levels = {m.group(0) for s in steps for m in [_BY_ID.search(s)] if m}
        if bad or levels != (set(_LEVELS) if _SMALL_NAMED.search(sql) else {"ix_objects_id"}):
            wrong[sql[:300]] = bad or plan
    return wrong


def _pg_objects_plans(url: str, asked: list[Statement]) -> dict[str, list[str]]:
    """Each statement's indexes of objects other than ``ix_objects_id`` (and its sequential scans of it)."""
    wrong: dict[str, list[str]] = {}
    for sql, plan in _pg_plans(url, asked):
        used = list(_objects_reads(plan))
        bad = [u for u in used if u != "ix_objects_id"]
        if bad or not used:
            wrong[sql[:300]] = bad or ["no read of objects"]
    return wrong


def _objects_reads(node: dict[str, Any]) -> Iterator[str]:
    """The index (or "Seq Scan") each read of objects in a plan goes through."""
    index = node.get("Index Name")
    if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == "objects":
        yield "Seq Scan"
    elif isinstance(index, str) and index.startswith(("ix_objects", "objects_")):
        yield index
    for child in node.get("Plans", ()):
        yield from _objects_reads(child)
