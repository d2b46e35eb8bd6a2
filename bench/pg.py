"""cutout on SQLite beside cutout on PostgreSQL, and two nodes on one PostgreSQL: one run, the same client
(taxii2-client) and the same objects as ``bench.run``.

    .venv/bin/python -m bench.pg --db postgresql://postgres@127.0.0.1:5432/bench   # its section of docs/benchmarks.md
    .venv/bin/python -m bench.pg --db postgresql://… --smoke                       # tiny sizes: checks the harness

The database named by ``--db`` is emptied (its public schema dropped) before every server: give the benchmark a
database of its own. Its section of docs/benchmarks.md sits between two markers; ``make bench`` keeps it.
Timings never fail the run: it exits non-zero only when the harness itself went wrong.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine, measure
from bench.measure import log
from bench.servers import REPO, CutoutServer, stop_all
from bench.workload import Workload, envelopes, mean_size

BEGIN = "<!-- bench.pg: begin -->"
END = "<!-- bench.pg: end -->"


@dataclass(frozen=True)
class Sizes:
    ingest_objects: int = 5_000
    ingest_per: tuple[int, ...] = (100, 1000)
    fetch_objects: int = 10_000
    page: int = 1000
    latency_samples: int = 100
    fanout_consumers: int = 20
    fanout_objects: int = 500
    fanout_per: int = 100
    nodes_objects: int = 5_000
    nodes_per: int = 100


SMOKE = Sizes(
    ingest_objects=200,
    ingest_per=(100,),
    fetch_objects=300,
    page=100,
    latency_samples=5,
    fanout_consumers=3,
    fanout_objects=100,
    fanout_per=50,
    nodes_objects=200,
    nodes_per=50,
)


def _checked(server: CutoutServer) -> None:
    tb = server.tracebacks()
    if tb:
        raise measure.HarnessError(f"a cutout node logged an unhandled error:\n{tb}")


def two_nodes(db: str, objects: Sequence[dict[str, Any]], per: int) -> measure.Timed:
    """Two nodes on one PostgreSQL, one provider client posting half the envelopes to each at the same time:
    objects acknowledged per second of wall time, for both together."""
    with CutoutServer(db=db, nodes=2) as c:
        bodies = envelopes(objects, per)
        halves = [bodies[0::2], bodies[1::2]]
        writers = [c.writer_on(i, c.provider) for i in range(2)]
        errors: list[str] = []

        def send(i: int) -> None:
            for body in halves[i]:
                status = writers[i].add_objects(body)
                if status.status != "complete":
                    errors.append(f"node {i}: status {status.status}")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
        if errors:
            raise measure.HarnessError("; ".join(errors))
        got = measure.count_inbox(c, c.consumer)
        if got != len(objects):
            raise measure.HarnessError(f"two nodes: the consumer received {got} of {len(objects)} objects")
        _checked(c)
        return measure.Timed(len(objects), seconds, c.peak_rss())


def run(db: str, sizes: Sizes) -> tuple[dict[str, Any], list[str]]:
    work = Workload()
    results: dict[str, Any] = {}
    errors: list[str] = []
    stores = {"sqlite": None, "postgresql": db}
    objs = work.objects(max(sizes.ingest_objects, sizes.fetch_objects, sizes.fanout_objects, sizes.nodes_objects))
    results["mean_size"] = mean_size(objs)

    def step(name: str, fn: Any) -> None:
        try:
            fn()
        except Exception:
            errors.append(f"{name}: {traceback.format_exc()}")
            log(f"{name} FAILED:\n{traceback.format_exc()}")

    for store, url in stores.items():
        for per in sizes.ingest_per:

            def ingest(per: int = per, url: str | None = url, store: str = store) -> None:
                with CutoutServer(db=url) as c:
                    t = measure.ingest(c, objs[: sizes.ingest_objects], per)
                    if measure.count_inbox(c, c.consumer) != sizes.ingest_objects:
                        raise measure.HarnessError(f"{store}: objects missing from the inbox")
                    _checked(c)
                results[f"ingest.{per}.{store}"] = t
                log(f"{store}: ingest {sizes.ingest_objects:,} at {per}/envelope: {t.rate:,.0f} objects/s")

            step(f"ingest {store} {per}", ingest)

        def fetch_and_latency(url: str | None = url, store: str = store) -> None:
            with CutoutServer(db=url) as c:
                n = sizes.latency_samples + 3
                lat = measure.latency(c, work.singles(n), 0)
                results[f"latency.{store}"] = lat
                log(f"{store}: latency p50 {lat.p50 * 1000:.1f} ms, p99 {lat.p99 * 1000:.1f} ms")
                measure.ingest(c, objs[: sizes.fetch_objects], 1000)
                runs = [measure.fetch_all(c, sizes.page) for _ in range(3)]
                best = max(runs, key=lambda x: x.rate)
                if best.objects < sizes.fetch_objects:
                    raise measure.HarnessError(f"{store}: fetched {best.objects} of {sizes.fetch_objects}")
                results[f"fetch.{store}"] = best
                log(f"{store}: fetch {best.objects:,}: {best.rate:,.0f} objects/s (best of 3)")
                _checked(c)

        step(f"fetch {store}", fetch_and_latency)

        def fanout(url: str | None = url, store: str = store) -> None:
            with CutoutServer(consumers=sizes.fanout_consumers, db=url) as c:
                t = measure.fanout(c, objs[: sizes.fanout_objects], sizes.fanout_per)
                _checked(c)
            results[f"fanout.{store}"] = t
            log(f"{store}: fan-out to {sizes.fanout_consumers}: {t.rate:,.0f} released copies/s")

        step(f"fanout {store}", fanout)

    def nodes() -> None:
        t = two_nodes(db, objs[: sizes.nodes_objects], sizes.nodes_per)
        results["nodes.2.postgresql"] = t
        log(f"two nodes on PostgreSQL: ingest {t.objects:,} at {sizes.nodes_per}/envelope: {t.rate:,.0f} objects/s")

    step("two nodes", nodes)
    return results, errors


def _rate(t: Any) -> str:
    return f"{t.rate:,.0f}/s" if t is not None else "—"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:.2f}×" if a and b else "—"


def section(results: dict[str, Any], sizes: Sizes, desc: dict[str, str], others: str, elapsed: float) -> str:
    rows = ["| measurement | SQLite | PostgreSQL | PostgreSQL ÷ SQLite |", "|---|--:|--:|--:|"]
    for per in sizes.ingest_per:
        a, b = results.get(f"ingest.{per}.sqlite"), results.get(f"ingest.{per}.postgresql")
        rows.append(
            f"| ingest {sizes.ingest_objects:,} objects, {per:,}/envelope | {_rate(a)} | {_rate(b)} |"
            f" {_ratio(a and a.rate, b and b.rate)} |"
        )
    a, b = results.get("fetch.sqlite"), results.get("fetch.postgresql")
    fetched = b or a
    count = fetched.objects if fetched is not None else sizes.fetch_objects
    rows.append(
        f"| fetch {count:,} objects (limit {sizes.page:,}, best of 3) | {_rate(a)} | {_rate(b)} |"
        f" {_ratio(a and a.rate, b and b.rate)} |"
    )
    for q in ("p50", "p99"):
        la, lb = results.get("latency.sqlite"), results.get("latency.postgresql")
        va, vb = (getattr(x, q) * 1000 if x is not None else None for x in (la, lb))
        rows.append(
            f"| POST one object → consumer has it, {q}, empty exchange | "
            f"{'—' if va is None else f'{va:.1f} ms'} | {'—' if vb is None else f'{vb:.1f} ms'} | "
            f"{'—' if not va or vb is None else f'{vb / va:.2f}×'} |"
        )
    a, b = results.get("fanout.sqlite"), results.get("fanout.postgresql")
    rows.append(
        f"| fan-out: 1 provider → {sizes.fanout_consumers} consumers, released copies | {_rate(a)} | {_rate(b)} |"
        f" {_ratio(a and a.rate, b and b.rate)} |"
    )
    one = results.get(f"ingest.{sizes.nodes_per}.postgresql")
    two = results.get("nodes.2.postgresql")
    rows.append(
        f"| two nodes on one PostgreSQL, ingest {sizes.nodes_objects:,} objects at {sizes.nodes_per}/envelope, "
        f"one client per node (ratio: ÷ one node) | | {_rate(two)} | {_ratio(one and one.rate, two and two.rate)} |"
    )
    return f"""{BEGIN}
