"""bench.wal: the WAL bytes it reports are one commit's, and its breakdown by table and index accounts for every
frame of them (docs/benchmarks.md, "The sixteenth round", rests on it)."""

from __future__ import annotations

import sqlite3

import pytest
from bench import wal


def _has_dbstat() -> bool:
    try:
        sqlite3.connect(":memory:").execute("SELECT count(*) FROM dbstat").fetchone()
    except sqlite3.Error:
        return False
    return True


@pytest.mark.skipif(not _has_dbstat(), reason="this SQLite was built without the dbstat table")
def test_every_frame_of_a_reported_commit_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    envelopes = wal.run(objects=30, per=1, consumers=1, report_every=10, page_size=4096, trees=True)
    assert [e.held for e in envelopes] == list(range(1, 31))
    reported = [e for e in envelopes if e.trees is not None]
    assert [e.held for e in reported] == [10, 20, 30]  # only reported envelopes are broken down
    for e in reported:
        assert e.trees is not None
        frames = sum(e.trees.values())
        assert e.wal_bytes == 32 + frames * (24 + 4096)  # the WAL holds that commit's frames and nothing else
        # a one-object envelope stores the original and the reader's copy, each under its id (in either level of
        # its index: cutout.store.schema.objects.fresh) and its date
        by_id = e.trees.get("ix_objects_id", 0) + e.trees.get("ix_objects_id_fresh", 0)
        assert by_id >= 1 and e.trees["ix_objects_coll_added"] >= 1
        assert "audit" in e.trees or "(new pages)" in e.trees
    out = capsys.readouterr().out
    assert "ix_objects_id" in out and out.count("MB of WAL") == 3


def test_frames_are_counted_by_their_page_number() -> None:
    header = b"\x37\x7f\x06\x82" + b"\x00\x2d\xe2\x18" + (512).to_bytes(4, "big") + bytes(20)
    frames = b"".join(n.to_bytes(4, "big") + bytes(20) + bytes(512) for n in (1, 7, 7, 9))
    counts = wal.frames_by_tree(header + frames, {1: "sqlite_schema", 7: "objects"})
    assert counts == {"sqlite_schema": 1, "objects": 2, "(new pages)": 1}
