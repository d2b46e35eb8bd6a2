"""What a request costs must not grow with the exchange: every statement on the paths parties take reaches its
rows through an index, never by reading a whole table.

The statements are the ones SQLite actually ran (its trace callback, values filled in) while parties did
everything they do through the API: submissions released at once and held, polls, the manifest, a status,
feedback and a request for information, a withdrawal, and the scheduler's releases. Each is then asked for
its query plan (``EXPLAIN QUERY PLAN``): a ``SCAN`` of a table is a read of every row, whose cost grows with
the number of parties, agreements, objects or copies. A full scan of ``agreements`` on every submission
(fixed by migration 0005) and a read of every party into Python on every release run both cost milliseconds
per request on an exchange of 1,000 parties; a withdrawal read the whole copies table (a row per object and
reader) while it held the write lock.

The one scan allowed is counted in SQLite itself and returns a row per grade: the number of active providers
holding each grade (the grade crowd, read once per release run that carries intelligence).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cutout.settings import Settings, load_settings
from tests.api.conftest import location
from tests.api.test_channel_back import Four, _intel, _opinion, _request, four  # noqa: F401 (the fixture)

ALLOWED_SCANS = {
    # the grade crowd: one row per grade, counted by SQLite (tests/api/test_store_contract.py pins the answer)
    "SELECT grade, count(*) FROM parties WHERE provider = 1 AND revoked IS NULL GROUP BY grade",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """SQLite only (instead of the shared fixture's two stores): the plans are SQLite's; PostgreSQL's indexes
    are the same declared ones (tests/unit/test_migrations.py)."""
    return load_settings(tmp_path / "broker", environ={})


@pytest.fixture
def traced(four: Four) -> list[str]:  # noqa: F811 (the fixture imported above)
    statements: list[str] = []
    engine = four.exchange.store.engine
    pooled = []  # every connection the pool keeps, traced (requests here come one at a time)
    for _ in range(engine.pool.size()):  # type: ignore[attr-defined]
        conn = engine.raw_connection()
        conn.dbapi_connection.set_trace_callback(statements.append)  # type: ignore[union-attr]
        pooled.append(conn)
    for conn in pooled:
        conn.close()
    return statements


def test_every_statement_a_party_causes_reads_through_an_index(four: Four, traced: list[str]) -> None:  # noqa: F811
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
    withdrawn = four.p1.send([location(46.7, 33.7, name="valley withdrawn")]).json()["successes"][0]["id"]
    assert (
        four.p1.client.delete(
            f"{four.p1.root}/collections/{outbox}/objects/{withdrawn}/", headers=four.p1._headers()
        ).status_code
        == 200
    )
    four.flush()  # the feedback and request batch, and the held copy
    assert four.inbox("p1") and four.inbox("c1", added_after="2026-01-01T00:00:00Z")
    assert traced, "no statement was traced"

    db = sqlite3.connect(four.exchange.settings.db_url.removeprefix("sqlite:///"))
    try:
        scans: dict[str, list[str]] = {}
        for statement in dict.fromkeys(" ".join(s.split()) for s in traced):
            if not statement.upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")):
                continue  # BEGIN, COMMIT, PRAGMA
            plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + statement)]
            found = [step for step in plan if step.startswith("SCAN") and "CONSTANT ROW" not in step]
            if found and statement not in ALLOWED_SCANS:
                scans[statement[:300]] = found
    finally:
        db.close()
    assert not scans, "statements that read a whole table:\n" + "\n".join(f"{v}: {k}" for k, v in scans.items())


def test_the_operators_agreement_commands_read_the_parties_once(four: Four, traced: list[str]) -> None:  # noqa: F811
    """Listing agreements named each one's two parties by reading every party, once per agreement (9.5 s for
    5,000 agreements among 1,000 parties); adding or ending one read every party too (2.6 ms an agreement
    there). The list reads them once; adding and ending look up the two parties they name."""

    def whole_party_reads() -> int:
        n = sum(1 for s in traced if " FROM parties" in s and " WHERE " not in s)
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
