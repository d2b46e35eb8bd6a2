"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from cutout.audit.merkle import TILE_LEVEL, CompactRange, MerkleTree, leaf_hash
from cutout.settings import Settings
from cutout.store import Store
from cutout.store.migrate import current_revision, downgrade, head_revision, upgrade
from cutout.store.schema import metadata
from cutout.store.sql import PageQuery, id_hash


def test_migrations_match_the_declared_schema(settings: Settings) -> None:
    store = Store(settings.db_url)
    try:
        if settings.db_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(store)
        assert current_revision(store) == head_revision()
        upgrade(store)  # idempotent
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == [], "a schema change needs a migration: cd src/cutout/store && alembic revision --autogenerate"
    finally:
        store.close()


def _rows(store: Store, sql: str) -> set[tuple[object, ...]]:
    with store.engine.connect() as conn:
        return {tuple(r) for r in conn.execute(text(sql))}


def test_0004_carries_receipts_ids_and_copies_over_and_back(settings: Settings) -> None:
    """audit_refs becomes statuses.audit_seq / objects.audit_seq (an inbox's rows) and back: a party's receipt
    for a status or an inbox object is the same entry before, after, and after going back. Objects and copies
    get the hash of their id, and are found by it; going back restores the unique indexes on the ids."""
    store = Store(settings.db_url)
    try:
        if settings.db_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(store, "0003")
        with store.engine.begin() as conn:
            for pid in (1, 2):
                conn.execute(
                    text(
                        "INSERT INTO parties (id, name, provider, consumer, created, terms, grade)"
                        " VALUES (:id, :name, true, true, 0, '[]', 'F')"
                    ),
                    {"id": pid, "name": f"p{pid}"},
                )
                for kind, cid in (("inbox", pid * 10), ("outbox", pid * 10 + 1)):
                    conn.execute(
                        text(
                            "INSERT INTO collections (id, uuid, party_id, kind, last_added) VALUES (:i, :u, :p, :k, 0)"
                        ),
                        {"i": cid, "u": f"00000000-0000-4000-8000-0000000000{cid}", "p": pid, "k": kind},
                    )
            objects = [  # (pk, coll, stix id, version_us)
                (1, 11, "indicator--a", 1),  # party 1's outbox
                (2, 20, "indicator--x", 1),  # party 2's inbox: delivered twice, the second time as a new version
                (3, 20, "indicator--x", 2),
                (4, 20, "indicator--y", 1),
                (5, 20, "indicator--z", 1),  # in an inbox without a receipt (a revocation, say)
            ]
            for pk, coll, stix_id, version_us in objects:
                conn.execute(
                    text(
                        "INSERT INTO objects (pk, coll, stix_id, type, version, version_us, spec_version,"
                        " date_added, latest, body) VALUES (:pk, :c, :s, 'indicator', 'v', :v, '2.1', :pk, true, '')"
                    ),
                    {"pk": pk, "c": coll, "s": stix_id, "v": version_us},
                )
            conn.execute(
                text("INSERT INTO statuses (uuid, party_id, created, body) VALUES (:u, 1, 0, '')"), {"u": "status-1"}
            )
            refs = [(1, "status-1", 3), (2, "indicator--x", 4), (2, "indicator--y", 4), (2, "indicator--x", 7)]
            for party_id, ref, seq in refs:
                conn.execute(
                    text("INSERT INTO audit_refs (party_id, ref, seq) VALUES (:p, :r, :s)"),
                    {"p": party_id, "r": ref, "s": seq},
                )
            copies = [  # (recipient, sender, orig id, out id): one released, one held
                (2, 1, "indicator--a", "indicator--x"),
                (2, 1, "indicator--b", None),
            ]
            for copy in copies:
                conn.execute(
                    text("INSERT INTO copies (recipient_id, sender_id, orig_id, out_id) VALUES (:r, :s, :o, :out)"),
                    dict(zip(("r", "s", "o", "out"), copy, strict=True)),
                )
        expected = {(1, "status-1"): 3, (2, "indicator--x"): 7, (2, "indicator--y"): 4}
        asked = [*expected, (2, "status-1"), (1, "indicator--x"), (1, "indicator--a"), (2, "indicator--z")]

        upgrade(store)
        with store.read() as tx:
            assert {a: tx.audit_seq_of(*a) for a in asked} == {a: expected.get(a) for a in asked}
        assert _rows(store, "SELECT pk, audit_seq FROM objects") == {(1, None), (2, 7), (3, 7), (4, 4), (5, None)}
        assert _rows(store, "SELECT pk, id_hash FROM objects") == {(o[0], id_hash(o[2])) for o in objects}
        with store.read() as tx:
            assert tx.latest_objects(20, ["indicator--x", "indicator--z", "indicator--a"]).keys() == {
                "indicator--x",
                "indicator--z",
            }
            assert [r.date_added for r in tx.page(20, PageQuery(versions=("all",)), "indicator--x")] == [2, 3]
            got_copies = tx.copies(2, 1, ["indicator--a", "indicator--b", "indicator--c"])
            assert {(c.recipient_id, c.sender_id, c.orig_id, c.out_id) for c in got_copies.values()} == set(copies)
            assert [c.orig_id for c in tx.copies_by_out(2, ["indicator--x"])] == ["indicator--a"]
        assert _rows(store, "SELECT orig_id, orig_hash FROM copies") == {(c[2], id_hash(c[2])) for c in copies}

        downgrade(store, "0003")
        assert current_revision(store) == "0003"
        got = _rows(store, "SELECT party_id, ref, max(seq) FROM audit_refs GROUP BY party_id, ref")
        assert got == {(*a, seq) for a, seq in expected.items()}
        unique = {u["name"]: u["column_names"] for u in inspect(store.engine).get_unique_constraints("objects")}
        assert unique == {"uq_objects_version": ["coll", "stix_id", "version_us"]}
        assert "id_hash" not in {c["name"] for c in inspect(store.engine).get_columns("objects")}
        primary = inspect(store.engine).get_pk_constraint("copies")["constrained_columns"]
        assert primary == ["recipient_id", "sender_id", "orig_id"]
        assert _rows(store, "SELECT recipient_id, sender_id, orig_id, out_id FROM copies") == set(copies)
        upgrade(store)
        with store.read() as tx:
            assert {a: tx.audit_seq_of(*a) for a in asked} == {a: expected.get(a) for a in asked}
    finally:
        store.close()


