"""The machine: what it is, and how fast it can do the least an ingest must do with the same objects.

The limit: parse each envelope of 1,000 objects with orjson, serialise every object again with orjson, and
insert the rows with one SQLite ``executemany`` per envelope in one transaction, in WAL mode with
``synchronous=FULL`` (cutout's default: one fsync per commit) and cutout's page size, on the same file system as
the servers' data.

Beside it, what validating the same objects costs (``validation_cost``), which the limit leaves out and an
ingest may not: the share of the limit a target asks for is a budget of CPU per object, and validation is part
of what must fit in it.
"""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.servers import REPO
from bench.workload import envelopes
from cutout import settings as _settings

#: the page size of the databases cutout makes: a cutout from before the setting (an older tree measured with
#: ``--no-snapshot``, to compare versions) made SQLite's default 4 KiB pages
SQLITE_PAGE_SIZE: int = getattr(_settings, "SQLITE_PAGE_SIZE", 4096)


def machine_limit(objects: Sequence[dict[str, Any]], per: int = 1000, repeat: int = 3) -> dict[str, float]:
    """Objects per second: the best of ``repeat`` runs, each into a fresh database."""
    bodies = envelopes(objects, per)
    best = float("inf")
    parse_serialise = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-limit-") as tmp:
            db = sqlite3.connect(Path(tmp) / "limit.db", isolation_level=None)
            try:
                db.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # as cutout's (no difference measured: one table)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute(
                    "CREATE TABLE objects (pk INTEGER PRIMARY KEY, stix_id TEXT NOT NULL, type TEXT NOT NULL,"
                    " version TEXT NOT NULL, body BLOB NOT NULL)"
                )
                pure = 0.0
                start = time.perf_counter()
                for body in bodies:
                    t0 = time.perf_counter()
                    doc = orjson.loads(body)
                    rows = [(o["id"], o["type"], o.get("modified", ""), orjson.dumps(o)) for o in doc["objects"]]
                    pure += time.perf_counter() - t0
                    db.execute("BEGIN")
                    db.executemany("INSERT INTO objects (stix_id, type, version, body) VALUES (?, ?, ?, ?)", rows)
                    db.execute("COMMIT")
                best = min(best, time.perf_counter() - start)
                parse_serialise = min(parse_serialise, pure)
                (n,) = db.execute("SELECT count(*) FROM objects").fetchone()
                assert n == len(objects), n
            finally:
                db.close()
    return {
        "objects": float(len(objects)),
        "rate": len(objects) / best,
        "orjson_rate": len(objects) / parse_serialise if parse_serialise > 0 else 0.0,
    }


def validation_cost(objects: Sequence[dict[str, Any]], oasis_sample: int = 200, repeat: int = 3) -> dict[str, float]:
    """Seconds of this process's CPU per object to validate ``objects`` once, as STIX 2.1: with cutout's validator
    (``cutout.model.validate.Validator``, what the exchange runs on every object and every copy; it gives
    stix2-validator's verdicts), the best of ``repeat`` passes after its schemas are compiled; and with
    stix2-validator itself (OASIS, default options) on the first ``oasis_sample`` objects, once (it takes
    milliseconds per object). Every object must be valid: the workload is."""
    from stix2validator import ValidationOptions, validate_parsed_json

    from cutout.model.validate import Validator

    validator = Validator()
    ours = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        problems = validator.check_all(objects)
        ours = min(ours, time.process_time() - start)
        if problems:
            raise ValueError(f"cutout's validator refused {len(problems)} of the workload's objects: {problems[0]}")
    sample = objects[:oasis_sample]
    options = ValidationOptions()
    validate_parsed_json(dict(sample[0]), options)  # its schemas loaded before the clock starts
    start = time.process_time()
    refused = sum(1 for obj in sample if not validate_parsed_json(dict(obj), options).is_valid)
    oasis = time.process_time() - start
    if refused:
        raise ValueError(f"stix2-validator refused {refused} of the workload's objects")
    return {
        "objects": float(len(objects)),
        "cutout": ours / len(objects),
        "oasis_objects": float(len(sample)),
        "oasis": oasis / len(sample) if sample else 0.0,
    }


def durable_commit(samples: int = 300) -> dict[str, float]:
    """Seconds one durable commit takes: a one-row transaction in SQLite, WAL, ``synchronous=FULL`` (one fsync
    of the WAL), on the same file system as the servers' data. Every acknowledged POST waits for one; how long
    depends on the disk and on what else writes to it."""
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-commit-") as tmp:
        db = sqlite3.connect(Path(tmp) / "commit.db", isolation_level=None)
        try:
            db.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE t (pk INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            body = os.urandom(1100)
            for i in range(samples + 10):
                start = time.perf_counter()
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO t (body) VALUES (?)", (body,))
                db.execute("COMMIT")
                if i >= 10:
                    times.append(time.perf_counter() - start)
        finally:
            db.close()
    times.sort()
    return {"p50": times[len(times) // 2], "p99": times[max(0, math.ceil(0.99 * len(times)) - 1)]}


def cpu_snapshot() -> tuple[float, float]:
    """(CPU seconds used by the whole machine, CPU seconds used by this process and its waited-for children)."""
    busy = 0.0
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def others_share(before: tuple[float, float], after: tuple[float, float], wall: float) -> str:
    """How much of the machine other processes used during the run (they disturb the figures)."""
    others = max(0.0, (after[0] - before[0]) - (after[1] - before[1]))
    cores = os.cpu_count() or 1
    return f"{others:,.0f} CPU-seconds ({others / (wall * cores):.0%} of the machine's {cores} cores over the run)"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def source_commit() -> str:
    """HEAD, and whether src/cutout differs from it (other work may be going on in the tree)."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    dirty = _git("status", "--porcelain", "--", "src/cutout")
    return commit + (" with uncommitted changes to src/cutout" if dirty and dirty != "unknown" else "")


def describe() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    commit = os.environ.get("BENCH_SNAPSHOT_COMMIT") or source_commit()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "source": (
            f"src/cutout as it was at the start, copied (sha256 {os.environ['BENCH_SNAPSHOT_DIGEST']}…)"
            if os.environ.get("BENCH_SNAPSHOT_DIGEST")
            else "src/cutout in place"
        ),
    }
