"""The exchange at sizes the benchmark does not reach: does anything grow with it?

``make bench`` measures exchanges of 10,000 and 100,000 objects; an exchange in use grows past that (the
twenty-second round found ingest slowing by half at 100,000 objects, which the benchmark's sizes hid). This
fills two exchanges in process and serves each in turn::

    python -m bench.scale                                   # 1,000,000 objects beside 100,000
    python -m bench.scale --objects 300000 --small 30000 --samples 300 --turns 3

Filling: ``Exchange.submit`` with the checking process on, one provider and one consumer under an agreement
that releases at once (every object is stored twice: the original and the consumer's copy), at ``--per``
objects per envelope, the cyclic collector's heap frozen as ``cutout serve`` freezes it. The objects are the
benchmark's first 10,000 again and again, each pass with new ids (the first group of every UUID is the pass's
number; the TLP markings' ids are kept, or nothing would be released); the rate of each tenth of the fill
(the time in ``submit`` only) is printed, so a rate that falls with the size shows.

Serving: ``cutout serve`` on each exchange, the two in turns (a host's speed moves by a third within
minutes: docs/benchmarks.md, "The twenty-first round"), each turn measuring its start-up (until it answers),
the latency (``measure.latency``: POST one object, the consumer polls until it has it), the consumer paging
through its whole inbox (``measure.fetch_all``, 1,000 per page), the serving process's peak resident size
during that fetch, and the other requests parties make (``PATHS``: by id, first pages under each filter, a
receipt, a withdrawal), each the fastest of three.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import orjson
from taxii2client.v21 import Collection

from bench import measure
from bench.servers import Party, Server
from bench.workload import Workload, chunks
from cutout.demo.server import start_server
from cutout.service import Exchange
from cutout.settings import load_settings

#: the objects of one pass of the fill: the benchmark's first ones, given new ids on each pass
PASS = 10_000
_PARTIES = "bench-parties.json"
#: the first group of a UUID in a STIX id, except a marking definition's (the TLP markings' ids are fixed)
_FIRST_GROUP = re.compile(r"(?<!marking-definition)--[0-9a-f]{8}-")


def passes(objects: Sequence[dict[str, Any]], n: int) -> Iterator[bytes]:
    """``n`` passes of ``objects`` as JSON, each with new ids: the first group of every UUID in an id or a
    reference replaced with the pass's number (references within a pass still meet their targets). Made one
    at a time: a million objects' worth would take a gigabyte."""
    text = orjson.dumps(list(objects)).decode()
    for i in range(n):
        yield _FIRST_GROUP.sub(f"--{i:08x}-", text).encode()


class Step(NamedTuple):
    held: int  # objects in the provider's outbox after the step
    rate: float  # objects per second over the step, in ``submit``


