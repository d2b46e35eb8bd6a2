"""bench.floor, the writer's share of ingest: its three ways store the same copies, and the writer way really
leaves validation and sanitizing out (else its figure would not be what docs/benchmarks.md says it is)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bench import floor
from bench.workload import Workload

from cutout.model.validate import Validator
from cutout.sanitize.engine import Sanitizer
from cutout.service import Exchange
from cutout.settings import load_settings
from cutout.store.sql import Store


def test_every_way_delivers_every_copy() -> None:
    results = floor.measure(objects=60, per=20, rounds=1, warm=40)
    assert set(results) == set(floor.WAYS)
    for runs in results.values():
        ((cpu, wall, delivered, held),) = runs
        assert cpu > 0 and wall > 0
        assert 0 < held < wall  # the submissions' write transactions, and some work outside them
        assert delivered == 100  # every object of the workload goes to the one reader


def test_the_writer_way_neither_validates_nor_sanitizes(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = list(Workload().objects(60))
    made: dict[str, tuple[dict[str, Any] | None, str]] = {}
    with floor.recording(made):
        delivered = floor.submit_all(objects, 20, warm=20).delivered
    assert delivered == 60
    assert len(made) == 60 and all(out is not None for out, _ in made.values())

    calls = {"check": 0, "sanitize": 0}
    check, sanitize = Validator.check, Sanitizer._sanitize

    def counted_check(self: Validator, obj: object) -> list[str]:
        calls["check"] += 1
        return check(self, obj)

    def counted_sanitize(self: Sanitizer, *args: Any) -> Any:
        calls["sanitize"] += 1
        return sanitize(self, *args)

    monkeypatch.setattr(Validator, "check", counted_check)
    monkeypatch.setattr(Sanitizer, "_sanitize", counted_sanitize)
    floor.submit_all(objects, 20, warm=20)
    assert calls["check"] == 120 and calls["sanitize"] == 60  # the full way: both objects of each pair
    calls.update(check=0, sanitize=0)
    with floor.without_validation(), floor.replaying(made):
        delivered = floor.submit_all(objects, 20, warm=20).delivered
    assert delivered == 60
    assert calls == {"check": 0, "sanitize": 0}


def test_the_checked_way_hands_the_copies_to_the_checking_process(verdicts: list[bool]) -> None:
    objects = list(Workload().objects(100))
    run = floor.submit_all(objects, 50, warm=50, checked=True)
    assert run.delivered == 100
    assert verdicts == [True, True]  # each envelope's copies, found valid by the child
    verdicts.clear()
    assert floor.submit_all(objects, 50, warm=50).delivered == 100
    assert verdicts == []  # the full way validates in line


def test_the_classes_are_put_back() -> None:
    check_all, sanitize, write = Validator.check_all, Sanitizer.sanitize, Store.write
    with floor.without_validation(), floor.replaying({}), floor.recording({}), floor.holding([0.0]):
        assert Validator.check_all is not check_all and Sanitizer.sanitize is not sanitize
        assert Store.write is not write
    assert Validator.check_all is check_all and Sanitizer.sanitize is sanitize and Store.write is write


def test_holding_counts_the_time_inside_write_transactions_only(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "broker", {}, environ={})
    Exchange.init(settings, "held")
    ex = Exchange.open(settings)
    now = [0.0]  # a clock the test moves: no timing

    def rolled_back() -> None:
        with ex.store.write():
            now[0] = 110.0
            raise RuntimeError("rolled back")

    try:
        held = [0.0]
        with floor.holding(held, clock=lambda: now[0]):
            now[0] = 5.0  # outside any write: not counted
            with ex.store.write():
                assert held == [0.0]
                now[0] = 7.0
            assert held == [2.0]
            now[0] = 100.0
            with ex.store.read():
                now[0] = 104.0  # a read holds no write lock
            with pytest.raises(RuntimeError, match="rolled back"):
                rolled_back()
            assert held == [8.0]  # a rolled-back transaction held the lock too (104 -> 110)
    finally:
        ex.close()
