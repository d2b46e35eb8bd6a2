"""cutout and medallion 3.0.0 side by side: one run, the same client, the same objects; a table with ratios.

    .venv/bin/python -m bench.run                       # everything (make bench), writes docs/benchmarks.md
    .venv/bin/python -m bench.run --smoke               # every measurement at tiny sizes (make bench-smoke)
    .venv/bin/python -m bench.run --only ingest --only machine

Measurements (``--only`` names): machine, ingest, fetch, latency, fanout; memory is sampled during ingest
and fetch (``--only memory`` runs those two). Timings never fail the run: it exits non-zero only when the
harness itself went wrong (a server refused the workload, objects went missing, a server would not start).
Every server it starts is stopped before it exits, however it exits. All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench import machine, measure, paced
from bench.machine import SQLITE_PAGE_SIZE
from bench.measure import log
from bench.pg import carry_section, strip_section
from bench.report import build_rows, markdown_table, text_table
from bench.servers import (
    CRASH_LOGS,
    REPO,
    CutoutServer,
    MedallionServer,
    StubServer,
    medallion_available,
    stop_all,
)
from bench.workload import Workload, check_with_stix2, mean_size

GROUPS = ("machine", "ingest", "fetch", "latency", "fanout")
#: what follows this line in the report is written by hand, and kept when the figures above it are rewritten
ANALYSIS_MARK = "<!-- analysis: written by hand; bench/run.py keeps everything from here on -->"
ALIASES = {"memory": ("ingest", "fetch")}


@dataclass(frozen=True)
class Sizes:
    ingest_objects: int = 10_000
    ingest_per: tuple[int, int] = (100, 1000)
    # several providers POSTing envelopes of 1,000 at once, each its share of this many objects
    ingest_writers: int = 4
    ingest_at_once_objects: int = 20_000
    # the same objects from one provider and from ingest_writers at once, each this many times, in turns
    ingest_at_once_turns: int = 2
    fetch_sizes: tuple[int, int] = (10_000, 100_000)
    page: int = 1000
    fetch_repeat: int = 3  # cutout pages through each size this many times; the best run counts
    load_per: int = 1000  # envelope size used to fill a server before fetch/latency measurements
    medallion_fetch_budget: float = 120.0  # seconds for medallion to page through one collection
    medallion_load_budget: float = 120.0  # seconds for medallion to take the objects of one fill
    # 1,000: the p99 is then the 11th-slowest sample, not the 3rd of 200, so one pause does not decide it
    latency_samples: int = 1000
    # taken in this many turns, a share each, on the empty, the large and the many-party exchanges in turn
    latency_turns: int = 4
    # the latency again on an exchange with this many more parties, every other one a provider with this many
    # agreements (1,000 and 10: 5,000 agreements), none of them the bench's provider's or consumer's
    members: tuple[int, int] = (1000, 10)
    # medallion: (size, samples, unrecorded warm-up samples, time budget in seconds) per peer-baseline size
    medallion_latency: tuple[tuple[int, int, int, float], ...] = (
        (0, 200, 3, 240.0),
        (2_000, 30, 0, 120.0),
        (10_000, 20, 0, 120.0),
    )
    # a consumer's poll (ten objects) every 10 ms, this many times, and a one-object POST every 50 ms, this many
    # times, first with the exchange idle and then while the provider POSTs envelopes of burst_per from the
    # first burst_objects of the workload (enough to outlast the samples)
    burst_polls: int = 200
    burst_posts: int = 30
    burst_objects: int = 90_000
    burst_per: int = 1000
    # the same again while this many providers POST at once (each a share of the burst's objects)
    burst_providers: int = 4
    fanout_consumers: int = 100
    fanout_objects: int = 1000
    fanout_per: int = 100
    machine_objects: int = 10_000
    # stix2-validator takes milliseconds per object: it validates this many of the machine limit's objects
    oasis_sample: int = 200
    # a latency sample's server work in process (bench.paced): this many samples a way and turn, in turns, with
    # this pause (seconds) before each request when paced
    paced_samples: int = 300
    paced_turns: int = 3
    paced_pause: float = 0.001


SMOKE = Sizes(
    ingest_objects=200,
    ingest_per=(100, 1000),
    ingest_writers=2,
    ingest_at_once_objects=400,
    fetch_sizes=(200, 400),
    page=100,
    fetch_repeat=1,
    load_per=100,
    medallion_fetch_budget=30.0,
    medallion_load_budget=30.0,
    latency_samples=10,
    latency_turns=2,
    members=(20, 2),
    medallion_latency=((0, 10, 3, 30.0), (100, 5, 0, 30.0), (200, 5, 0, 30.0)),
    burst_polls=5,
    burst_posts=3,
    burst_objects=2000,
    burst_per=100,
    burst_providers=2,
    fanout_consumers=5,
    fanout_objects=100,
    fanout_per=50,
    machine_objects=200,
    oasis_sample=5,
    paced_samples=3,
    paced_turns=1,
)


class Run:
    """One run: the objects, the results, and the one cutout server that is filled to the large size."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.workload = Workload()
        self.results: dict[str, Any] = {}
        self.errors: list[str] = []
        self._big: CutoutServer | None = None
        self._big_loaded = 0
        self._singles_used: dict[int, int] = {}
        self.peer = medallion_available()

    # -- shared things ----------------------------------------------------------------------------------------
    def objects(self, n: int) -> list[dict[str, Any]]:
        return self.workload.objects(n)

    def singles(self, server: Any, n: int) -> list[dict[str, Any]]:
        """Objects for one-object POSTs, never the same twice on one server."""
        start = self._singles_used.get(id(server), 0)
        self._singles_used[id(server)] = start + n
        return self.workload.singles(start + n)[start:]

    def big(self, size: int) -> CutoutServer:
        """The cutout server holding ``size`` objects in its consumer's inbox (filled as needed)."""
        if self._big is None:
            self._big = CutoutServer()
            log(f"cutout server (pid {self._big.pid}) for fetch/latency at size")
        if self._big_loaded < size:
            more = self.objects(size)[self._big_loaded :]
            t = measure.ingest(self._big, more, self.sizes.load_per)
            self.results[f"load.{size}.cutout"] = t
            log(f"  cutout: filled {self._big_loaded:,} → {size:,} at {t.rate:,.0f} objects/s")
            self._big_loaded = size
        return self._big

    def close(self) -> None:
        if self._big is not None:
            self._check_log(self._big)
            self._big.stop()

    def _check_log(self, server: CutoutServer) -> None:
        tb = server.tracebacks()
        if tb:
            raise measure.HarnessError(f"the cutout server logged an unhandled error:\n{tb}")

    # -- the measurements -----------------------------------------------------------------------------------
    def machine(self) -> None:
        limit = machine.machine_limit(self.objects(self.sizes.machine_objects))
        self.results["machine"] = limit
        log(f"machine limit: {limit['rate']:,.0f} objects/s (orjson alone {limit['orjson_rate']:,.0f}/s)")
        checked = machine.validation_cost(self.objects(self.sizes.machine_objects), self.sizes.oasis_sample)
        self.results["machine.validation"] = checked
        log(
            f"validating an object: {checked['cutout'] * 1e6:,.1f} µs with cutout's validator, "
            f"{checked['oasis'] * 1e6:,.0f} µs with stix2-validator"
        )
        commit = machine.durable_commit()
        self.results["machine.commit"] = commit
        log(f"durable commit of one row: p50 {commit['p50'] * 1000:.2f} ms, p99 {commit['p99'] * 1000:.2f} ms")
        with StubServer() as stub:
            n = self.sizes.latency_samples + 3
            floor = measure.latency(stub, self.workload.singles(n), 0)
        self.results["latency.floor"] = floor
        log(f"latency floor (client + HTTP, a server that does nothing): p50 {floor.p50 * 1000:.2f} ms")
        s = self.sizes
        n = paced.WARM_UP + s.paced_samples * s.paced_turns * len(paced.WAYS)
        # on an empty exchange of its own, as the latency's empty case
        work = paced.paced_work((), self.workload.singles(n), s.paced_pause, s.paced_turns)
        self.results["latency.paced"] = work
        log(
            "a sample's server work in process: "
            + ", ".join(f"{way.replace('_', ' ')} {work[way] * 1e3:.2f} ms" for way in paced.WAYS)
        )

    def ingest(self) -> None:
        s = self.sizes
        objs = self.objects(s.ingest_objects)
        for per in s.ingest_per:
            with CutoutServer() as c:
                log(f"cutout (pid {c.pid}): ingest {len(objs):,} at {per:,}/envelope")
                t = measure.ingest(c, objs, per)
                got = measure.count_inbox(c, c.consumer)
                if got != len(objs):
                    raise measure.HarnessError(f"cutout: the consumer received {got} of {len(objs)} objects")
                self._check_log(c)
                self.results[f"ingest.{per}.cutout"] = t
                log(f"  {t.rate:,.0f} objects/s, peak RSS {t.peak_rss / 2**20:,.0f} MB")
            if self.peer:
                with MedallionServer() as m:
                    log(f"medallion (pid {m.pid}): ingest {len(objs):,} at {per:,}/envelope")
                    t = measure.ingest(m, objs, per, budget=s.medallion_load_budget)
                    self.results[f"ingest.{per}.medallion"] = t
                    log(f"  {t.rate:,.0f} objects/s, peak RSS {t.peak_rss / 2**20:,.0f} MB {t.note}")
        objs, per, k = self.objects(s.ingest_at_once_objects), s.ingest_per[-1], s.ingest_writers
        # the same objects from one provider and from k at once, each on a new server, in turns: their ratio is
        # what the row shows, and runs minutes apart read the host's drift (docs/benchmarks.md, "The twenty-first
        # round"); the best of each counts
        runs: dict[str, list[measure.Timed]] = {"one": [], "at_once": []}
        for _ in range(max(1, s.ingest_at_once_turns)):
            for key, providers in (("one", 1), ("at_once", k)):
                with CutoutServer(providers=providers) as c:
                    who = f"{providers} providers at once" if providers > 1 else "one provider"
                    log(f"cutout (pid {c.pid}): {who}, {len(objs):,} objects at {per:,}/envelope")
                    if providers > 1:
                        t = measure.ingest_at_once(c, objs, per, providers)
                    else:
                        t = measure.ingest(c, objs, per)
                    got = measure.count_inbox(c, c.consumer)
                    if got != len(objs):
                        raise measure.HarnessError(f"cutout: the consumer received {got} of {len(objs)} objects")
                    self._check_log(c)
                    runs[key].append(t)
                    log(f"  {t.rate:,.0f} objects/s")
        for key, found in runs.items():
            best = max(found, key=lambda x: x.rate)
            best.note = f"best of {len(found)}, in turn: " + ", ".join(f"{x.rate:,.0f}/s" for x in found)
            self.results[f"ingest.{key}.cutout"] = best
        if self.peer:
            with MedallionServer() as m:
                log(f"medallion (pid {m.pid}): {k} clients at once, {len(objs):,} objects at {per:,}/envelope")
                t = measure.ingest_at_once(m, objs, per, k, budget=s.medallion_load_budget)
                self.results["ingest.at_once.medallion"] = t
                log(f"  {t.rate:,.0f} objects/s {t.note}")

    def fetch(self) -> None:
        s = self.sizes
        small, big = s.fetch_sizes
        # each size on a server of its own, both up at once, their runs taken in turn: the host's speed moves by
        # up to a third within minutes, and runs of one size taken minutes before the other's made their ratio
        # (the flatness the target asks for) read that drift (docs/benchmarks.md, "The twenty-first round")
        with CutoutServer() as few:
            log(f"cutout (pid {few.pid}): fetch {small:,}, on a server of its own")
            t = measure.ingest(few, self.objects(small), s.load_per)
            self.results[f"load.{small}.cutout"] = t
            log(f"  cutout: filled 0 → {small:,} at {t.rate:,.0f} objects/s")
            many = self.big(big)
            runs: dict[int, list[measure.Timed]] = {small: [], big: []}
            for _ in range(s.fetch_repeat):
                for size, server in ((small, few), (big, many)):
                    t = measure.fetch_all(server, s.page)
                    if t.objects != size:
                        raise measure.HarnessError(f"cutout: fetched {t.objects} of {size} objects")
                    runs[size].append(t)
            self._check_log(few)
        for size in (small, big):
            t = max(runs[size], key=lambda x: x.rate)
            t.peak_rss = max(x.peak_rss for x in runs[size])
            t.note = f"best of {len(runs[size])}, in turn with the other size: " + ", ".join(
                f"{x.rate:,.0f}/s" for x in runs[size]
            )
            self.results[f"fetch.{size}.cutout"] = t
            log(f"cutout: fetch {size:,}: {t.rate:,.0f} objects/s in {t.extra['pages']} pages ({t.note})")
        r = self.results
        small_peak = max(r[f"load.{small}.cutout"].peak_rss, r[f"fetch.{small}.cutout"].peak_rss)
        big_peak = max(r[f"load.{big}.cutout"].peak_rss, r[f"fetch.{big}.cutout"].peak_rss)
        added = int(mean_size(self.objects(big)[small:big]) * (big - small))
        r["memory.cutout"] = {
            "small_peak": small_peak,
            "big_peak": big_peak,
            "growth": big_peak - small_peak,
            "allowed": max(added // 4, 16 * 2**20),
            "bounded": big_peak - small_peak <= max(added // 4, 16 * 2**20),
        }
        if not self.peer:
            return
        reason = ""
        with MedallionServer() as m:
            log(f"medallion (pid {m.pid}): fetch")
            loaded = 0
            for size in s.fetch_sizes:
                key = f"fetch.{size}.medallion"
                if reason:
                    r[key + ".skipped"] = reason
                    continue
                fill = measure.ingest(m, self.objects(size)[loaded:], s.load_per, budget=s.medallion_load_budget)
                if not fill.finished:
                    reason = r[key + ".skipped"] = f"not measured: filling it to {size:,} {fill.note}"
                    log(f"  {reason}")
                    continue
                loaded = size
                t = measure.fetch_all(m, s.page, budget=s.medallion_fetch_budget)
                t.extra["wanted"] = size
                r[key] = t
                if t.finished:
                    log(f"  fetch {size:,}: {t.rate:,.0f} objects/s")
                else:
                    log(f"  fetch {size:,}: {t.note}")
                    reason = f"not attempted: {size:,} did not finish in {s.medallion_fetch_budget:.0f} s"

    def latency(self) -> None:
        s = self.sizes
        big = s.fetch_sizes[-1]
        parties, each = s.members
        # the three exchanges up at once and their samples taken in turns (a share each): the target asks for
        # the same latency at 100,000 objects as when empty, and runs minutes apart read the host's drift
        # (docs/benchmarks.md, "The twenty-first round")
        with CutoutServer() as empty, CutoutServer(members=s.members) as members:
            cases = (
                ("empty", empty, 0, "empty exchange"),
                ("big", self.big(big), big, f"{big:,}-object exchange"),
                ("members", members, 0, f"{parties:,} more parties and {parties // 2 * each:,} agreements"),
            )
            for _, server, _, what in cases:
                log(f"cutout (pid {server.pid}): latency, {what}")
            parts: dict[str, list[measure.Latency]] = {key: [] for key, *_ in cases}
            turns = max(1, min(s.latency_turns, s.latency_samples))
            for turn in range(turns):
                share = s.latency_samples * (turn + 1) // turns - s.latency_samples * turn // turns
                warm_up = 3 if turn == 0 else 0
                for key, server, size, _ in cases:
                    singles = self.singles(server, share + warm_up)
                    parts[key].append(measure.latency(server, singles, size, warm_up))
            self._check_log(empty)
            self._check_log(members)
        for key, _, _, what in cases:
            lat = self.results[f"latency.{key}.cutout"] = measure.Latency.merged(parts[key])
            per_turn = ", ".join(f"{part.p50 * 1000:.1f}" for part in parts[key])
            log(f"  {what}: p50 {lat.p50 * 1000:.1f} ms, p99 {lat.p99 * 1000:.1f} ms (p50 per turn: {per_turn} ms)")
        with CutoutServer() as c:
            log(f"cutout (pid {c.pid}): polls and one-object POSTs, idle and during a burst of {s.burst_per:,}")
            objects, singles = self.objects(s.burst_objects), self.singles(c, 2 * s.burst_posts)
            burst = measure.during_burst(c, objects, s.burst_per, s.burst_polls, singles)
            self._check_log(c)
        self.results["burst.cutout"] = burst
        for name, lat in (
            ("poll, idle", burst.polls_idle),
            ("poll, burst", burst.polls_busy),
            ("one-object POST, idle", burst.posts_idle),
            ("one-object POST, burst", burst.posts_busy),
        ):
            log(f"  {name}: p50 {lat.p50 * 1000:.1f} ms, p99 {lat.p99 * 1000:.1f} ms {lat.note}")
        log(f"  the provider's ingest during the burst: {burst.rate:,.0f} objects/s")
        k = s.burst_providers
        with CutoutServer(providers=k) as c:
            log(f"cutout (pid {c.pid}): the same during a burst from {k} providers at once")
            objects, singles = self.objects(s.burst_objects), self.singles(c, 2 * s.burst_posts)
            burst = measure.during_burst(c, objects, s.burst_per, s.burst_polls, singles, providers=k)
            self._check_log(c)
        self.results["burst.at_once.cutout"] = burst
        for name, lat in (("poll, burst", burst.polls_busy), ("one-object POST, burst", burst.posts_busy)):
            log(f"  {name}: p50 {lat.p50 * 1000:.1f} ms, p99 {lat.p99 * 1000:.1f} ms {lat.note}")
        log(f"  the providers' ingest during the burst: {burst.rate:,.0f} objects/s")
        if not self.peer:
            return
        found: list[measure.Latency] = []
        reason = ""
        with MedallionServer() as m:
            listed = ", ".join(f"{z:,}" for z, *_ in s.medallion_latency)
            log(f"medallion (pid {m.pid}): latency at {listed} objects")
            loaded = 0
            for size, samples, warm_up, budget in s.medallion_latency:
                if reason:
                    self.results.setdefault("latency.medallion.skipped", []).append((size, reason))
                    continue
                if size > loaded:
                    measure.ingest(m, self.objects(size)[loaded:], s.load_per)
                    loaded = size
                lat = measure.latency(m, self.singles(m, samples + warm_up), size, warm_up, budget)
                if lat.samples:
                    found.append(lat)
                log(f"  at {size:,}: p50 {lat.p50 * 1000:.1f} ms, p99 {lat.p99 * 1000:.1f} ms {lat.note}")
                if not lat.complete:
                    reason = f"not attempted: at {size:,} only {lat.note}"
                    if not lat.samples:
                        reason = f"not attempted: at {size:,} not one sample finished in {budget:.0f} s"
                        self.results.setdefault("latency.medallion.skipped", []).append(
                            (size, f"not one sample in {budget:.0f} s")
                        )
        if found:
            self.results["latency.empty.medallion"] = found[0]
        if len(found) > 1:
            self.results["latency.big.medallion"] = found[-1]
            self.results["latency.medallion.extra"] = found[1:-1]

    def fanout(self) -> None:
        s = self.sizes
        with CutoutServer(consumers=s.fanout_consumers) as c:
            log(f"cutout (pid {c.pid}): fan-out to {s.fanout_consumers} consumers")
            t = measure.fanout(c, self.objects(s.fanout_objects), s.fanout_per)
            self._check_log(c)
        self.results["fanout.cutout"] = t
        log(f"  {t.rate:,.0f} released copies/s ({t.objects:,} copies in {t.seconds:.1f} s)")


# -- the document -------------------------------------------------------------------------------------------------
def _slowest(n: int) -> str:
    """Which sample a nearest-rank p99 of ``n`` samples is, counted from the slowest: "11th-slowest"."""
    k = n - math.ceil(0.99 * n) + 1
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return "slowest" if k == 1 else f"{k}{suffix}-slowest"


def _details(results: dict[str, Any]) -> str:
    lines = [
        "| run | objects | seconds | rate | peak RSS | CPU per object: server / client | note |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for key, v in results.items():
        if isinstance(v, measure.Timed):
            server, client = v.cpu_per("server"), v.cpu_per("client")
            cpu = " / ".join("—" if x is None else f"{x * 1e6:,.1f} µs" for x in (server, client))
            lines.append(
                f"| {key} | {v.objects:,} | {v.seconds:.2f} | {v.rate:,.0f}/s | {v.peak_rss / 2**20:,.0f} MB |"
                f" {cpu} | {v.note} |"
            )
        elif isinstance(v, measure.Latency):
            cpu = ""
            if v.server_cpu is not None and v.client_cpu is not None:
                cpu = f"{v.server_cpu * 1000:.2f} ms / {v.client_cpu * 1000:.2f} ms per sample"
            lines.append(
                f"| {key} | {len(v.samples)} samples at {v.size_before:,} | | p50 {v.p50 * 1000:.2f} ms,"
                f" p99 {v.p99 * 1000:.2f} ms, max {max(v.samples) * 1000:.2f} ms | | {cpu} | {v.polls} GETs |"
            )
        elif isinstance(v, measure.Burst):
            for name, lat in (
                ("polls, idle", v.polls_idle),
                ("polls, burst", v.polls_busy),
                ("one-object POSTs, idle", v.posts_idle),
                ("one-object POSTs, burst", v.posts_busy),
            ):
                spread = "—"
                if lat.samples:
                    ms = [x * 1000 for x in (lat.p50, lat.p99, max(lat.samples))]
                    spread = "p50 {:.2f} ms, p99 {:.2f} ms, max {:.2f} ms".format(*ms)
                lines.append(f"| {key}: {name} | {len(lat.samples)} samples | | {spread} | | | {lat.note} |")
            meanwhile = f"{v.ingested:,} | {v.seconds:.2f} | {v.rate:,.0f}/s"
            lines.append(f"| {key}: the bulk envelopes meanwhile | {meanwhile} | | | |")
    for lat in results.get("latency.medallion.extra", []):
        lines.append(
            f"| latency.medallion at {lat.size_before:,} | {len(lat.samples)} samples | | p50 {lat.p50 * 1000:.2f}"
            f" ms, p99 {lat.p99 * 1000:.2f} ms | | | {lat.polls} GETs |"
        )
    return "\n".join(lines)


def document(run: Run, rows_md: str, desc: dict[str, str], elapsed: float, mean: float, others: str) -> str:
    s = run.sizes
    small, big = s.fetch_sizes
    peer = "medallion 3.0.0 from `.venv-medallion`" if run.peer else "medallion not installed (`make peer`)"
    return f"""# Benchmarks: cutout beside medallion 3.0.0

Written by `make bench` (`bench/run.py`); do not edit by hand, run it again. `make bench-smoke` runs every
measurement at tiny sizes to check that the harness works; its figures mean nothing.

One run measures both servers on one machine with the same client (taxii2-client 2.3.0, HTTP Basic), the same
objects and the same workload, so the **ratio** column is the figure to read; absolute numbers move with the
machine and with what else runs on it. Client and server share the machine's cores. Targets are the
project's; a MISS is reported, never enforced.

## Machine

| | |
|---|---|
| CPU | {desc["cpu"]} |
| cores | {desc["cores"]} |
| memory | {desc["memory"]} |
| OS | {desc["os"]} |
| Python | {desc["python"]} |
| date | {desc["date"]} |
| commit | {desc["commit"]} |
| code measured | {desc["source"]} |
| peer | {peer} |
| run took | {elapsed / 60:.1f} min |
| other processes during the run | {others} |

## Results

{rows_md}

## What was measured

- **Workload**: STIX 2.1 objects of {mean:,.0f} bytes on average (compact JSON), made once per run and sent to
  both servers: 40% indicators, 20% locations, 20% threat-actors, 20% sightings, in blocks of ten (each
  sighting is of an indicator or threat-actor of its block and names a location of its block as where it
  was sighted, so an envelope never refers forwards); all TLP:GREEN. `bench/workload.py` makes them as
  dicts shaped like the `stix2` library's output, and every run parses a sample of them with `stix2.parse`
  (strict, STIX 2.1).
- **cutout**: a broker made with the library, served by `cutout serve` with its defaults (SQLite, WAL,
  `synchronous=FULL`: an acknowledged envelope is on disk; pages of {SQLITE_PAGE_SIZE // 1024} KiB). The provider
  POSTs to its `outbox`; one consumer holds an agreement (all types, up to TLP:AMBER, delay 0), so every
  object is validated, stored, sanitized for that consumer and released into its `inbox` before the POST is
  answered. Fetch and latency read that `inbox`.
- **medallion**: `.venv-medallion/bin/medallion` with the memory backend and the configuration of the peer
  baseline (one API root, one read-write collection, `max_page_size` 1000); it writes and reads the same
  collection. Its `next` tokens are kept 600 s instead of 30 s so paging is not cut short by that defect.
- **ingest**: {s.ingest_objects:,} objects through TAXII POST, {" and ".join(f"{p:,}" for p in s.ingest_per)} objects
  per envelope, a fresh server each time. Envelopes are serialised before the clock starts.
- **ingest at once**: {s.ingest_writers} clients POST at the same time, each its own share of
  {s.ingest_at_once_objects:,} objects in envelopes of {s.ingest_per[-1]:,}, one after another, from a thread each of
  the harness; the time runs from their common start until the last is acknowledged. On cutout each client is a
  provider of its own, under an agreement with the one consumer (so every object is still sanitized for it
  and released); on medallion they are clients of its one user. Shown beside one client's rate: an exchange
  serves many providers, and one that slowed down when two sent at once would show it here. On cutout that
  client sends the same {s.ingest_at_once_objects:,} objects, and its runs and the runs at once take
  {s.ingest_at_once_turns} turns each, one after the other, each on a new server (the best of each counts, so
  that the host's drift moves both); on medallion it is the ingest row's one client at {s.ingest_per[-1]:,} per
  envelope.
- **machine limit**: the same {s.machine_objects:,} objects in envelopes of 1,000: `orjson.loads` of the envelope,
  `orjson.dumps` of every object, one `executemany` of 1,000 rows per transaction into SQLite (WAL,
  `synchronous=FULL`, cutout's page size, same file system); best of 3. cutout's ingest is shown as a share of it.
  Beside it, the CPU per object that share leaves (the machine's cores over the target's share of the limit's
  rate, had one client's envelopes the cores to themselves) and what validating one object once takes of it, in
  this process: cutout's validator (which the exchange runs on each object and on each copy it releases; it gives
  stix2-validator's verdicts) on the same objects, best of 3, and stix2-validator itself (OASIS, default
  options) on the first {s.oasis_sample:,} of them.
- **fetch**: the consumer pages through {small:,} and then {big:,} objects with `limit={s.page}`, following
  `next` (taxii2-client's `as_pages`; the client decodes every page, its heap frozen with `gc.freeze()` so
  that its collector walks only what the pages add, not the harness's objects); cutout {s.fetch_repeat} times
  per size, each size on a server of its own, both up at once and their runs taken in turn (so that the host's
  speed, which moves over minutes, moves both), the best counts (the others are in the details). cutout's
  servers are filled by POSTs of
  {s.load_per:,}; medallion gets {s.medallion_fetch_budget:.0f} s per size (its server is killed when the budget
  runs out) and is not tried at a larger size once a smaller one did not finish; filling it is capped at
  {s.medallion_load_budget:.0f} s too.
- **latency**: the provider POSTs one indicator, then the consumer GETs `objects/?added_after=T` (T taken
  just before the POST) until the object is there; {s.latency_samples} samples after 3 unrecorded ones,
  nearest-rank p99 (the {_slowest(s.latency_samples)} of {s.latency_samples}). cutout on an empty exchange, on the
  exchange filled to {big:,}, and on an empty exchange with {s.members[0]:,} more parties registered (every other one a
  provider with {s.members[1]} agreements with the others: the membership of a large sharing community, none
  of it dealing with the bench's parties), the three up at once and their samples taken in {s.latency_turns}
  turns, a share each, one exchange after the other (so that the host's drift moves all three; the harness's
  memory samplers, which wake 50 times a second in the client's process, paused meanwhile); medallion at
  {", ".join(f"{z:,} ({n} samples, {b:.0f} s budget)" for z, n, _, b in s.medallion_latency)}, the sizes of
  the peer baseline (a size is not attempted once a smaller one ran out of its budget). medallion's
  `added_after` filter compares every object with every manifest entry, so one poll costs time quadratic in
  the collection's size; the peer baseline's 8 / 171 / 790 ms at 0–200 / 2,000 / 10,000 fetched the object by
  its id instead, which a consumer of cutout cannot do (its copies carry ids of their own).
- **floors under the latency**: the same latency loop ({s.latency_samples} samples) against `bench/stub.py`, a server
  that answers every request with a canned response without looking at it (uvicorn with httptools and
  uvloop, as `cutout serve` runs it): what taxii2-client, requests and loopback HTTP cost a sample before any
  server work. And one durable commit: a one-row transaction in SQLite (WAL, `synchronous=FULL`) on the same
  file system, timed 300 times. The **CPU per sample** rows divide the CPU time the server process (from
  `/proc`) and the client (this process, `process_time`) spent over the counted samples by their number:
  client and server take turns within a sample, so a p50 is roughly the two added (less what overlaps),
  and what the client spends is beyond any server's reach. Beside them, a sample's **server work in process**
  (`bench/paced.py`): the app `cutout serve` runs, called directly with the requests taxii2-client sends (a
  one-object POST, then the poll), on an empty exchange of its own, without uvicorn or sockets; only the CPU
  inside the calls is counted, {s.paced_samples * s.paced_turns:,} samples a way, in {s.paced_turns} turns:
  back to back, and with a {s.paced_pause * 1e3:g} ms pause before each request, the process sleeping
  through it (as a server waits for its client) or spinning (it never leaves the CPU). What the paced ways
  cost over back to back is the machine's price for the pause, not the server's code.
- **during a burst**: on a server holding {s.burst_per:,} objects, the consumer GETs
  `objects/?added_after=T&limit=10` (the same ten objects each time) every 10 ms, {s.burst_polls} times, then
  a one-object POST (on a client of its own) is sent every 50 ms, {s.burst_posts} times, its time being until
  it is acknowledged (stored and released); all of it first on the idle server and then while the provider
  POSTs envelopes of {s.burst_per:,} one after another (from a thread of the harness, up to {s.burst_objects:,}
  objects). Then all of it again on a server whose {s.burst_providers} providers POST such envelopes at once (a
  thread each, the same objects shared out by envelope); the one-object POSTs come from the first of them. Only
  cutout: medallion's poll is already the slow part of its latency above.
- **fan-out**: one provider, {s.fanout_consumers} consumers each under an agreement with delay 0; {s.fanout_objects:,}
  objects in envelopes of {s.fanout_per} → {s.fanout_objects * s.fanout_consumers:,} released copies, divided by the
  time of the POSTs (release is part of the POST). Two consumers' inboxes are checked afterwards. medallion has
  no agreements, so no figure.
- **memory**: the server's RSS from `/proc/PID/status`, with that of the processes it started (cutout's
  checking process), sampled every 20 ms. "Bounded by the batch":
  the peak while filling cutout to {big:,} and fetching them may exceed the peak of the {small:,} phases by at
  most a quarter of the added objects' JSON (at least 16 MB, for the allocator's noise).
- **CPU**: the server's user + system time (`/proc/PID/stat`, its checking process's included) and the
  client's (this process) over
  each ingest, fetch and fan-out run, per object. "One core" is the rate that much CPU time per object would
  allow with a core given to the process alone: an upper bound for the code measured on this CPU, whatever
  the other core does. A target above the server's bound is out of reach without less work per object;
  one above the client's is out of reach for that client. For ingest the server's time is also split: the
  serving process alone (it holds the write lock, so one client's envelopes go no faster than one core
  allows it), its checking process, and the client; "the three on N cores" is the rate their sum allows
  on the machine's cores, had the work been spread over them perfectly.

## Details

{_details(run.results)}
"""


def _snapshot_and_exec(argv: list[str]) -> None:
    """Run the benchmark against a copy of ``src/cutout`` taken now: other work in the tree during the run
    must not mix two versions of cutout into one table (the harness sets brokers up with the library, and
    every server it starts imports cutout afresh). Re-executes this module with the copy first on the path."""
    snap = Path(tempfile.mkdtemp(prefix="cutout-bench-src-"))
    shutil.copytree(REPO / "src" / "cutout", snap / "cutout", ignore=shutil.ignore_patterns("__pycache__"))
    digest = hashlib.sha256()
    for f in sorted((snap / "cutout").rglob("*")):
        if f.is_file():
            digest.update(str(f.relative_to(snap)).encode() + b"\0" + f.read_bytes())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(snap), env.get("PYTHONPATH", "")) if p)
    env["BENCH_SNAPSHOT"] = str(snap)
    env["BENCH_SNAPSHOT_DIGEST"] = digest.hexdigest()[:12]
    env["BENCH_SNAPSHOT_COMMIT"] = machine.source_commit()
    os.execve(sys.executable, [sys.executable, "-m", "bench.run", *argv], env)  # noqa: S606 - same interpreter


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="every measurement at tiny sizes (checks the harness)")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these ({', '.join((*GROUPS, *ALIASES))}); repeat or separate by commas",
    )
    p.add_argument("--out", type=Path, help="the Markdown report (default docs/benchmarks.md on a full run)")
    p.add_argument("--no-peer", action="store_true", help="leave medallion out")
    p.add_argument("--no-snapshot", action="store_true", help="use src/ as it is, not a copy taken at the start")
    args = p.parse_args(argv)
    if not args.no_snapshot and "BENCH_SNAPSHOT" not in os.environ:
        _snapshot_and_exec(sys.argv[1:] if argv is None else argv)
    snapshot = os.environ.get("BENCH_SNAPSHOT")
    if snapshot:
        import cutout

        if not Path(cutout.__file__).resolve().is_relative_to(Path(snapshot).resolve()):
            p.error(f"cutout was imported from {cutout.__file__}, not from the snapshot {snapshot}")

    chosen: list[str] = []
    for item in args.only or []:
        for name in (n.strip() for n in item.split(",")):
            if name in ALIASES:
                chosen.extend(ALIASES[name])
            elif name in GROUPS:
                chosen.append(name)
            else:
                p.error(f"unknown measurement {name!r}: choose from {', '.join((*GROUPS, *ALIASES))}")
    groups = [g for g in GROUPS if not chosen or g in chosen]
    out = args.out
    if out is None and not args.smoke and not args.only:
        out = REPO / "docs" / "benchmarks.md"

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)

    sizes = SMOKE if args.smoke else Sizes()
    run = Run(sizes)
    if args.no_peer:
        run.peer = False
    elif not run.peer:
        log("medallion is not installed (make peer): its columns stay empty")
    started = time.perf_counter()
    cpu_before = machine.cpu_snapshot()
    mean = 0.0
    try:
        n = max(sizes.fetch_sizes[-1], sizes.ingest_objects, sizes.machine_objects, sizes.fanout_objects)
        objs = run.objects(n)
        checked = check_with_stix2(objs)
        mean = mean_size(objs)
        log(f"workload: {n:,} objects, {mean:,.0f} bytes on average ({checked} parsed with stix2)")
        steps: dict[str, Callable[[], None]] = {g: getattr(run, g) for g in GROUPS}
        for g in groups:
            try:
                steps[g]()
            except Exception:
                run.errors.append(f"{g}: {traceback.format_exc()}")
                log(f"{g} FAILED:\n{traceback.format_exc()}")
        try:
            run.close()
        except Exception:
            run.errors.append(traceback.format_exc())
    finally:
        stop_all()
        if snapshot:
            shutil.rmtree(snapshot, ignore_errors=True)
    elapsed = time.perf_counter() - started
    others = machine.others_share(cpu_before, machine.cpu_snapshot(), elapsed)
    log(f"other processes on the machine during the run: {others}")

    rows = build_rows(run.results, sizes)
    print()
    print(text_table(rows))
    print(f"\n{'smoke run: the figures mean nothing. ' if args.smoke else ''}took {elapsed:.0f} s")
    if out is not None:
        desc = machine.describe()
        text = document(run, markdown_table(rows), desc, elapsed, mean, others)
        kept = out.read_text("utf-8") if out.exists() else ""
        if ANALYSIS_MARK in kept:  # the analysis is written by hand: keep it below the new figures
            analysis = strip_section(kept[kept.index(ANALYSIS_MARK) :])
            text = text.rstrip("\n") + "\n\n" + analysis.rstrip("\n") + "\n"
        out.write_text(carry_section(out, text), "utf-8")  # the PostgreSQL section (bench.pg) stays
        log(f"wrote {out}")
    for crash in CRASH_LOGS:
        log(f"a server logged an unhandled error:\n{crash}")
    if run.errors:
        log(f"{len(run.errors)} measurement(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
