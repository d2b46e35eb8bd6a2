"""Where the writer's time goes in a provider's submission, phase by phase, in process.

The ingest target at 1,000 objects per envelope is bound by the process that holds the write lock (its path is
the envelope's: docs/benchmarks.md, "The twenty-first round"), and no profile's share says what each part of
that path costs per object. This runs envelopes of the benchmark's objects through ``Exchange.submit`` as
``cutout serve`` runs them (the checking process validating them and making their copies ahead, one agreement
that releases at once, after the same 2,000 objects the other benchmarks store first, the cyclic collector's
heap frozen), with each phase's function wrapped to add up the wall time (``time.perf_counter``) the writer's
thread spent in it and not in another wrapped phase inside it: the writer's path, its waits for the checking
process and the disk included (a thread CPU clock costs a system call on these VMs: the wrappers cost four
times as much with it)::

    python -m bench.phases                       # 10,000 objects at 1,000 per envelope
    python -m bench.phases --objects 5000 --per 100

and prints µs per object for each, in the order a submission meets them, with the submissions' total wall
and CPU time, and the cyclic collector's time (``gc.callbacks``) among them. No HTTP and no envelope
parsing: through ``cutout serve`` those add about 4 µs per object for the parse and about 3 µs on the event
loop's thread. The wrappers' own cost is measured (one wrapped call against a bare one) and printed with the
number of calls per object; they count in the phase that called them. The wrapping is undone when the
measurement ends: a measurement, never a mode of the exchange.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from bench.floor import WARM, warmed
from bench.workload import Workload, chunks
from cutout import service
from cutout.model import offload
from cutout.sanitize.engine import Sanitizer
from cutout.service import Exchange
from cutout.store import sql

#: (owner, attribute, label), in the order a provider's submission meets them; a phase's time excludes the time
#: of the phases it calls, and the submission's own label takes what no other phase took
PHASES: tuple[tuple[Any, str, str], ...] = (
    (Exchange, "submit", "the rest of the submission (checks, recipes for the copies made ahead)"),
    (offload.DeferredChecks, "check_many", "handing the envelope to the checking process"),
    (service, "_stored", "each object's row (version, id hash, JSON bytes), before the lock"),
    (service._Facts, "__init__", "each object's references and TLP level, before the lock"),
    (Exchange, "_accept", "the rest of the transaction (its start, the status)"),
    (Exchange, "_classify", "the objects' kinds checked"),
    (sql.Tx, "add_objects", "rows stored: the originals and the reader's copies"),
    (Exchange, "_schedule", "who receives each object, and when"),
    (Exchange, "_release", "the release's set-up, and the reader's receipt event"),
    (Exchange, "_release_group", "the release loop's own work (known copies, versions, records)"),
    (service, "keyed_id", "the reader's ids (keyed_id)"),
    (Sanitizer, "sanitize", "a copy finished for the reader (its ids put in)"),
    (offload.DeferredChecks, "_made_at", "waiting for and reading the copies made ahead"),
    (offload.DeferredChecks, "_take", "copies the writer made itself (the child had not reached them)"),
    (service, "_stored_copy", "each copy's row"),
    (sql.Tx, "record_copies", "the copies' bookkeeping stored"),
    (sql.Tx, "append_audit", "audit entries"),
    (offload.DeferredChecks, "all_valid", "the verdicts: the writer's own judged, the child's waited for"),
)
COMMIT = "the commit"
COLLECTOR = "of which the cyclic collector"


class Result(NamedTuple):
    phases: dict[str, float]  # µs of the writer's wall time per object, by label (exclusive)
    cpu: float  # µs of this thread's CPU per object in the submissions
    wall: float  # µs of wall time per object in the submissions
    collector: float  # µs per object the cyclic collector ran meanwhile (in any phase)
    objects: int
    calls: float  # calls of wrapped functions per object
    overhead: float  # µs per object the wrappers themselves cost, by calibration (calls × cost of one)


class _Clock:
    """Exclusive time per label: a stack of the time the phases inside the current one took."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.totals: dict[str, float] = {}
        self.calls = 0
        self._inside: list[float] = []

    def timed(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            start = self.clock()
            self._inside.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                took = self.clock() - start
                self.totals[label] = self.totals.get(label, 0.0) + took - self._inside.pop()
                if self._inside:
                    self._inside[-1] += took

        return wrapper

    @contextlib.contextmanager
    def around(self, label: str) -> Iterator[None]:
        """A block timed as ``label`` (what a context manager's exit does, such as a commit)."""
        self.calls += 1
        start = self.clock()
        self._inside.append(0.0)
        try:
            yield
        finally:
            took = self.clock() - start
            self.totals[label] = self.totals.get(label, 0.0) + took - self._inside.pop()
            if self._inside:
                self._inside[-1] += took


@contextlib.contextmanager
def wrapped(clock: _Clock, phases: Sequence[tuple[Any, str, str]] = PHASES) -> Iterator[None]:
    """Every phase's function timed by ``clock`` inside the block, and as it was again after it. The commit is
    timed around the exit of ``Store.write``'s block."""
    saved: list[tuple[Any, str, Any]] = []
    write = sql.Store.write

    @contextlib.contextmanager
    def timed_write(self: sql.Store) -> Iterator[sql.Tx]:
        block = write(self)
        tx = block.__enter__()
        try:
            yield tx
        except BaseException as exc:
            if not block.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            with clock.around(COMMIT):
                block.__exit__(None, None, None)

    try:
        for owner, name, label in phases:
            before = owner.__dict__[name]
            saved.append((owner, name, before))
            setattr(owner, name, clock.timed(label, before))
        saved.append((sql.Store, "write", write))
        sql.Store.write = timed_write  # type: ignore[method-assign]
        yield
    finally:
        for owner, name, before in reversed(saved):
            setattr(owner, name, before)


def wrapper_cost(rounds: int = 200_000) -> float:
    """Seconds one wrapped call costs beyond the call itself (a wrapped function that does nothing, against the
    same function bare; the lower of three tries each)."""

    def nothing() -> None:
        return None

    wrapped_nothing = _Clock().timed("nothing", nothing)

    def run(fn: Callable[[], None]) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(rounds):
                fn()
            best = min(best, time.perf_counter() - start)
        return best / rounds

    return max(0.0, run(wrapped_nothing) - run(nothing))


def measure(objects: int, per: int, warm: int = WARM) -> Result:
    """The phases of submitting ``objects`` (after ``warm`` more) ``per`` envelope, with the checking process."""
    workload = Workload().objects(objects + warm)
    clock = _Clock()
    collecting: list[float] = [0.0, 0.0]  # [start of the current collection, total]

    def collector(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collecting[0] = time.perf_counter()
        else:
            collecting[1] += time.perf_counter() - collecting[0]

    with warmed(workload[:warm], per, checked=True, name="phases bench") as w:
        gc.callbacks.append(collector)
        try:
            with wrapped(clock):
                cpu, started = time.thread_time(), time.perf_counter()
                for chunk in chunks(workload[warm:], per):
                    w.exchange.submit(w.party, w.outbox, chunk)
                cpu, elapsed = time.thread_time() - cpu, time.perf_counter() - started
        finally:
            gc.callbacks.remove(collector)
    per_object = 1e6 / objects
    phases = {label: clock.totals.get(label, 0.0) * per_object for _, _, label in PHASES}
    phases[COMMIT] = clock.totals.get(COMMIT, 0.0) * per_object
    calls = clock.calls / objects
    return Result(
        phases,
        cpu * per_object,
        elapsed * per_object,
        collecting[1] * per_object,
        objects,
        calls,
        calls * wrapper_cost() * 1e6,
    )


def report(result: Result) -> str:
    width = max(len(label) for label in result.phases)
    lines = [f"{'phase':<{width}}  µs per object, the writer's thread"]
    for label, us in result.phases.items():
        lines.append(f"{label:<{width}}  {us:7.1f}")
    lines.append(f"{'in all (the phases)':<{width}}  {sum(result.phases.values()):7.1f}")
    lines.append(f"{'the submissions (wall; the thread CPU)':<{width}}  {result.wall:7.1f}; {result.cpu:.1f} CPU")
    lines.append(f"{COLLECTOR:<{width}}  {result.collector:7.1f}")
    lines.append(
        f"{'of which the wrappers themselves, about':<{width}}  {result.overhead:7.1f}"
        f" ({result.calls:.1f} calls per object)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10_000, help="objects measured (after 2,000 more)")
    parser.add_argument("--per", type=int, default=1000, help="objects per envelope")
    args = parser.parse_args()
    print(report(measure(args.objects, args.per)))


if __name__ == "__main__":
    main()