def fill(folder: Path, objects: int, per: int = 1000, base: int = PASS, steps: int = 10) -> list[Step]:
    """A new exchange in ``folder`` holding ``objects`` objects (a multiple of ``base``) from one provider, each
    released at once to one consumer; the parties' names and tokens are kept in the folder for ``Filled``."""
    if objects % base or base % 10:
        raise ValueError(f"{objects:,} objects are not whole passes of {base:,} (a pass is whole blocks of ten)")
    settings = load_settings(folder, {"check_process": True}, environ={})
    Exchange.init(settings, "Scale bench")
    ex = Exchange.open(settings)
    try:
        ex.start_checks()
        _, provider = ex.add_party("Bench Provider", provider=True, consumer=False)
        _, consumer = ex.add_party("Bench Consumer", provider=False, consumer=True)
        ex.add_agreement("Bench Provider", "Bench Consumer", delay=0)
        (folder / _PARTIES).write_text(json.dumps({"Bench Provider": provider, "Bench Consumer": consumer}))
        party = ex.authenticate(None, provider)
        outbox = next(c for c in ex.collections(party) if c.kind == "outbox")
        every = max(base, objects // steps // base * base)
        out: list[Step] = []
        held, busy = 0, 0.0  # busy: seconds in ``submit`` (not in making the passes) since the last step
        gc.collect()
        gc.freeze()  # as ``cutout serve`` freezes its heap once started
        for body in passes(Workload().objects(base), objects // base):
            envelopes = chunks(orjson.loads(body), per)
            started = time.perf_counter()
            for chunk in envelopes:
                ex.submit(party, outbox.uuid, chunk)
            busy += time.perf_counter() - started
            held += base
            if held % every == 0 or held == objects:
                before = out[-1].held if out else 0
                out.append(Step(held, (held - before) / busy))
                measure.log(f"  {held:>10,} objects: {out[-1].rate:,.0f}/s from {before:,}")
                busy = 0.0
        return out
    finally:
        gc.unfreeze()
        ex.close()


class Filled(Server):
    """``cutout serve`` on an exchange ``fill`` made; stopping it leaves the exchange in place."""

    def __init__(self, folder: Path) -> None:
        super().__init__("cutout", Path(tempfile.mkdtemp(prefix="cutout-scale-")))
        parties = json.loads((folder / _PARTIES).read_text())
        self.provider = Party("Bench Provider", parties["Bench Provider"])
        self.consumer = Party("Bench Consumer", parties["Bench Consumer"])
        settings = load_settings(folder, {}, environ={})
        ex = Exchange.open(settings)
        try:
            self._colls = {
                p.name: {c.kind: c.uuid for c in ex.collections(ex.authenticate(p.name, p.password))}
                for p in (self.provider, self.consumer)
            }
        finally:
            ex.close()
        started = time.perf_counter()
        running = start_server(folder, timeout=600.0, log=self.work / "serve.log")
        self.start_up = time.perf_counter() - started
        self._started(running.proc, running.url)

    def _url(self, who: Party, kind: str) -> str:
        return f"{self.base}/exchange/collections/{self._colls[who.name][kind]}/"

    def writer(self, who: Party) -> Collection:
        return self._collection(self._url(who, "outbox"), who)

    def reader(self, who: Party) -> Collection:
        return self._collection(self._url(who, "inbox"), who)


class Turn(NamedTuple):
    size: int
    start_up: float  # seconds until it answered
    latency: measure.Latency
    fetch: measure.Timed  # the consumer's whole inbox
    paths: dict[str, float]  # ``PATHS``: seconds, the fastest of ``TRIES`` (inf: not answered within ``PATH_TIMEOUT``)


#: the other requests parties make, each timed on the exchange as it stands: the twenty-fourth round found
#: four paths that grew with the exchange (one first page took 380 s at 1,000,000 objects), which neither the
#: latency nor the fetch takes
PATHS = (
    "one object by id",
    "its versions",
    "match[id], one",
    "first page of objects",
    "first page of the manifest",
    "match[version]=first, first page",
    "match[version]=all, first page",
    "match[type]=indicator, first page",
    "match[type] of a type none has",
    "match[spec_version]=2.0, none has",
    "match[version] of an instant none has",
    "added_after past the end",
    "a receipt of an inbox object",
    "a withdrawal (provider)",
)
TRIES = 3
PATH_TIMEOUT = 120.0


def time_paths(server: Filled) -> dict[str, float]:
    """Each of ``PATHS`` ``TRIES`` times, the fastest; the withdrawals take the provider's first objects."""
    headers = {"Accept": "application/taxii+json;version=2.1"}
    out: dict[str, float] = {}
    with (
        httpx.Client(
            auth=(server.consumer.name, server.consumer.password), headers=headers, timeout=PATH_TIMEOUT
        ) as reader,
        httpx.Client(
            auth=(server.provider.name, server.provider.password), headers=headers, timeout=PATH_TIMEOUT
        ) as writer,
    ):
        inbox, outbox = server._url(server.consumer, "inbox"), server._url(server.provider, "outbox")
        some = reader.get(inbox + "objects/", params={"limit": 3}).json()["objects"][2]["id"]
        mine = [o["id"] for o in writer.get(outbox + "objects/", params={"limit": TRIES}).json()["objects"]]

        def first_page(name: str, value: str) -> Callable[[int], httpx.Response]:
            """The inbox's first page of 1,000 under one filter."""
            return lambda i: reader.get(inbox + "objects/", params={"limit": 1000, f"match[{name}]": value})

        asked: dict[str, Callable[[int], httpx.Response]] = {
            "one object by id": lambda i: reader.get(f"{inbox}objects/{some}/"),
            "its versions": lambda i: reader.get(f"{inbox}objects/{some}/versions/"),
            "match[id], one": lambda i: reader.get(inbox + "objects/", params={"match[id]": some}),
            "first page of objects": lambda i: reader.get(inbox + "objects/", params={"limit": 1000}),
            "first page of the manifest": lambda i: reader.get(inbox + "manifest/", params={"limit": 1000}),
            "match[version]=first, first page": first_page("version", "first"),
            "match[version]=all, first page": first_page("version", "all"),
            "match[type]=indicator, first page": first_page("type", "indicator"),
            # answered from the types the inbox has held (schema.collection_types): it read the whole inbox
            "match[type] of a type none has": first_page("type", "x-none-sent"),
            "match[spec_version]=2.0, none has": first_page("spec_version", "2.0"),
            # the path left as it is: nothing matches, so the page reads the whole inbox (docs/benchmarks.md)
            "match[version] of an instant none has": first_page("version", "2000-01-01T00:00:00.000Z"),
            "added_after past the end": lambda i: reader.get(
                inbox + "objects/", params={"added_after": "2999-01-01T00:00:00Z"}
            ),
            "a receipt of an inbox object": lambda i: reader.get(
                f"{server.base}/exchange/receipts/{some}/", headers={"Accept": "application/json"}
            ),
            "a withdrawal (provider)": lambda i: writer.delete(f"{outbox}objects/{mine[i]}/"),
        }
        for name in PATHS:
            best = math.inf
            for i in range(TRIES):
                started = time.perf_counter()
                try:
                    r = asked[name](i)
                except httpx.TimeoutException:
                    break  # inf: it did not answer in PATH_TIMEOUT
                if r.status_code != 200:
                    raise measure.HarnessError(f"{name}: HTTP {r.status_code}: {r.text[:200]}")
                best = min(best, time.perf_counter() - started)
            out[name] = best
    return out


def serve(folder: Path, size: int, samples: int, seed: int) -> Turn:
    """One turn on the exchange in ``folder``: start-up, ``samples`` latency samples (new objects, from
    ``seed``), then the consumer's whole inbox fetched (the objects the latency samples added included), then
    the other requests parties make (``PATHS``: the withdrawals revoke copies, which keeps the inbox's count)."""
    with Filled(folder) as server:
        lat = measure.latency(server, Workload(seed).singles(samples + 3), size)
        fetched = measure.fetch_all(server, 1000)
        return Turn(size, server.start_up, lat, fetched, time_paths(server))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, default=1_000_000, help="the large exchange's size")
    p.add_argument("--small", type=int, default=100_000, help="the exchange beside it")
    p.add_argument("--per", type=int, default=1000, help="objects per envelope while filling")
    p.add_argument("--samples", type=int, default=300, help="latency samples per turn")
    p.add_argument("--turns", type=int, default=2, help="turns of each exchange, taken alternately")
    p.add_argument("--keep", type=Path, help="fill in this folder and keep it (default: a temporary one)")
    args = p.parse_args()
    if not 0 < args.small < args.objects:
        p.error("--small must be smaller than --objects")
    root = args.keep or Path(tempfile.mkdtemp(prefix="cutout-scale-"))
    folders = {size: root / f"exchange-{size}" for size in (args.small, args.objects)}
    try:
        for size, folder in folders.items():
            measure.log(f"filling an exchange with {size:,} objects at {args.per:,} per envelope")
            fill(folder, size, args.per)
        turns: list[Turn] = []
        for t in range(args.turns):
            for size, folder in folders.items() if t % 2 == 0 else reversed(folders.items()):
                turn = serve(folder, size, args.samples, seed=1_000 * t + size)
                turns.append(turn)
                measure.log(
                    f"  {size:>10,} objects: start-up {turn.start_up:.2f} s; latency p50 "
                    f"{turn.latency.p50 * 1000:.2f} ms, p99 {turn.latency.p99 * 1000:.2f} ms; fetched "
                    f"{turn.fetch.objects:,} at {turn.fetch.rate:,.0f}/s, peak RSS {turn.fetch.peak_rss >> 20} MB"
                )
        print("| exchange | start-up | latency p50 / p99 | fetch of the whole inbox | peak RSS, fetching |")
        print("|--:|--:|--:|--:|--:|")
        for turn in sorted(turns, key=lambda t: t.size):
            print(
                f"| {turn.size:,} | {turn.start_up:.2f} s | {turn.latency.p50 * 1000:.2f} / "
                f"{turn.latency.p99 * 1000:.2f} ms | {turn.fetch.rate:,.0f}/s ({turn.fetch.objects:,}) | "
                f"{turn.fetch.peak_rss >> 20} MB |"
            )
        sizes = sorted(folders)
        print(f"\n| request (ms, the fastest of {TRIES} in any turn) | " + " | ".join(f"{n:,}" for n in sizes) + " |")
        print("|---|" + "--:|" * len(sizes))
        for name in PATHS:
            best = [min(t.paths[name] for t in turns if t.size == n) for n in sizes]
            print(f"| {name} | " + " | ".join(_ms(b) for b in best) + " |")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


def _ms(seconds: float) -> str:
    return f"over {PATH_TIMEOUT:.0f} s" if math.isinf(seconds) else f"{seconds * 1000:,.1f}"


if __name__ == "__main__":
    main()
