"""The audit log wired into the exchange: every change appended, verifiable, provable offline, tamper-evident."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy
from sqlalchemy import delete, select, update

from cutout.audit.errors import ReceiptError
from cutout.audit.receipt import verify_receipt
from cutout.errors import NotFound
from cutout.store import schema as s
from cutout.store import sql
from cutout.store.sql import Tx
from tests.api.conftest import Caller, World, indicator


def _tamper(world: World, stmt: object) -> None:
    with world.exchange.store.write() as tx:
        tx.conn.execute(stmt)  # type: ignore[call-overload]


def test_every_change_is_in_the_log_and_it_verifies(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    world.provider.send([indicator(), indicator()])
    kinds = [r["kind"] for r in world.exchange.audit_rows()]
    assert kinds[:1] == ["init"]
    assert {"party-add", "agreement-add", "accept", "release", "deliver"} <= set(kinds)
    assert [r["seq"] for r in world.exchange.audit_rows()] == list(range(1, len(kinds) + 1))
    report = world.exchange.verify_audit()
    assert report.ok, report.summary()
    first = world.exchange.checkpoint()
    assert first["size"] == len(kinds)
    assert world.exchange.checkpoint() == first  # nothing new: the same checkpoint
    world.provider.send([indicator()])
    second = world.exchange.checkpoint()
    assert second["size"] > first["size"]
    report = world.exchange.verify_audit()
    assert report.ok, report.summary()
    assert report.checkpoints_verified == 2


def test_a_providers_receipt_verifies_with_only_the_key(world: World) -> None:
    status = world.provider.send([indicator()]).json()
    receipt = world.exchange.prove(status_id=status["id"])
    key = world.exchange.audit_key()
    checked = verify_receipt(receipt, key)
    event = json.loads(checked.event)
    assert event["kind"] == "accept"
    assert event["status"] == status["id"]
    # any change to the receipt is caught
    doc = json.loads(receipt)
    doc["event"] = doc["event"].replace(status["id"], "00000000-0000-4000-8000-000000000000")
    with pytest.raises(ReceiptError):
        verify_receipt(json.dumps(doc), key)


def test_a_consumers_receipt_names_nothing_of_the_provider(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    sent = indicator()
    world.provider.send([sent])
    copy = world.consumer.inbox().json()["objects"][0]
    deliver = next(r for r in world.exchange.audit_rows() if r["kind"] == "deliver")
    assert deliver["event"]["objects"] == [[copy["id"], copy["modified"]]]
    receipt = world.exchange.prove(deliver["seq"])
    assert sent["id"] not in receipt
    assert "Provider One" not in receipt
    verify_receipt(receipt, world.exchange.audit_key())


@pytest.mark.parametrize("how", ["flip", "delete", "reorder", "insert"])
def test_tampering_is_found_and_located(world: World, how: str) -> None:
    world.provider.send([indicator()])
    world.exchange.checkpoint()
    a = s.audit
    if how == "flip":
        _tamper(world, update(a).where(a.c.seq == 3).values(event=b'{"kind":"party-add","party":99}'))
        expected = "entry 3"
    elif how == "delete":
        _tamper(world, delete(a).where(a.c.seq == 2))
        expected = "seq 2"
    elif how == "reorder":
        with world.exchange.store.read() as tx:
            two, three = (tx.conn.execute(select(a).where(a.c.seq == n)).one() for n in (2, 3))
        _tamper(world, delete(a).where(a.c.seq.in_([2, 3])))
        with world.exchange.store.write() as tx:
            tx.conn.execute(s.audit.insert(), [{**two._asdict(), "seq": 3}, {**three._asdict(), "seq": 2}])
        expected = "checkpoint"
    else:  # a forged entry slipped in at position 3, the rest moved up one
        from cutout.audit import audit_row

        with world.exchange.store.read() as tx:
            rows = tx.conn.execute(select(a).where(a.c.seq >= 3).order_by(a.c.seq.desc())).all()
        with world.exchange.store.write() as tx:
            for r in rows:
                tx.conn.execute(update(a).where(a.c.seq == r.seq).values(seq=r.seq + 1))
            tx.conn.execute(s.audit.insert(), [{**audit_row("party-add", {"party": 99}, 0), "seq": 3}])
        expected = "checkpoint"
    report = world.exchange.verify_audit()
    assert not report.ok
    assert expected in report.summary()


def test_a_forked_checkpoint_is_found(world: World) -> None:
    from cutout.audit.checkpoint import sign_checkpoint

    world.provider.send([indicator()])
    first = world.exchange.checkpoint()
    world.provider.send([indicator()])
    ex = world.exchange
    with ex.store.read() as tx:
        tree = tx.audit_range()
    forged_root = bytes(32)
    note = sign_checkpoint(ex.audit_origin, tree.size, forged_root, ex.keys.signing_key, ex.audit_origin)
    with ex.store.write() as tx:
        tx.add_checkpoint(tree.size, forged_root, note, ex.clock())
    report = ex.verify_audit()
    assert not report.ok
    assert f"size {tree.size}" in report.summary()
    assert first["size"] < tree.size


def test_retention_destroys_salts_but_the_tree_still_verifies(world: World) -> None:
    world.provider.send([indicator()])
    world.exchange.checkpoint()
    world.exchange.settings = world.exchange.settings.__class__(
        **{**world.exchange.settings.__dict__, "audit_retention_days": 30}
    )
    real = world.exchange.clock
    world.exchange.clock = lambda: real() + 31 * 86_400 * 1_000_000
    assert world.exchange.forget_old() > 0
    report = world.exchange.verify_audit()
    assert report.ok, report.summary()
    assert report.retired == report.entries
    with pytest.raises(NotFound, match="past retention"):
        world.exchange.prove(2)


def test_parties_fetch_their_own_receipts_over_http(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    status = world.provider.send([indicator()]).json()
    copy = world.consumer.inbox().json()["objects"][0]
    key = world.client.get(
        "/exchange/receipts/key/", headers={"Authorization": f"Bearer {world.consumer.token}"}
    ).json()["verifier_key"]
    assert key == world.exchange.audit_key()

    def fetch(caller: Caller, ref: str) -> httpx.Response:
        token = caller.token
        return world.client.get(
            f"/exchange/receipts/{ref}/", headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
        )

    r = fetch(world.provider, status["id"])
    assert r.status_code == 200
    accepted = verify_receipt(r.text, key)
    assert json.loads(accepted.event)["status"] == status["id"]
    r = fetch(world.consumer, copy["id"])
    delivered = verify_receipt(r.text, key)
    assert json.loads(delivered.event)["objects"] == [[copy["id"], copy["modified"]]]
    assert "Provider One" not in r.text
    # nobody gets another party's receipt, and the answer is the same as for a made-up id
    assert fetch(world.consumer, status["id"]).status_code == 404
    assert fetch(world.provider, copy["id"]).status_code == 404
    assert fetch(world.outsider, copy["id"]).json() == fetch(world.outsider, "nothing").json()


def test_a_checkpoint_signed_while_the_log_is_read_does_not_make_it_look_short(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another node (here: another connection) appends entries and signs a checkpoint between the verifier's
    two reads. On PostgreSQL each statement of a read sees what is committed when it starts, so the verifier
    reads the checkpoints before the entries: whatever comes in between is only more log, never a checkpoint
    over entries it did not read (the other order reported "entries ... are missing")."""
    world.exchange.add_agreement("Provider One", "Consumer One")
    world.provider.send([indicator()])
    world.exchange.checkpoint()
    interposed: list[str] = []
    log, checkpoints = Tx.audit_log, Tx.checkpoints
    monkeypatch.setattr(sql, "AUDIT_CHUNK", 2)  # the log read in several chunks

    def meanwhile() -> None:
        if not interposed:  # after the first of the two reads, whichever it is: once
            interposed.append("write")
            world.provider.send([indicator(), indicator()])  # new entries, committed on another connection
            world.exchange.checkpoint()  # and a checkpoint over them

    def log_then(self: Tx) -> Iterator[Any]:
        rows = log(self)
        first = next(rows, None)  # the first chunk read
        meanwhile()
        if first is not None:
            yield first
            yield from rows

    def checkpoints_then(self: Tx) -> list[Any]:
        out = checkpoints(self)
        meanwhile()
        return out

    monkeypatch.setattr(Tx, "audit_log", log_then)
    monkeypatch.setattr(Tx, "checkpoints", checkpoints_then)
    report = world.exchange.verify_audit()
    monkeypatch.undo()
    assert interposed == ["write"]
    assert report.ok, report.summary()
    later = world.exchange.verify_audit()  # and all of it verifies once it is read whole
    assert later.ok and later.checkpoints_verified == 2, later.summary()


