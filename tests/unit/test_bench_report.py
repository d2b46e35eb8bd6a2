"""bench: where an ingest run's CPU went, split between cutout's serving process, its checking process and the
client, and the bounds the table draws from it (docs/benchmarks.md reads the ingest misses from that row)."""

from __future__ import annotations

from typing import Any

import pytest
from bench import report
from bench.measure import CpuMeter, Timed
from bench.run import Sizes


class _FakeServer:
    """CPU clocks that move by set amounts, as /proc's would over a run (``own`` is the serving process's)."""

    def __init__(self, total: list[float], own: list[float]) -> None:
        self._total, self._own = iter(total), iter(own)

    def cpu(self) -> float:
        return next(self._total)

    def own_cpu(self) -> float:
        return next(self._own)


def test_the_meter_keeps_the_serving_process_apart_from_what_it_started() -> None:
    server: Any = _FakeServer(total=[10.0, 11.2], own=[6.0, 6.7])
    with CpuMeter(server) as meter:
        pass
    assert meter.server_cpu == pytest.approx(1.2)
    assert meter.process_cpu == pytest.approx(0.7)
    assert set(meter.extra()) == {"server_cpu", "process_cpu", "client_cpu"}


def test_a_server_killed_during_the_run_has_no_cpu_figures() -> None:
    server: Any = _FakeServer(total=[10.0, 0.0], own=[6.0, 0.0])  # /proc has nothing left: its clocks read 0
    with CpuMeter(server) as meter:
        pass
    assert meter.server_cpu is None and meter.process_cpu is None
    assert set(meter.extra()) == {"client_cpu"}


def _ingest(server: float, process: float, client: float, objects: int = 10_000) -> Timed:
    extra = {"server_cpu": server * objects, "process_cpu": process * objects, "client_cpu": client * objects}
    return Timed(objects, 0.7, 0, extra={"wanted": objects, **extra})


def test_the_split_row_gives_each_process_its_share_and_the_bounds() -> None:
    # 64 µs in the serving process, 48 µs in its checking process, 4 µs in the client, per object
    text = report._split(_ingest(112e-6, 64e-6, 4e-6), cores=2)
    assert text.startswith("64 / 48 / 4 µs per object")
    assert "the serving process on one core: ≤ 15,625/s" in text
    assert "the three on 2 cores: ≤ 17,241/s" in text  # 2 / (112 + 4) µs


def test_the_split_row_is_left_out_without_the_serving_process_figure() -> None:
    assert report._split(Timed(10_000, 0.7, 0, extra={"server_cpu": 1.1, "client_cpu": 0.04})) == "—"
    results: dict[str, Any] = {
        "ingest.1000.cutout": Timed(10_000, 0.7, 0, extra={"server_cpu": 1.1, "client_cpu": 0.04})
    }
    labels = [row.name for row in report.build_rows(results, Sizes())]
    assert not any("its checking process" in label for label in labels)


def test_the_table_has_the_split_row_under_each_ingest() -> None:
    results: dict[str, Any] = {f"ingest.{per}.cutout": _ingest(112e-6, 64e-6, 4e-6) for per in (100, 1000)}
    rows = report.build_rows(results, Sizes())
    split = [row for row in rows if "its checking process" in row.name]
    assert [row.name.strip().rsplit(" ", 1)[1] for row in split] == ["100/envelope", "1,000/envelope"]
    assert all(row.cutout.startswith("64 / 48 / 4 µs") for row in split)