def test_the_hash_0004_and_0007_stored_is_the_one_the_code_looks_up_by() -> None:
    """0004 and 0007 keep their own copy of ``id_hash``; changing the code's needs a migration that computes it
    again."""
    import importlib

    for name in ("0004_smaller_writes", "0007_copies_by_out_hash"):
        m = importlib.import_module(f"cutout.store.migrations.versions.{name}")
        for stix_id in ("indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "x", "é--1", ""):
            assert m.id_hash(stix_id) == id_hash(stix_id)


def test_0005_indexes_agreements_by_party_and_goes_back(settings: Settings) -> None:
    store = Store(settings.db_url)
    try:
        if settings.db_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)

        def indexes() -> set[str]:
            return {str(ix["name"]) for ix in inspect(store.engine).get_indexes("agreements")}

        upgrade(store, "0004")
        assert not indexes() & {"ix_agreements_provider", "ix_agreements_consumer"}
        upgrade(store, "0005")
        assert {"ix_agreements_provider", "ix_agreements_consumer"} <= indexes()
        downgrade(store, "0004")
        assert not indexes() & {"ix_agreements_provider", "ix_agreements_consumer"}
        upgrade(store)
        assert current_revision(store) == head_revision()
    finally:
        store.close()


def test_0007_finds_copies_by_a_hash_of_the_readers_id_and_goes_back(settings: Settings) -> None:
    """Every released copy gets the hash of its reader's id and is found by it; held copies stay out of the
    index; going back restores the index on the ids."""
    store = Store(settings.db_url)
    try:
        if settings.db_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)

        def index_columns() -> list[str]:
            (found,) = [ix for ix in inspect(store.engine).get_indexes("copies") if ix["name"] == "ix_copies_out"]
            return [str(c) for c in found["column_names"]]

        upgrade(store, "0006")
        assert index_columns() == ["recipient_id", "out_id"]
        copies = [  # (recipient, sender, orig id, out id): two released to one reader, one to another, one held
            (2, 1, "indicator--a", "indicator--x"),
            (2, 1, "indicator--b", "indicator--y"),
            (3, 1, "indicator--a", "indicator--w"),
            (2, 1, "indicator--c", None),
        ]
        with store.engine.begin() as conn:
            for r, snd, orig, out in copies:
                conn.execute(
                    text(
                        "INSERT INTO copies (recipient_id, sender_id, orig_id, orig_hash, out_id)"
                        " VALUES (:r, :s, :o, :h, :out)"
                    ),
                    {"r": r, "s": snd, "o": orig, "h": id_hash(orig), "out": out},
                )
        upgrade(store, "0007")
        assert index_columns() == ["recipient_id", "out_hash"]
        assert _rows(store, "SELECT orig_id, out_id, out_hash FROM copies") == {
            (orig, out, None if out is None else id_hash(out)) for _, _, orig, out in copies
        }
        # found by the hash of their reader's id (the store's own reads need the newest schema: see below)
        hashes = ", ".join(str(id_hash(i)) for i in ("indicator--x", "indicator--y", "indicator--w", "indicator--c"))
        assert _rows(store, f"SELECT orig_id FROM copies WHERE recipient_id = 2 AND out_hash IN ({hashes})") == {
            ("indicator--a",),
            ("indicator--b",),
        }
        downgrade(store, "0006")
        assert index_columns() == ["recipient_id", "out_id"]
        assert "out_hash" not in {c["name"] for c in inspect(store.engine).get_columns("copies")}
        assert _rows(store, "SELECT orig_id, out_id FROM copies WHERE recipient_id = 2 AND out_id IS NOT NULL") == {
            ("indicator--a", "indicator--x"),
            ("indicator--b", "indicator--y"),
        }
        upgrade(store)
        assert current_revision(store) == head_revision()
        with store.read() as tx:
            found = tx.copies_by_out(2, ["indicator--x", "indicator--y", "indicator--w", "indicator--c"])
            assert sorted(c.orig_id for c in found) == ["indicator--a", "indicator--b"]
            assert [c.recipient_id for c in tx.copies_by_out(3, ["indicator--w"])] == [3]
    finally:
        store.close()


