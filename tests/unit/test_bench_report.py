"""bench: where an ingest run's CPU went, split between cutout's serving process, its checking process and the
client, and the bounds the table draws from it (docs/benchmarks.md reads the ingest misses from that row);
several providers' envelopes at once, beside one provider's; and the cases the targets compare (fetch's two
sizes, latency's three exchanges) measured side by side."""

from __future__ import annotations

import statistics
from typing import Any

import orjson
import pytest
from bench import report
from bench.measure import Burst, CpuMeter, HarnessError, Latency, Timed, ingest_at_once
from bench.run import Sizes
from bench.workload import Workload


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


# -- several providers at once ----------------------------------------------------------------------------------


class _Status:
    def __init__(self, n: int, ok: bool = True) -> None:
        self.status = "complete" if ok else "pending"
        self.success_count, self.failure_count = (n, 0) if ok else (0, n)


class _Outbox:
    """A writer's collection that keeps what it was sent (refusing the ``refuse``-th envelope, counting from 1)."""

    def __init__(self, refuse: int = 0) -> None:
        self.sent: list[list[str]] = []
        self._refuse = refuse

    def add_objects(self, body: bytes) -> _Status:
        ids = [o["id"] for o in orjson.loads(body)["objects"]]
        self.sent.append(ids)
        return _Status(len(ids), ok=len(self.sent) != self._refuse)


class _ServerOfWriters(_FakeServer):
    name = "fake"
    killed_by_budget = False

    def __init__(self, outboxes: list[_Outbox]) -> None:
        super().__init__(total=[0.0, 1.0], own=[0.0, 0.5])
        self.outboxes = outboxes

    def writers(self, k: int) -> list[_Outbox]:
        assert k == len(self.outboxes)
        return self.outboxes

    def mark(self) -> None:
        pass

    def peak_rss(self) -> int:
        return 0


def test_writers_at_once_each_send_a_share_of_whole_blocks_and_all_of_it_counts() -> None:
    objects = Workload().objects(2_330)
    outboxes = [_Outbox() for _ in range(4)]
    timed = ingest_at_once(_ServerOfWriters(outboxes), objects, 250, 4)  # type: ignore[arg-type]
    assert timed.objects == len(objects) and timed.finished
    shares = [[i for envelope in o.sent for i in envelope] for o in outboxes]
    assert [i for share in shares for i in share] == [o["id"] for o in objects]  # each its own, in order, all once
    assert all(len(share) % 10 == 0 for share in shares)  # a block (what its sightings refer to) is not split
    assert all(len(envelope) <= 250 for o in outboxes for envelope in o.sent)
    assert {len(share) for share in shares} == {580, 590}


def test_an_envelope_a_writer_at_once_was_refused_stops_the_run() -> None:
    outboxes = [_Outbox(), _Outbox(refuse=2)]
    with pytest.raises(HarnessError, match="writer 2"):
        ingest_at_once(_ServerOfWriters(outboxes), Workload().objects(400), 100, 2)  # type: ignore[arg-type]


def test_the_table_puts_several_providers_at_once_beside_one() -> None:
    results: dict[str, Any] = {
        "ingest.1000.cutout": Timed(10_000, 0.7, 1),
        "ingest.at_once.cutout": Timed(
            20_000, 1.12, 0, extra={"server_cpu": 2.2, "process_cpu": 1.2, "client_cpu": 0.1}
        ),
        "ingest.1000.medallion": Timed(10_000, 4.0, 1),
        "ingest.at_once.medallion": Timed(20_000, 10.0, 0),
    }
    rows = {row.name.strip(): row for row in report.build_rows(results, Sizes())}
    at_once = rows["ingest 20,000 objects, 4 providers at once, 1,000/envelope"]
    assert (at_once.cutout, at_once.medallion, at_once.target, at_once.verdict) == ("17,857/s", "2,000/s", "", "—")
    against = rows["4 providers at once against one, 1,000/envelope"]
    assert (against.cutout, against.medallion) == ("1.25×", "0.80×")  # 17,857 / 14,286 and 2,000 / 2,500
    assert rows["CPU of the serving process / its checking process / the client, 4 at once"].cutout.startswith(
        "60 / 50 / 5 µs per object"
    )