## cutout on PostgreSQL

Written by `python -m bench.pg --db postgresql://…` (`make bench-pg BENCH_DB=postgresql://…`); `make bench`
keeps this section. cutout on SQLite beside cutout on PostgreSQL {desc["postgres"]} on the same machine, in one
run, with the same client and objects ({results.get("mean_size", 0):,.0f} bytes on average) as above; sizes are
smaller than the SQLite run's, because the machine is shared. PostgreSQL runs on the same machine with its
defaults (`fsync` on, `synchronous_commit` on): an acknowledged envelope is durable on both stores.

| | |
|---|---|
| date | {desc["date"]} |
| commit | {desc["commit"]} |
| run took | {elapsed / 60:.1f} min |
| other processes during the run | {others} |

{chr(10).join(rows)}

On PostgreSQL, write transactions take one advisory lock (one writer at a time, like SQLite's `BEGIN
IMMEDIATE`; see [operations.md](operations.md#several-nodes-on-one-postgresql)): a second node adds
capacity for what is done outside the lock (reading and parsing requests, authentication, reads, and
validating envelopes under 8 objects), not parallel commits; each node has its own checking process.
{END}
"""


def carry_section(path: Path, text: str) -> str:
    """``text`` (a new docs/benchmarks.md) with the PostgreSQL section of the file at ``path`` kept."""
    old = path.read_text("utf-8") if path.exists() else ""
    found = re.search(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", old, re.S)
    return text if found is None else text.rstrip("\n") + "\n\n" + found.group(0)


def strip_section(text: str) -> str:
    """``text`` without the PostgreSQL section."""
    return re.sub(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", "", text, flags=re.S)


def _put_section(path: Path, block: str) -> None:
    old = path.read_text("utf-8") if path.exists() else ""
    found = re.search(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", old, re.S)
    kept = old.rstrip("\n") + "\n\n" if found is None else old[: found.start()]
    path.write_text(kept + block + ("" if found is None else old[found.end() :]), "utf-8")


def _server_version(db: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            version = str(conn.execute(text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()
    return version.split()[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.pg", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", required=True, help="a postgresql:// URL of a database the benchmark may empty")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (checks the harness; figures mean nothing)")
    p.add_argument("--out", type=Path, help="the Markdown file whose PostgreSQL section to write")
    args = p.parse_args(argv)
    if not args.db.startswith("postgresql://"):
        p.error("--db takes a postgresql:// URL")
    out = args.out if args.out is not None or args.smoke else REPO / "docs" / "benchmarks.md"
    sizes = SMOKE if args.smoke else Sizes()
    started = time.perf_counter()
    cpu_before = machine.cpu_snapshot()
    try:
        results, errors = run(args.db, sizes)
    finally:
        stop_all()
    elapsed = time.perf_counter() - started
    others = machine.others_share(cpu_before, machine.cpu_snapshot(), elapsed)
    desc = machine.describe()
    desc["postgres"] = _server_version(args.db)
    block = section(results, sizes, desc, others, elapsed)
    print(block)
    if out is not None:
        _put_section(out, block)
        log(f"wrote the PostgreSQL section of {out}")
    if errors:
        log(f"{len(errors)} measurement(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