def test_0008_indexes_objects_by_id_hash_alone_and_goes_back(settings: Settings) -> None:
    store = Store(settings.db_url)
    try:
        if settings.db_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)

        def index_columns() -> list[str]:
            (found,) = [ix for ix in inspect(store.engine).get_indexes("objects") if ix["name"] == "ix_objects_id"]
            return [str(c) for c in found["column_names"]]

        upgrade(store, "0007")
        assert index_columns() == ["coll", "id_hash", "date_added"]
        upgrade(store, "0008")
        assert index_columns() == ["coll", "id_hash"]
        downgrade(store, "0007")
        assert index_columns() == ["coll", "id_hash", "date_added"]
        upgrade(store)
        assert current_revision(store) == head_revision()
    finally:
        store.close()


def test_0009_puts_every_row_in_the_large_level_of_its_ids_indexes_and_goes_back(settings: Settings) -> None:
    """Rows there before 0009 are in the large level of each ids index (``fresh`` false) and found by id through
    it; going back restores the one index each, on the same columns."""
    store = Store(settings.db_url)
    try:
        if settings.db_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)

        def indexes(table: str) -> dict[str, list[str]]:
            found = inspect(store.engine).get_indexes(table)
            return {str(ix["name"]): [str(c) for c in ix["column_names"]] for ix in found}

        upgrade(store, "0008")
        stix_id = "indicator--00000000-0000-4000-8000-000000000001"
        with store.engine.begin() as conn:
            conn.execute(text("INSERT INTO collections (uuid, party_id, kind, last_added) VALUES ('c', 1, 'inbox', 5)"))
            conn.execute(
                text(
                    "INSERT INTO objects (coll, stix_id, id_hash, type, version, version_us, spec_version, date_added,"
                    " latest, body) VALUES (1, :i, :h, 'indicator', 'v', 1, '2.1', 5, :t, :b)"
                ),
                {"i": stix_id, "h": id_hash(stix_id), "t": True, "b": b"{}"},
            )
            conn.execute(
                text(
                    "INSERT INTO copies (recipient_id, sender_id, orig_id, orig_hash, out_id, out_hash)"
                    " VALUES (1, 2, 'indicator--a', :h, 'indicator--x', :o)"
                ),
                {"h": id_hash("indicator--a"), "o": id_hash("indicator--x")},
            )
        upgrade(store, "0009")
        assert indexes("objects")["ix_objects_id"] == indexes("objects")["ix_objects_id_fresh"] == ["coll", "id_hash"]
        copies = indexes("copies")
        assert copies["ix_copies_orig"] == copies["ix_copies_orig_fresh"] == ["recipient_id", "sender_id", "orig_hash"]
        assert copies["ix_copies_out"] == copies["ix_copies_out_fresh"] == ["recipient_id", "out_hash"]
        assert _rows(store, "SELECT stix_id, fresh FROM objects") == {(stix_id, False)}
        assert _rows(store, "SELECT orig_id, fresh FROM copies") == {("indicator--a", False)}
        with store.read() as tx:
            assert tx.fresh_rows() == 0
            assert [r.stix_id for r in tx.page(1, PageQuery(), stix_id)] == [stix_id]
            assert [c.orig_id for c in tx.copies_by_out(1, ["indicator--x"])] == ["indicator--a"]
            assert list(tx.copies(1, 2, ["indicator--a"])) == ["indicator--a"]
        downgrade(store, "0008")
        assert indexes("objects")["ix_objects_id"] == ["coll", "id_hash"]
        assert not {"ix_objects_id_fresh", "ix_copies_orig_fresh", "ix_copies_out_fresh"} & {
            *indexes("objects"),
            *indexes("copies"),
        }
        assert indexes("copies")["ix_copies_orig"] == ["recipient_id", "sender_id", "orig_hash"]
        assert indexes("copies")["ix_copies_out"] == ["recipient_id", "out_hash"]
        for table in ("objects", "copies"):
            assert "fresh" not in {c["name"] for c in inspect(store.engine).get_columns(table)}
        assert _rows(store, "SELECT stix_id FROM objects") == {(stix_id,)}
        upgrade(store)
        assert current_revision(store) == head_revision()
    finally:
        store.close()


