"""bench.phases, the writer's path phase by phase: every phase is timed without the phases inside it, the phases
add up to the submissions, the checking process takes part as in ``cutout serve``, and the wrapped functions are
put back (else the figures docs/benchmarks.md gives would not be what it says they are)."""

from __future__ import annotations

from typing import Any

import pytest
from bench import phases

from cutout.store import sql


def test_every_phase_is_timed_and_the_phases_add_up_to_the_submissions() -> None:
    result = phases.measure(objects=100, per=50, warm=50)
    assert list(result.phases) == [label for _, _, label in phases.PHASES] + [phases.COMMIT]
    assert all(us >= 0 for us in result.phases.values())
    for label in (
        "handing the envelope to the checking process",  # the checking process took part, as in cutout serve
        "rows stored: the originals and the reader's copies",
        "the reader's ids (keyed_id)",
        "each copy's row",
        phases.COMMIT,
    ):
        assert result.phases[label] > 0, label
    # the submissions' time, split: no phase counted twice, nothing of it left out but the loop around them
    assert sum(result.phases.values()) <= result.wall * (1 + 1e-9)
    assert result.calls >= 4  # per object at least: its row, its copy's id, the copy, the copy's row
    assert result.collector >= 0 and result.overhead >= 0 and result.cpu > 0
    assert "in all (the phases)" in phases.report(result)


def test_a_phase_is_timed_without_the_phases_it_calls() -> None:
    now = [0.0]  # a clock the test moves: no timing
    clock = phases._Clock(clock=lambda: now[0])

    def inner() -> None:
        now[0] += 3.0

    timed_inner = clock.timed("inner", inner)

    def outer() -> None:
        now[0] += 1.0
        timed_inner()
        now[0] += 2.0
        with clock.around("block"):
            now[0] += 4.0
            timed_inner()

    clock.timed("outer", outer)()
    assert clock.totals == {"inner": 6.0, "block": 4.0, "outer": 3.0}
    assert clock.calls == 4

    def fails() -> None:
        now[0] += 5.0
        raise ValueError("counted all the same")

    with pytest.raises(ValueError, match="counted"):
        clock.timed("fails", fails)()
    assert clock.totals["fails"] == 5.0


def test_the_functions_are_put_back() -> None:
    before: list[tuple[Any, str, Any]] = [(o, n, o.__dict__[n]) for o, n, _ in phases.PHASES]
    write = sql.Store.write
    with phases.wrapped(phases._Clock()):
        assert all(o.__dict__[n] is not f for o, n, f in before)
        assert sql.Store.write is not write
    assert all(o.__dict__[n] is f for o, n, f in before)
    assert sql.Store.write is write
