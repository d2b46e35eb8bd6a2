"""bench.scale: the exchanges it fills hold what it says, every object released, and a turn measures the
exchange it serves, the other requests parties make included (docs/benchmarks.md, "The twenty-third round"
and "The twenty-fourth round", rest on it)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
from bench import scale
from bench.workload import Workload


def test_each_pass_gives_every_id_anew_and_keeps_the_markings() -> None:
    objects = Workload().objects(20)
    first, second = (orjson.loads(body) for body in scale.passes(objects, 2))
    ids = [o["id"] for o in first + second]
    assert len(set(ids)) == len(ids) == 40
    for before, after in zip(objects, second, strict=True):
        assert after["id"] != before["id"]
        assert after["id"].partition("--")[2].split("-", 1)[1] == before["id"].partition("--")[2].split("-", 1)[1]
        assert after.get("object_marking_refs") == before.get("object_marking_refs")
    refs = {r for o in second for k, v in o.items() if k.endswith("_ref") and isinstance(v, str) for r in [v]}
    assert refs and refs <= {o["id"] for o in second}  # a pass's references meet its own objects


def test_a_filled_exchange_is_served_and_measured(tmp_path: Path) -> None:
    folder = tmp_path / "exchange"
    steps = scale.fill(folder, objects=60, per=10, base=20, steps=3)
    assert [s.held for s in steps] == [20, 40, 60] and all(s.rate > 0 for s in steps)
    with sqlite3.connect(folder / "cutout.db") as db:
        by_kind = dict(
            db.execute("SELECT c.kind, count(*) FROM objects o JOIN collections c ON c.id = o.coll GROUP BY c.kind")
        )
    assert by_kind == {"outbox": 60, "inbox": 60}  # every object stored once and released once
    turn = scale.serve(folder, 60, samples=3, seed=7)
    assert turn.size == 60 and turn.start_up > 0
    assert len(turn.latency.samples) == 3
    assert turn.fetch.objects == 66 and turn.fetch.peak_rss > 0  # the inbox, and 3 + 3 warm-up samples
    assert list(turn.paths) == list(scale.PATHS)
    assert all(0 < t < scale.PATH_TIMEOUT for t in turn.paths.values()), turn.paths
    turn = scale.serve(folder, 60, samples=3, seed=8)  # the exchange is still there, and takes new objects
    assert turn.fetch.objects == 72  # the first turn's withdrawals revoked copies: new versions, not new objects
    with sqlite3.connect(folder / "cutout.db") as db:
        (outbox,) = db.execute(
            "SELECT count(*) FROM objects o JOIN collections c ON c.id = o.coll WHERE c.kind = 'outbox'"
        ).fetchone()
    assert outbox == 60 + 12 - 2 * scale.TRIES  # each turn withdrew three of the provider's objects