def test_0010_stores_the_audit_trees_subtrees_of_the_log_there_is_and_goes_back(settings: Settings) -> None:
    """The subtrees 0010 computes from the commitments (more than one batch of them) are the tree's, as the code
    would have stored them appending, and a proof read from them is the whole tree's; going back drops them."""
    store = Store(settings.db_url)
    try:
        if settings.db_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(store, "0009")
        commitments = [hashlib.sha256(b"entry %d" % i).digest() for i in range(10_300)]
        with store.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO audit (seq, at, kind, commitment) VALUES (:s, 1, 'test', :c)"),
                [{"s": i + 1, "c": c} for i, c in enumerate(commitments)],
            )
        upgrade(store, "0010")
        leaves = [leaf_hash(c) for c in commitments]
        tree, appended, noted = MerkleTree(leaves), CompactRange(), []
        for h in leaves:
            appended.append(h, noted, TILE_LEVEL)
        stored = _rows(store, "SELECT level, position, hash FROM audit_nodes")
        assert {(level, position, bytes(h)) for level, position, h in stored} == {tuple(n) for n in noted}
        assert len(noted) == sum(len(leaves) >> level for level in range(TILE_LEVEL, 14))
        with store.read() as tx:
            for index in (0, 4_000, 10_299):
                assert tx.audit_proof(index, len(leaves)) == tree.inclusion_proof(index)
        downgrade(store, "0009")
        assert "audit_nodes" not in inspect(store.engine).get_table_names()
        upgrade(store)
        assert current_revision(store) == head_revision()
    finally:
        store.close()


def test_0011_records_the_types_each_collection_holds_from_its_first_object_and_goes_back(settings: Settings) -> None:
    """0011 gives each collection a row per type it holds, with the date_added of its first object of it, so a
    filter by type finds what was there before the upgrade; going back drops the table."""
    store = Store(settings.db_url)
    try:
        if settings.db_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(store, "0010")
        rows = [(1, "indicator", 5), (1, "indicator", 9), (1, "malware", 7), (2, "indicator", 3), (2, "tool", 8)]
        with store.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO parties (name, provider, consumer, created, terms) VALUES ('p', true, true, 0, '[]')")
            )
            for coll, kind in ((1, "inbox"), (2, "outbox")):
                conn.execute(
                    text("INSERT INTO collections (id, uuid, party_id, kind, last_added) VALUES (:c, :u, 1, :k, 9)"),
                    {"c": coll, "u": f"c{coll}", "k": kind},
                )
            for n, (coll, stix_type, added) in enumerate(rows):
                stix_id = f"{stix_type}--{n}"
                conn.execute(
                    text(
                        "INSERT INTO objects (coll, stix_id, id_hash, type, version, version_us, spec_version,"
                        " date_added, latest, body) VALUES (:c, :i, :h, :t, 'v', 1, '2.1', :a, true, :b)"
                    ),
                    {"c": coll, "i": stix_id, "h": id_hash(stix_id), "t": stix_type, "a": added, "b": b"{}"},
                )
        upgrade(store, "0011")
        assert _rows(store, "SELECT coll, type, spec_version, first_added FROM collection_types") == {
            (1, "indicator", "2.1", 5),
            (1, "malware", "2.1", 7),
            (2, "indicator", "2.1", 3),
            (2, "tool", "2.1", 8),
        }
        with store.read() as tx:
            assert [r.stix_id for r in tx.page(1, PageQuery(types=("indicator",)))] == ["indicator--0", "indicator--1"]
            assert [r.stix_id for r in tx.page(2, PageQuery(types=("tool", "malware")))] == ["tool--4"]
            assert tx.page(2, PageQuery(types=("malware",))) == []
            assert tx.page(1, PageQuery(spec_versions=("2.0",))) == []
        downgrade(store, "0010")
        assert "collection_types" not in inspect(store.engine).get_table_names()
        upgrade(store)
        assert current_revision(store) == head_revision()
    finally:
        store.close()