def test_the_table_has_the_burst_of_several_providers_beside_the_one_providers() -> None:
    def lat(ms: list[float]) -> Latency:
        return Latency([x / 1000 for x in ms], 0, 1000, len(ms))

    def burst(busy_ms: float) -> Burst:
        return Burst(lat([2.0] * 9), lat([busy_ms] * 9), lat([4.0] * 9), lat([busy_ms * 10] * 9), 8_000, 1.0)

    rows = {row.name.strip(): row for row in report.build_rows({"burst.cutout": burst(3.0)}, Sizes())}
    assert "a one-object POST (until acknowledged) while the provider POSTs 1,000-object envelopes, p50 / p99" in rows
    assert not any("providers POST" in name for name in rows)  # not measured, not shown
    results = {"burst.cutout": burst(3.0), "burst.at_once.cutout": burst(6.0)}
    rows = {row.name.strip(): row for row in report.build_rows(results, Sizes())}
    at_once = "while 4 providers POST 1,000-object envelopes at once, p50 / p99"
    assert rows[f"a consumer's poll (ten objects) {at_once}"].cutout == "6.0 ms / 6.0 ms"
    assert rows[f"a one-object POST (until acknowledged) {at_once}"].cutout == "60.0 ms / 60.0 ms"
    assert rows["the providers' ingest during that burst"].cutout == "8,000/s"


class _Holding:
    """A stand-in for a cutout server: what it holds, whether it was stopped."""

    pid = 0
    consumer = None

    def __init__(self) -> None:
        self.held = 0
        self.stopped = False

    def __enter__(self) -> _Holding:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped = True

    def stop(self) -> None:
        self.stopped = True

    def tracebacks(self) -> str:
        return ""


def test_the_two_fetch_sizes_are_paged_in_turn_each_on_a_server_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flatness target is a ratio of the two sizes' rates: their runs alternate, on two servers up at once,
    so that the host's speed moving over minutes moves both (runs of one size minutes before the other's read
    0.77, side by side 0.94-0.98; docs/benchmarks.md, "The twenty-first round")."""
    from bench import run as bench_run

    servers: list[_Holding] = []
    fetched: list[tuple[int, int]] = []  # (server, objects it held) per fetch, in order
    slow = iter([10.0, 2.0, 5.0, 10.0, 1.0, 20.0])  # seconds per run, the sizes in turn

    def new_server(**_: object) -> _Holding:
        servers.append(_Holding())
        return servers[-1]

    def ingest(server: _Holding, objects: list[Any], per: int, budget: float | None = None) -> Timed:
        server.held += len(objects)
        return Timed(len(objects), 1.0, 100 * server.held)

    def fetch_all(server: _Holding, page: int, budget: float | None = None) -> Timed:
        fetched.append((servers.index(server), server.held))
        return Timed(server.held, next(slow), 100 * server.held + 1, extra={"pages": server.held // page})

    monkeypatch.setattr(bench_run, "CutoutServer", new_server)
    monkeypatch.setattr(bench_run.measure, "ingest", ingest)
    monkeypatch.setattr(bench_run.measure, "fetch_all", fetch_all)
    sizes = Sizes(fetch_sizes=(200, 400), page=100, fetch_repeat=3, load_per=100)
    r = bench_run.Run(sizes)
    r.peer = False
    r.fetch()
    assert fetched == [(0, 200), (1, 400)] * 3  # one server holds each size, and the two take turns
    assert servers[0].stopped and not servers[1].stopped  # the large one stays up for the latency runs
    assert r.results["fetch.200.cutout"].seconds == 1.0 and r.results["fetch.400.cutout"].seconds == 2.0  # the best
    assert r.results["fetch.200.cutout"].note.endswith("20/s, 40/s, 200/s")
    rows = {row.name.strip(): row for row in report.build_rows(r.results, sizes)}
    assert rows["fetch 400 ÷ fetch 200 (the best of each; their runs taken in turn, a server each)"].cutout == "1.00"
    memory = r.results["memory.cutout"]
    assert (memory["small_peak"], memory["big_peak"]) == (20_001, 40_001)  # each size's server's own peak
    r.close()


def test_the_three_latency_exchanges_take_their_samples_in_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty, large and many-party exchanges are up at once and take a share of the samples each in turn, so that
    the host's drift does not read as the latency growing with the exchange; the shares add up to the samples
    asked for, only the first turn has unrecorded warm-up samples, and the parts merge into one measurement."""
    from bench import run as bench_run

    class Done(Exception):
        """The burst comes next; its servers are not wanted here."""

    servers: list[tuple[_Holding, dict[str, object]]] = []
    taken: list[tuple[int, int, int, int]] = []  # (server, objects sent, size, warm-up) per latency call

    def new_server(**kw: object) -> _Holding:
        servers.append((_Holding(), kw))
        return servers[-1][0]

    def ingest(server: _Holding, objects: list[Any], per: int, budget: float | None = None) -> Timed:
        server.held += len(objects)
        return Timed(len(objects), 1.0, 0)

    def latency(server: _Holding, singles: list[Any], size: int, warm_up: int = 3) -> Latency:
        index = [s for s, _ in servers].index(server)
        turn = sum(1 for t in taken if t[0] == index)
        taken.append((index, len(singles), size, warm_up))
        counted = len(singles) - warm_up
        ms = float(1 + index + turn)  # each turn of each exchange a figure of its own
        return Latency([ms / 1000] * counted, counted, size, counted, "", ms / 500, 0.001)

    def burst(*args: object, **kw: object) -> None:
        raise Done

    monkeypatch.setattr(bench_run, "CutoutServer", new_server)
    monkeypatch.setattr(bench_run.measure, "ingest", ingest)
    monkeypatch.setattr(bench_run.measure, "latency", latency)
    monkeypatch.setattr(bench_run.measure, "during_burst", burst)
    monkeypatch.setattr(bench_run.Run, "_check_log", lambda self, server: None)
    sizes = Sizes(fetch_sizes=(200, 400), latency_samples=10, latency_turns=3, members=(20, 2), burst_objects=20)
    r = bench_run.Run(sizes)
    r.peer = False
    with pytest.raises(Done):
        r.latency()
    empty, members, big = 0, 1, 2  # in the order they were started
    assert servers[members][1] == {"members": (20, 2)} and servers[big][0].held == 400
    assert servers[empty][0].stopped and servers[members][0].stopped and not servers[big][0].stopped
    assert [(i, size) for i, _, size, _ in taken] == [(empty, 0), (big, 400), (members, 0)] * 3
    assert [n - w for i, n, _, w in taken if i == empty] == [3, 3, 4]  # 10 samples in three shares
    assert [w for _, _, _, w in taken] == [3, 3, 3, 0, 0, 0, 0, 0, 0]
    for key in ("empty", "big", "members"):
        lat = r.results[f"latency.{key}.cutout"]
        assert len(lat.samples) == lat.wanted == lat.polls == 10
        assert lat.server_cpu == pytest.approx(2 * statistics.fmean(lat.samples))  # weighted by each part's samples
    assert r.results["latency.empty.cutout"].samples == [0.001] * 3 + [0.002] * 3 + [0.003] * 4
    assert r.results["latency.big.cutout"].size_before == 400
    r.close()


