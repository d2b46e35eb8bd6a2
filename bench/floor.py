"""The writer's share of ingest: what a submission costs the process that holds the write lock, in process.

The ingest target at 1,000 objects per envelope (20,000/s, 50 µs per object) could only be met by a second
process doing the CPU work that does not need the database: validating the provider's objects, sanitizing
them and validating the copies (see docs/benchmarks.md, "Each target"). This measures what would be left to
the one writer even if that work cost nothing: envelopes of the benchmark's objects go straight to
``cutout.service.Exchange.submit`` (no server, no client) under one agreement that releases at once, four
ways, each on a new exchange after the same 2,000 objects, with the cyclic collector's heap frozen as
``cutout serve`` freezes it:

- ``full``: the exchange as it is, every copy validated in line;
- ``checked``: as ``cutout serve`` runs it, with the checking process validating each envelope and making
  its copies ahead on the other core (``cutout.model.offload``; its own CPU is not in this process's figure,
  so read its wall time);
- ``no-validation``: the provider's objects are not validated (a second process would have done it);
- ``writer``: neither are they validated, nor sanitized: each copy is the one a first pass made of the same
  object, with the reader's id put in (what the writer would receive from the second process), so the copy
  is neither built nor validated again.

CPU time per object of the submissions in this process (``time.process_time``), wall time per object, and
how much of that wall time was spent inside write transactions, from the moment one holds the write lock to
the end of its commit (what another writer arriving meanwhile waits for: docs/benchmarks.md, "What is
left", item 9), one line per way, one figure per round::

    python -m bench.floor                        # 10,000 objects at 1,000 per envelope, 3 rounds
    python -m bench.floor --objects 5000 --per 100 --rounds 5

The ``no-validation`` way replaces ``Validator.check_all``, the ``writer`` way that and ``Sanitizer.sanitize``,
on their classes while they run (and puts them back): a measurement, not a mode of the exchange.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bench.workload import Workload, chunks
from cutout.model.validate import Validator
from cutout.sanitize.engine import Sanitizer
from cutout.service import Exchange
from cutout.settings import load_settings
from cutout.store.sql import Store, Tx

WAYS = ("full", "checked", "no-validation", "writer")
WARM = 2_000  # objects stored before the measured ones, as the ingest benchmark's exchange is not empty


class Run(NamedTuple):
    cpu: float  # µs of this process's CPU per object
    wall: float  # µs per object
    delivered: int  # copies in the reader's inbox at the end
    held: float  # µs per object inside write transactions (the write lock held, the commit included)


class Warmed(NamedTuple):
    """An exchange ready for measured submissions (``warmed``)."""

    exchange: Exchange
    party: Any  # the provider, authenticated
    outbox: str  # its outbox's id
    database: Path  # the SQLite file


@contextlib.contextmanager
def warmed(objects: Sequence[dict[str, Any]], per: int, *, checked: bool, name: str) -> Iterator[Warmed]:
    """A new exchange in a temporary folder: one provider and one consumer under an agreement that releases at
    once, ``objects`` already submitted ``per`` envelope, and, with ``checked``, the checking process started
    before the first of them (as ``cutout serve`` starts it). Inside the block the cyclic collector's heap is
    frozen, as ``cutout serve`` freezes it; the exchange is closed and its folder removed after it."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(Path(tmp) / "broker", {"check_process": checked}, environ={})
        Exchange.init(settings, name)
        ex = Exchange.open(settings)
        try:
            ex.start_checks()
            _, token = ex.add_party("Bench Provider", provider=True, consumer=False)
            ex.add_party("Bench Consumer", provider=False, consumer=True)
            ex.add_agreement("Bench Provider", "Bench Consumer", delay=0)
            party = ex.authenticate(None, token)
            outbox = next(c for c in ex.collections(party) if c.kind == "outbox")
            for chunk in chunks(objects, per):
                ex.submit(party, outbox.uuid, chunk)
            gc.collect()
            gc.freeze()
            try:
                yield Warmed(ex, party, outbox.uuid, Path(settings.db_url.removeprefix("sqlite:///")))
            finally:
                gc.unfreeze()
        finally:
            ex.close()


