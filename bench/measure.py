"""The measurements, each against a running server through taxii2-client 2.3.0 (the same client for both).

Envelopes are serialised before any clock starts and handed to taxii2-client as bytes, so the client's own
JSON encoding is not timed; its decoding of what the server sends back is (requests' ``.json()``), the same
for both servers.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson
import requests
from taxii2client.v21 import as_pages

from bench.servers import CutoutServer, Server, samplers_paused
from bench.workload import envelopes


def log(msg: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class HarnessError(RuntimeError):
    """The measurement itself went wrong (a refused envelope, objects missing): not a timing."""


@dataclass
class Timed:
    objects: int
    seconds: float
    peak_rss: int
    finished: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.objects / self.seconds if self.seconds > 0 else 0.0

    def cpu_per(self, who: str = "server") -> float | None:
        """CPU seconds per object that ``who`` spent in the run, when measured: "server" (its process and those
        it started), "process" (the server's process alone) or "client"."""
        spent = self.extra.get(f"{who}_cpu")
        return spent / self.objects if spent is not None and self.objects else None


class CpuMeter:
    """CPU seconds spent over a ``with`` block by the server (its process and those it started), by its process
    alone (cutout's serving process without its checking process) and by this (client) process."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.server_cpu: float | None = None
        self.process_cpu: float | None = None
        self.client_cpu: float | None = None

    def __enter__(self) -> CpuMeter:
        self._s, self._p, self._c = self.server.cpu(), self.server.own_cpu(), time.process_time()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        end, own = self.server.cpu(), self.server.own_cpu()
        self.client_cpu = time.process_time() - self._c
        if end < self._s or own < self._p:  # the server was killed meanwhile: /proc has nothing left to read
            return
        self.server_cpu, self.process_cpu = end - self._s, own - self._p

    def extra(self) -> dict[str, float]:
        spent = (("server_cpu", self.server_cpu), ("process_cpu", self.process_cpu), ("client_cpu", self.client_cpu))
        return {k: v for k, v in spent if v is not None}


class Budget:
    """A time budget for a run against a slow server: when it runs out the server is killed, the request in
    flight fails, and ``finished`` is False. Without a budget (None) it does nothing."""

    def __init__(self, server: Server, seconds: float | None) -> None:
        self.server = server
        self.timer = threading.Timer(seconds, server.kill) if seconds else None
        self.finished = True

    def __enter__(self) -> Budget:
        if self.timer is not None:
            self.timer.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> bool:
        if self.timer is not None:
            self.timer.cancel()
        if e is not None and isinstance(e, requests.RequestException) and self.server.killed_by_budget:
            self.finished = False
            return True
        return False


# -- ingest ------------------------------------------------------------------------------------------------------
def post(server: Server, bodies: Sequence[bytes], counts: Sequence[int], budget: float | None = None) -> Timed:
    """POST every envelope to the provider's collection; every object must be acknowledged as stored.

    With a time budget, the server is killed when it runs out and the run counts as not finished."""
    coll = server.writer(server.provider)
    server.mark()
    done = 0
    with Budget(server, budget) as b, CpuMeter(server) as cpu:
        start = time.perf_counter()
        for body, n in zip(bodies, counts, strict=True):
            status = coll.add_objects(body)
            if status.status != "complete" or status.success_count != n:
                raise HarnessError(
                    f"{server.name} did not store an envelope of {n}: status {status.status}, "
                    f"{status.success_count} succeeded, {status.failure_count} failed"
                )
            done += n
    seconds = time.perf_counter() - start
    note = "" if b.finished else f"did not finish in {budget:.0f} s ({done:,} objects stored by then)"
    return Timed(done, seconds, server.peak_rss(), b.finished, note, {"wanted": sum(counts), **cpu.extra()})


def ingest(server: Server, objects: Sequence[dict[str, Any]], per: int, budget: float | None = None) -> Timed:
    bodies = envelopes(objects, per)
    counts = [min(per, len(objects) - i) for i in range(0, len(objects), per)]
    return post(server, bodies, counts, budget)


def ingest_at_once(
    server: Server, objects: Sequence[dict[str, Any]], per: int, writers: int, budget: float | None = None
) -> Timed:
    """``writers`` clients POST at once, each its own share of ``objects`` (contiguous, whole blocks of ten, so
    nothing refers to another's objects) in envelopes of ``per``, one after another, from a thread each; the
    time runs from their common start until the last is acknowledged. Every object must be stored.

    With a time budget, the server is killed when it runs out and the run counts as not finished."""
    clients = server.writers(writers)
    blocks = len(objects) // 10
    bounds = [10 * (blocks * i // writers) for i in range(writers + 1)]
    shares = [objects[a:b] for a, b in itertools.pairwise(bounds)]
    work = [(envelopes(share, per), [min(per, len(share) - i) for i in range(0, len(share), per)]) for share in shares]
    start_line = threading.Barrier(writers + 1)
    stored = [0] * writers
    failed: list[BaseException] = []
    server.mark()

    def send(i: int) -> None:
        bodies, counts = work[i]
        start_line.wait()
        try:
            for body, n in zip(bodies, counts, strict=True):
                status = clients[i].add_objects(body)
                if status.status != "complete" or status.success_count != n:
                    raise HarnessError(
                        f"{server.name} did not store an envelope of {n} from writer {i + 1}: status "
                        f"{status.status}, {status.success_count} succeeded, {status.failure_count} failed"
                    )
                stored[i] += n
        except requests.RequestException as exc:
            if not server.killed_by_budget:
                failed.append(exc)
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    threads = [threading.Thread(target=send, args=(i,), name=f"bench-writer-{i + 1}") for i in range(writers)]
    for t in threads:
        t.start()
    with Budget(server, budget) as b, CpuMeter(server) as cpu:
        start_line.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - start
    if failed:
        raise failed[0]
    done = sum(stored)
    finished = b.finished and not server.killed_by_budget
    note = "" if finished else f"did not finish in {budget:.0f} s ({done:,} objects stored by then)"
    extra = {"wanted": len(objects), "writers": writers, **cpu.extra()}
    return Timed(done, seconds, server.peak_rss(), finished, note, extra)


# -- fetch -------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """The client's heap as it stands (the workload's objects, every server's client) kept out of the garbage
    collector's way: without it each page's thousand decoded dicts set off collections that walk all of it, and
    the client, not the server, made fetching 100,000 objects look slower per object than 10,000."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def fetch_all(server: Server, page: int, budget: float | None = None) -> Timed:
    """Page through the consumer's collection (``limit`` = page, following ``next``), the client's heap frozen."""
    coll = server.reader(server.consumer)
    server.mark()
    got = pages = 0
    with frozen_heap(), Budget(server, budget) as b, CpuMeter(server) as cpu:
        start = time.perf_counter()
        for envelope in as_pages(coll.get_objects, per_request=page):
            got += len(envelope.get("objects", ()))
            pages += 1
    seconds = time.perf_counter() - start
    note = "" if b.finished else f"did not finish in {budget:.0f} s: {got:,} objects in {pages} pages by then"
    return Timed(got, seconds, server.peak_rss(), b.finished, note, {"pages": pages, **cpu.extra()})


def count_inbox(server: Server, who: Any, page: int = 1000) -> int:
    coll = server.reader(who)
    return sum(len(env.get("objects", ())) for env in as_pages(coll.get_objects, per_request=page))


# -- latency -----------------------------------------------------------------------------------------------------
def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Latency:
    samples: list[float]
    polls: int
    size_before: int
    wanted: int = 0
    note: str = ""
    #: CPU seconds per counted sample, of the server process and of this process (the client), when every
    #: sample was taken
    server_cpu: float | None = None
    client_cpu: float | None = None

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)  # nearest rank
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else math.nan

    @property
    def complete(self) -> bool:
        return len(self.samples) >= self.wanted

    @classmethod
    def merged(cls, parts: Sequence[Latency]) -> Latency:
        """One measurement from several taken on one server (its samples in turn with other servers'): every
        sample and poll, the notes, and the CPU per sample weighted by each part's samples (None unless every
        part has it)."""
        samples = [x for p in parts for x in p.samples]

        def weighted(values: list[float | None]) -> float | None:
            if not samples or any(v is None for v in values):
                return None
            return sum((v or 0.0) * len(p.samples) for v, p in zip(values, parts, strict=True)) / len(samples)

        return cls(
            samples,
            sum(p.polls for p in parts),
            parts[0].size_before if parts else 0,
            sum(p.wanted for p in parts),
            "; ".join(p.note for p in parts if p.note),
            weighted([p.server_cpu for p in parts]),
            weighted([p.client_cpu for p in parts]),
        )


def latency(
    server: Server,
    singles: Sequence[dict[str, Any]],
    size_before: int,
    warm_up: int = 3,
    budget: float | None = None,
) -> Latency:
    """The provider POSTs one object; the consumer polls ``added_after`` (a timestamp taken just before the
    POST) until it receives it. One sample per object; the first ``warm_up`` are not counted.

    With a time budget, no new sample is started once it has run out, and a sample still running when it
    runs out is ended by killing the server (its run stops there)."""
    writer = server.writer(server.provider)
    reader = server.reader(server.consumer)
    bodies = [orjson.dumps({"objects": [o]}) for o in singles]
    samples: list[float] = []
    polls = 0
    deadline = time.perf_counter() + budget if budget else math.inf
    cpu_start = (0.0, 0.0)
    wanted = len(bodies) - warm_up
    server_cpu = client_cpu = None
    # no memory figure is read here, and the harness's samplers would take the client's CPU
    with Budget(server, budget) as b, samplers_paused():
        for i, body in enumerate(bodies):
            if time.perf_counter() >= deadline:
                break
            if i == warm_up:
                cpu_start = (server.cpu(), time.process_time())
            after = _stamp(time.time())
            start = time.perf_counter()
            status = writer.add_objects(body)
            if status.status != "complete" or status.success_count != 1:
                raise HarnessError(f"{server.name} refused a one-object envelope: {status.status}")
            while True:
                envelope = reader.get_objects(added_after=after)
                polls += 1
                got = len(envelope.get("objects", ()))
                if got:
                    break
                if time.perf_counter() - start > 30 and not budget:
                    raise HarnessError(f"{server.name}: the consumer did not receive the object within 30 s")
            elapsed = time.perf_counter() - start
            if got != 1:
                raise HarnessError(f"{server.name}: added_after={after} gave {got} objects, expected 1")
            if i >= warm_up:
                samples.append(elapsed)
        if samples and len(samples) == wanted:  # not reached when the budget ran out mid-sample
            server_cpu = (server.cpu() - cpu_start[0]) / wanted
            client_cpu = (time.process_time() - cpu_start[1]) / wanted
    note = ""
    if len(samples) < wanted:
        note = f"{len(samples)} of {wanted} samples in the {budget:.0f} s budget"
        if not b.finished:
            note += f"; the server was stopped {time.perf_counter() - start:.0f} s into a sample"
    return Latency(samples, polls, size_before, wanted, note, server_cpu, client_cpu)


# -- fan-out -----------------------------------------------------------------------------------------------------
def fanout(server: CutoutServer, objects: Sequence[dict[str, Any]], per: int) -> Timed:
    """One provider, N consumers under agreements (delay 0): released copies per second of the POSTs."""
    timed = ingest(server, objects, per)
    copies = len(objects) * len(server.consumers)
    for who in (server.consumers[0], server.consumers[-1]):
        n = count_inbox(server, who)
        if n != len(objects):
            raise HarnessError(f"fan-out: {who.name} received {n} of {len(objects)} objects")
    return Timed(copies, timed.seconds, timed.peak_rss, extra={**timed.extra, "objects": len(objects)})


# -- during a burst -----------------------------------------------------------------------------------------------
@dataclass
class Burst:
    """A consumer's polls and one-object POSTs, with the exchange idle and while bulk providers POST envelope
    after envelope; ``ingested`` objects were acknowledged over the ``seconds`` the burst was measured."""

    polls_idle: Latency
    polls_busy: Latency
    posts_idle: Latency
    posts_busy: Latency
    ingested: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.ingested / self.seconds if self.seconds > 0 else 0.0


def during_burst(
    server: CutoutServer,
    objects: Sequence[dict[str, Any]],
    per: int,
    polls: int,
    singles: Sequence[dict[str, Any]],
    gap: float = 0.01,
    post_gap: float = 0.05,
    providers: int = 1,
) -> Burst:
    """Two things a time-critical party does, each first with nothing else going on and then while bulk
    providers keep the exchange busy (``providers`` threads of this process, each sending envelopes of
    ``per``, serialised beforehand, one after another, from a provider of its own):

    - the consumer's poll: ``added_after`` a moment before the first envelope, ``limit=10`` (the same ten
      objects each time), ``polls`` times, one every ``gap`` seconds;
    - a one-object POST (``singles``, one each), acknowledged stored and released: every ``post_gap`` seconds.

    The bulk providers' threads spend their time waiting for the server's answers, so they hardly compete
    with the measuring thread for this process's interpreter."""
    bodies = envelopes(objects, per)
    if len(bodies) < 1 + providers or per < 10:
        raise HarnessError("a burst needs at least one envelope of at least ten objects per provider, and one more")
    half = len(singles) // 2
    if half < 1:
        raise HarnessError("a burst needs at least two single objects")
    writers = server.writers(providers)
    writer, reader = writers[0], server.reader(server.consumer)
    urgent = server.writer_apart(server.provider)  # the first provider's, on a client of its own
    since = _stamp(time.time() - 1)
    first = writer.add_objects(bodies[0])
    if first.status != "complete" or first.success_count != min(per, len(objects)):
        raise HarnessError(f"{server.name} did not store the first envelope of the burst: {first.status}")

    def poll() -> float:
        start = time.perf_counter()
        got = len(reader.get_objects(added_after=since, limit=10).get("objects", ()))
        took = time.perf_counter() - start
        if got != 10:
            raise HarnessError(f"{server.name}: a poll for ten objects gave {got}")
        time.sleep(gap)
        return took

    def post(obj: dict[str, Any]) -> float:
        start = time.perf_counter()
        status = urgent.add_objects(orjson.dumps({"objects": [obj]}))
        took = time.perf_counter() - start
        if status.status != "complete" or status.success_count != 1:
            raise HarnessError(f"{server.name} refused a one-object envelope: {status.status}")
        time.sleep(post_gap)
        return took

    for _ in range(3):  # unrecorded, as in the latency loop
        poll()
    polls_idle = [poll() for _ in range(polls)]
    posts_idle = [post(o) for o in singles[:half]]

    stored = 0
    counting = threading.Lock()
    stop = threading.Event()
    failed: list[BaseException] = []

    def provider(i: int) -> None:
        nonlocal stored
        try:
            for body in bodies[1 + i :: providers]:  # whole envelopes, each provider every providers-th
                if stop.is_set():
                    return
                status = writers[i].add_objects(body)
                if status.status != "complete":
                    raise HarnessError(f"{server.name} did not store an envelope of the burst: {status.status}")
                with counting:
                    stored += status.success_count
        except BaseException as e:  # handed to the measuring thread, which raises it
            failed.append(e)

    threads = [
        threading.Thread(target=provider, args=(i,), name=f"burst-provider-{i + 1}", daemon=True)
        for i in range(providers)
    ]

    def bursting() -> bool:  # every bulk provider still sending
        return all(t.is_alive() for t in threads)

    polls_busy: list[float] = []
    posts_busy: list[float] = []
    for t in threads:
        t.start()
    try:
        while stored == 0 and bursting():  # the burst is under way: one envelope through
            time.sleep(0.001)
        start_stored, start = stored, time.perf_counter()
        while len(polls_busy) < polls and bursting():
            polls_busy.append(poll())
        for obj in singles[half : 2 * half]:
            if not bursting():
                break
            posts_busy.append(post(obj))
        seconds, ingested = time.perf_counter() - start, stored - start_stored
        ran_out = not bursting()
    finally:
        stop.set()
        for t in threads:
            t.join()
    if failed:
        raise failed[0]

    def ended(taken: list[float], wanted: int) -> str:
        return f"the burst ended after {len(taken)} of {wanted}" if ran_out and len(taken) < wanted else ""

    return Burst(
        Latency(polls_idle, polls, per, polls),
        Latency(polls_busy, len(polls_busy), per, polls, ended(polls_busy, polls)),
        Latency(posts_idle, 0, per, half),
        Latency(posts_busy, 0, per, half, ended(posts_busy, half)),
        ingested,
        seconds,
    )