def test_merged_latency_has_no_cpu_figure_unless_every_part_has_one() -> None:
    whole = Latency([0.001], 1, 0, 1, "", 0.002, 0.001)
    cut = Latency([0.002], 1, 0, 2, "1 of 2 samples in the 30 s budget")
    merged = Latency.merged([whole, cut])
    assert merged.samples == [0.001, 0.002] and merged.wanted == 3 and not merged.complete
    assert merged.server_cpu is None and merged.client_cpu is None
    assert merged.note == "1 of 2 samples in the 30 s budget"


def test_one_provider_and_several_at_once_send_the_same_objects_in_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The row "at once against one" is a ratio: one provider's runs and the runs at once alternate, each on a new
    server with the same objects, the best of each counting; the ingest rows keep their own runs."""
    from bench import run as bench_run

    servers: list[tuple[_Holding, int]] = []
    sent: list[tuple[int, int, int]] = []  # (server, providers, objects) per run, in order
    slow = iter([4.0, 2.0, 5.0, 1.0])  # seconds per run at once, then one, in turns: one 4 / 5 s, at once 2 / 1 s

    def new_server(providers: int = 1, **_: object) -> _Holding:
        servers.append((_Holding(), providers))
        return servers[-1][0]

    def index(server: _Holding) -> int:
        return [s for s, _ in servers].index(server)

    def ingest(server: _Holding, objects: list[Any], per: int, budget: float | None = None) -> Timed:
        server.held += len(objects)
        sent.append((index(server), 1, len(objects)))
        seconds = next(slow) if len(objects) == 400 else 1.0
        return Timed(len(objects), seconds, 0)

    def at_once(server: _Holding, objects: list[Any], per: int, writers: int, budget: float | None = None) -> Timed:
        server.held += len(objects)
        sent.append((index(server), writers, len(objects)))
        return Timed(len(objects), next(slow), 0, extra={"server_cpu": 0.2, "process_cpu": 0.1, "client_cpu": 0.01})

    monkeypatch.setattr(bench_run, "CutoutServer", new_server)
    monkeypatch.setattr(bench_run.measure, "ingest", ingest)
    monkeypatch.setattr(bench_run.measure, "ingest_at_once", at_once)
    monkeypatch.setattr(bench_run.measure, "count_inbox", lambda server, who, page=1000: server.held)
    monkeypatch.setattr(bench_run.Run, "_check_log", lambda self, server: None)
    sizes = Sizes(ingest_objects=200, ingest_at_once_objects=400, ingest_writers=3, ingest_at_once_turns=2)
    r = bench_run.Run(sizes)
    r.peer = False
    r.ingest()
    assert sent[:2] == [(0, 1, 200), (1, 1, 200)]  # the ingest rows: 100 and 1,000 per envelope
    assert sent[2:] == [(2, 1, 400), (3, 3, 400), (4, 1, 400), (5, 3, 400)]  # in turns, a new server each
    assert [p for _, p in servers[2:]] == [1, 3, 1, 3] and all(s.stopped for s, _ in servers)
    assert r.results["ingest.one.cutout"].seconds == 4.0 and r.results["ingest.at_once.cutout"].seconds == 1.0
    assert r.results["ingest.at_once.cutout"].note == "best of 2, in turn: 200/s, 400/s"
    rows = {row.name.strip(): row for row in report.build_rows(r.results, sizes)}
    against = rows[
        "3 providers at once against one, 1,000/envelope (cutout: the same 400 objects, the best of each, in turns)"
    ]
    assert against.cutout == "4.00×"  # 400 / 1 s against 400 / 4 s, not against the ingest row's 200 / 1 s


def test_the_budget_row_says_what_the_limits_share_leaves_per_object_and_what_validation_takes() -> None:
    # 40% of 100,000/s on 2 cores: 50 µs per object; 12 µs to validate once, 2,500 µs with stix2-validator
    text = report._budget(100_000.0, {"cutout": 12e-6, "oasis": 2.5e-3}, cores=2)
    assert text == "50.0 µs; 12.0 / 2,500 µs (an object and its copy with cutout's: 24.0 µs, 48% of it)"


def test_validation_is_measured_with_both_validators_on_valid_objects() -> None:
    from bench import machine

    objects = list(Workload().objects(40))
    cost = machine.validation_cost(objects, oasis_sample=3, repeat=1)
    assert cost["objects"] == 40 and cost["oasis_objects"] == 3
    assert 0 < cost["cutout"] < cost["oasis"]  # stix2-validator is the slower by far: milliseconds per object
    with pytest.raises(ValueError, match="refused 1 of"):
        machine.validation_cost([*objects[:3], {"type": "indicator", "id": "indicator--nope"}], 1, 1)


def test_the_memory_samplers_take_no_sample_while_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The latency loop pauses the harness's RSS samplers (threads of the client's process that read /proc 50
    times a second), and they sample again after it."""
    import os
    import time

    from bench import servers

    calls: list[float] = []
    monkeypatch.setattr(servers, "rss_bytes", lambda pid: calls.append(time.monotonic()) or 1)
    sampler = servers.RssSampler(os.getpid(), interval=0.002)
    try:
        time.sleep(0.05)
        assert len(calls) > 3
        with servers.samplers_paused():
            time.sleep(0.01)  # a sample already under way ends
            before = len(calls)
            time.sleep(0.1)
            assert len(calls) == before, "a paused sampler took samples"
        deadline = time.monotonic() + 2.0
        while len(calls) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(calls) > before, "the sampler did not sample again after the pause"
    finally:
        sampler.stop()