def submit_all(objects: Sequence[dict[str, Any]], per: int, warm: int = WARM, checked: bool = False) -> Run:
    """Submitting ``objects[warm:]`` after ``objects[:warm]``, per object; with ``checked``, the checking
    process validates the envelopes and makes their copies (started before the first envelope, as ``cutout
    serve`` starts it)."""
    held = [0.0]
    with warmed(objects[:warm], per, checked=checked, name="floor bench") as w:
        with holding(held):
            start, started = time.process_time(), time.perf_counter()
            for chunk in chunks(objects[warm:], per):
                w.exchange.submit(w.party, w.outbox, chunk)
            took, elapsed = time.process_time() - start, time.perf_counter() - started
        with contextlib.closing(sqlite3.connect(w.database)) as db:
            (delivered,) = db.execute(
                "SELECT count(*) FROM objects o JOIN collections c ON c.id = o.coll WHERE c.kind = 'inbox'"
            ).fetchone()
    n = len(objects) - warm
    return Run(1e6 * took / n, 1e6 * elapsed / n, int(delivered), 1e6 * held[0] / n)


@contextlib.contextmanager
def _replacing(cls: type, name: str, method: Any) -> Iterator[None]:
    """``cls.name`` is ``method`` inside the block, and what it was again after it."""
    before = cls.__dict__[name]
    setattr(cls, name, method)
    try:
        yield
    finally:
        setattr(cls, name, before)


def holding(
    held: list[float], clock: Callable[[], float] = time.perf_counter
) -> contextlib.AbstractContextManager[None]:
    """``Store.write`` timed: ``held[0]`` grows by the wall time from the moment each write transaction holds
    the write lock to the end of its commit (or rollback), read from ``clock``. A write the store makes after
    a commit, before the call returns (a merge of the rows added lately: ``Store._merge_fresh``), counts
    within the one it follows, once."""
    write = Store.write
    depth = [0]

    @contextlib.contextmanager
    def timed(self: Store) -> Iterator[Tx]:
        start: float | None = None
        depth[0] += 1
        try:
            with write(self) as tx:
                start = clock()
                yield tx
        finally:
            depth[0] -= 1
            if start is not None and depth[0] == 0:
                held[0] += clock() - start

    return _replacing(Store, "write", timed)


def without_validation() -> contextlib.AbstractContextManager[None]:
    """The provider's objects are taken as valid."""
    return _replacing(Validator, "check_all", lambda self, objs: [])


def recording(made: dict[str, tuple[dict[str, Any] | None, str]]) -> contextlib.AbstractContextManager[None]:
    """Sanitize as usual, keeping each object's copy (by the original's id)."""
    sanitize = Sanitizer.sanitize

    def record(self: Sanitizer, obj: Any, **kw: Any) -> tuple[dict[str, Any] | None, str]:
        made[obj["id"]] = out = sanitize(self, obj, **kw)
        return out

    return _replacing(Sanitizer, "sanitize", record)


def replaying(made: dict[str, tuple[dict[str, Any] | None, str]]) -> contextlib.AbstractContextManager[None]:
    """Each copy is the recorded one with this reader's id: nothing is sanitized or validated."""

    def replay(self: Sanitizer, obj: Any, *, keyed: str, **kw: Any) -> tuple[dict[str, Any] | None, str]:
        out, reason = made[obj["id"]]
        if out is None:
            return None, reason
        copy = dict(out)
        copy["id"] = keyed
        return copy, reason

    return _replacing(Sanitizer, "sanitize", replay)


def measure(objects: int, per: int, rounds: int, warm: int = WARM) -> dict[str, list[Run]]:
    """Per way, the :class:`Run` of each round; the ways alternate within a round."""
    workload = list(Workload().objects(objects + warm))
    made: dict[str, tuple[dict[str, Any] | None, str]] = {}
    with recording(made):
        submit_all(workload, per, warm)  # the copies the writer way replays (not measured)
    results: dict[str, list[Run]] = {way: [] for way in WAYS}
    for _ in range(rounds):
        results["full"].append(submit_all(workload, per, warm))
        results["checked"].append(submit_all(workload, per, warm, checked=True))
        with without_validation():
            results["no-validation"].append(submit_all(workload, per, warm))
            with replaying(made):
                results["writer"].append(submit_all(workload, per, warm))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10_000, help="objects measured (after 2,000 more)")
    parser.add_argument("--per", type=int, default=1000, help="objects per envelope")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = measure(args.objects, args.per, args.rounds)
    for way, runs in results.items():
        cpu = " / ".join(f"{r.cpu:.1f}" for r in runs)
        wall = " / ".join(f"{r.wall:.1f}" for r in runs)
        held = " / ".join(f"{r.held:.1f}" for r in runs)
        copies = sorted({r.delivered for r in runs})
        print(
            f"{way:>14}: {cpu} µs of CPU and {wall} µs of wall time per object, {held} µs of it holding the"
            f" write lock ({args.per} per envelope; copies delivered: {copies})"
        )


if __name__ == "__main__":
    main()