def test_the_log_is_verified_and_searched_a_chunk_at_a_time(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """``audit verify`` goes through the log ``AUDIT_CHUNK`` rows at a time: an acceptance's event names every
    object of its envelope, and a whole log held at once grew with the exchange (378 MB to verify 1,000,000
    objects' worth; docs/benchmarks.md, the twenty-third round). A receipt by status id reads none of it: the
    acceptance's entry is on the status."""
    world.exchange.add_agreement("Provider One", "Consumer One")
    statuses = [world.provider.send([indicator()]).json()["id"] for _ in range(4)]
    world.exchange.checkpoint()
    entries = len(world.exchange.audit_rows())
    assert entries > 10
    monkeypatch.setattr(sql, "AUDIT_CHUNK", 3)
    chunks: list[str] = []

    def reads(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if re.search(r"\bFROM audit\b(?!_)", statement) and "LIMIT" in statement.upper():  # not audit_checkpoints
            chunks.append(statement)

    engine = world.exchange.store.engine
    sqlalchemy.event.listen(engine, "before_cursor_execute", reads)
    try:
        report = world.exchange.verify_audit()
        assert report.ok and report.entries == entries, report.summary()
        assert len(chunks) == entries // 3 + 1  # every chunk of three, and the short (or empty) last one
        chunks.clear()
        receipt = verify_receipt(world.exchange.prove(status_id=statuses[-1]), world.exchange.audit_key())
        assert json.loads(receipt.event)["status"] == statuses[-1]
        assert chunks == []
        with pytest.raises(NotFound, match="no acceptance with that status id"):
            world.exchange.prove(status_id="00000000-0000-4000-8000-000000000000")
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", reads)


def test_receipts_come_from_the_stored_subtrees_which_verify_checks(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Past a tile (256 entries), a receipt's proof is read from the stored subtrees of the tree
    (``audit_nodes``); ``audit verify`` recomputes them, and says which is wrong or missing: a wrong one
    would give receipts that do not verify."""
    from cutout.audit import audit_row

    with world.exchange.store.write() as tx:
        tx.append_audit([audit_row("test", {"n": n}, 0) for n in range(600)])
    world.exchange.checkpoint()
    key = world.exchange.audit_key()
    for seq in (1, 300, 600):
        assert json.loads(verify_receipt(world.exchange.prove(seq), key).event)["kind"] in ("init", "test")
    report = world.exchange.verify_audit()
    assert report.ok, report.summary()

    nodes = s.audit_nodes
    with world.exchange.store.read() as tx:
        good = next(n.hash for n in tx.audit_nodes() if (n.level, n.position) == (8, 0))
    _tamper(world, update(nodes).where(nodes.c.level == 8, nodes.c.position == 0).values(hash=b"\0" * 32))
    report = world.exchange.verify_audit()
    assert not report.ok
    assert [p.kind for p in report.problems] == ["node"]
    assert "the stored tree node over entries 1–256 is not the log's" in report.summary()
    with pytest.raises(ReceiptError):
        verify_receipt(world.exchange.prove(300), key)  # its proof goes through that node

    _tamper(world, update(nodes).where(nodes.c.level == 8, nodes.c.position == 0).values(hash=good))
    _tamper(world, delete(nodes).where(nodes.c.level == 9))
    report = world.exchange.verify_audit()
    assert [p.kind for p in report.problems] == ["node"]
    assert "1 stored tree nodes are missing, the first over entries 1–512" in report.summary()
    # a missing one (appended by a node of the version before, say) is computed from the log instead
    with caplog.at_level(logging.WARNING, logger="cutout.store"):
        verify_receipt(world.exchange.prove(600), key)
    assert "the audit tree's node at level 9, position 0 is not stored: computed from the log" in caplog.text