def test_a_samples_server_work_is_taken_three_ways_through_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench.paced calls the app itself: each sample's POST is accepted and its poll receives the object (it
    raises otherwise), and only the paced ways wait, before each of a sample's two requests."""
    from bench import paced

    waited: list[tuple[str, float]] = []
    monkeypatch.setattr(paced, "_spin", lambda s: waited.append(("spin", s)))
    monkeypatch.setattr(paced.time, "sleep", lambda s: waited.append(("sleep", s)))
    singles = Workload().singles(1 + 2 * 3)
    work = paced.paced_work((), singles, pause=0.25, turns=1, warm_up=1)
    assert work["samples"] == 2 and work["pause"] == 0.25
    assert all(work[way] > 0 for way in paced.WAYS)
    assert waited == [("sleep", 0.25)] * 4 + [("spin", 0.25)] * 4  # in WAYS order: back to back waits for nothing
    with pytest.raises(RuntimeError, match="refused a one-object envelope"):
        paced.paced_work((), [*singles[:1], {"type": "indicator", "id": "indicator--nope"}] * 2, turns=1, warm_up=0)


def test_the_paced_row_gives_the_three_ways_and_what_pacing_adds() -> None:
    work = {"back_to_back": 1e-3, "sleeping": 1.5e-3, "spinning": 1.4e-3, "samples": 900.0, "pause": 0.001}
    assert report._paced(work) == "1.00 / 1.50 / 1.40 ms (1.50×, 1.40×; 900 samples each)"
    rows = {row.name.strip(): row for row in report.build_rows({"latency.paced": work}, Sizes())}
    label = report._PACED_LABEL.format(pause=1.0)
    assert "with a 1 ms pause before each request" in label and rows[label].cutout == report._paced(work)
