"""Two real ``cutout serve`` nodes on one PostgreSQL, and the faults a deployment meets: a node killed with -9 in
the middle of a burst, PostgreSQL restarted in the middle of a burst, and two nodes given the same submission
at the same instant. In every case a consumer polls its inbox on both nodes all along, and what it collects
must be exactly what was released, in date_added order, with no gap and no repeat. Timings are never asserted.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cutout.demo.server import RunningServer, start_server
from cutout.model.timestamps import parse_us
from tests.conftest import POSTGRES_URL, reset_postgres

from .pgcluster import PrivatePostgres, Unavailable
from .support import TAXII, Broker, Party, indicator, make_broker

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

PER_ENVELOPE = 10


# -- the cluster -------------------------------------------------------------------------------------------
@dataclass
class Cluster:
    """One broker (a data folder with its keys.json, one database) served by several nodes."""

    broker: Broker
    nodes: list[RunningServer] = field(default_factory=list)

    def start(self, n: int) -> None:
        for _ in range(n):
            log = self.broker.data_dir / f"node{len(self.nodes)}.log"
            self.nodes.append(start_server(self.broker.data_dir, log=log))
        self.broker.server = self.nodes[0]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def check_logs(self) -> None:
        for node in self.nodes:
            text = node.log.read_text(errors="replace")
            assert "Traceback" not in text, f"{node.log.name} logged an unhandled error:\n{text[-4000:]}"

    def wait_released(self, timeout: float = 60) -> None:
        """Until nothing is held for release any more (the nodes' schedulers release it)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.broker.exchange() as ex, ex.store.read() as tx:
                if tx.next_due() is None:
                    return
            assert time.monotonic() < deadline, "held items were never released"
            time.sleep(0.1)


@pytest.fixture
def shared_pg() -> str:
    if not POSTGRES_URL:
        pytest.skip("several nodes need PostgreSQL: set CUTOUT_TEST_POSTGRES=postgresql://… (CI sets it)")
    reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


def make_cluster(data_dir: Path, db_url: str) -> Cluster:
    # a short scheduler interval: held items are released by whichever node gets there first, often at once
    broker = make_broker(data_dir, {"database_url": db_url, "scheduler_interval": 0.2})
    return Cluster(broker)


# -- parties talking to the nodes -------------------------------------------------------------------------
def client(node: RunningServer, party: Party) -> httpx.Client:
    headers = {"Authorization": f"Bearer {party.token}", "Accept": TAXII, "Content-Type": TAXII}
    return httpx.Client(base_url=f"{node.url}/exchange/", headers=headers, timeout=30.0)


def check_unavailable(r: httpx.Response) -> None:
    """A 503 must be the retryable store-unavailable error, and nothing else."""
    assert r.headers.get("retry-after", "").isdigit(), r.headers
    doc = r.json()
    assert doc["error_code"] == "store-unavailable" and doc["http_status"] == "503", doc


@dataclass
class Outcomes:
    """What the clients saw: the envelopes acknowledged, the 503s, anything else (which fails the test)."""

    acked: dict[int, str] = field(default_factory=dict)
    unavailable: int = 0
    wrong: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def burst(
    node: RunningServer,
    party: Party,
    outbox: str,
    envelopes: dict[int, list[dict[str, Any]]],
    seen: Outcomes,
    *,
    until: Callable[[], bool] = lambda: False,
) -> bool:
    """Post the envelopes one after another; resend after a 503. Returns False if the node went away."""
    with client(node, party) as h:
        for i, objs in envelopes.items():
            if until():
                return True
            while True:
                try:
                    r = h.post(f"collections/{outbox}/objects/", content=orjson.dumps({"objects": objs}))
                except httpx.TransportError:
                    return False
                if r.status_code == 202:
                    with seen.lock:
                        seen.acked[i] = r.json()["id"]
                    break
                if r.status_code == 503:
                    check_unavailable(r)
                    with seen.lock:
                        seen.unavailable += 1
                    time.sleep(0.1)
                    continue
                with seen.lock:
                    seen.wrong.append(f"POST envelope {i}: {r.status_code} {r.text[:300]}")
                return True
    return True


@dataclass
class Poller:
    """A consumer reading its inbox's manifest like a TAXII client: ``added_after`` the last date_added it saw,
    ``next`` within one poll, the nodes taken in turn; a node that went away is left out from then on."""

    nodes: list[RunningServer]
    party: Party
    inbox: str
    outcomes: Outcomes
    seen: list[tuple[int, str]] = field(default_factory=list)  # (date_added, the consumer's id)
    gone: set[int] = field(default_factory=set)
    _turn: int = 0

    def poll(self) -> None:
        alive = [i for i in range(len(self.nodes)) if i not in self.gone]
        i = alive[self._turn % len(alive)]
        self._turn += 1
        params: dict[str, Any] = {"limit": 7}
        if self.seen:
            last = self.seen[-1][0]
            params["added_after"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(last // 1_000_000))
            params["added_after"] += f".{last % 1_000_000:06d}Z"
        with client(self.nodes[i], self.party) as h:
            while True:
                try:
                    r = h.get(f"collections/{self.inbox}/manifest/", params=params)
                except httpx.TransportError:
                    self.gone.add(i)
                    return
                if r.status_code == 503:
                    check_unavailable(r)
                    with self.outcomes.lock:
                        self.outcomes.unavailable += 1
                    return
                if r.status_code != 200:
                    with self.outcomes.lock:
                        self.outcomes.wrong.append(f"GET manifest: {r.status_code} {r.text[:300]}")
                    return
                doc = r.json()
                self.seen.extend((parse_us(e["date_added"]), e["id"]) for e in doc.get("objects", []))
                if not doc["more"]:
                    return
                params["next"] = doc["next"]

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()
            time.sleep(0.02)


def full_manifest(node: RunningServer, party: Party, inbox: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    params: dict[str, Any] = {"limit": 1000}
    with client(node, party) as h:
        while True:
            r = h.get(f"collections/{inbox}/manifest/", params=params)
            assert r.status_code == 200, r.text
            doc = r.json()
            out.extend((parse_us(e["date_added"]), e["id"]) for e in doc.get("objects", []))
            if not doc["more"]:
                return out
            params["next"] = doc["next"]


def read_names(node: RunningServer, party: Party, coll: str) -> list[str]:
    out: list[str] = []
    params: dict[str, Any] = {"limit": 1000}
    with client(node, party) as h:
        while True:
            r = h.get(f"collections/{coll}/objects/", params=params)
            assert r.status_code == 200, r.text
            doc = r.json()
            out.extend(o["name"] for o in doc.get("objects", []))
            if not doc["more"]:
                return out
            params["next"] = doc["next"]


def assert_polls_match(poller: Poller, node: RunningServer) -> None:
    """What the polls collected is exactly the inbox: every object once, in date_added order."""
    poller.poll()  # whatever was committed after the last poll
    ids = [i for _, i in poller.seen]
    assert len(ids) == len(set(ids)), "a poll repeated an object"
    added = [a for a, _ in poller.seen]
    assert added == sorted(set(added)), "the polls went out of date_added order"
    assert poller.seen == full_manifest(node, poller.party, poller.inbox), "the polls skipped objects"


def run_threads(*targets: Callable[[], Any]) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    return threads


def join(threads: list[threading.Thread], timeout: float = 120) -> None:
    for t in threads:
        t.join(timeout=timeout)
        assert not t.is_alive(), "a client hung"


def envelopes(first: int, count: int, tag: str) -> dict[int, list[dict[str, Any]]]:
    return {
        i: [indicator(i * PER_ENVELOPE + k, name=f"{tag} {i}.{k}") for k in range(PER_ENVELOPE)]
        for i in range(first, first + count)
    }


def setup_pair(cluster: Cluster, **agreement: Any) -> tuple[Party, Party, str, str]:
    provider = cluster.broker.add_party("Northern Watch", provider=True)
    consumer = cluster.broker.add_party("Harbor Command", consumer=True)
    cluster.broker.add_agreement(provider, consumer, **agreement)
    return (
        provider,
        consumer,
        cluster.broker.collection_ids(provider)["outbox"],
        cluster.broker.collection_ids(consumer)["inbox"],
    )


# -- the tests ---------------------------------------------------------------------------------------------
@pytest.fixture
def cluster(tmp_path: Path, shared_pg: str) -> Iterator[Cluster]:
    c = make_cluster(tmp_path, shared_pg)
    try:
        yield c
    finally:
        c.stop()


def test_kill_a_node_mid_burst(cluster: Cluster) -> None:
    """Node 0 is killed with -9 while both nodes take a burst; held items are released by the survivor.
    Every acknowledged envelope is stored whole and released once, none half-stored, the rest resend."""
    cluster.start(2)
    provider, consumer, outbox, inbox = setup_pair(cluster, release="fixed", delay=1)
    node0, node1 = cluster.nodes
    mine = [envelopes(0, 40, "zero"), envelopes(40, 15, "one")]
    seen = Outcomes()
    poller = Poller(cluster.nodes, consumer, inbox, seen)
    stop = threading.Event()
    alive = run_threads(
        lambda: burst(node0, provider, outbox, mine[0], seen), lambda: burst(node1, provider, outbox, mine[1], seen)
    )
    reading = run_threads(lambda: poller.run(stop))
    deadline = time.monotonic() + 60
    while sum(1 for i in seen.acked if i < 40) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(node0.proc.pid, signal.SIGKILL)
    node0.proc.wait()
    join(alive)
    acked0 = {i for i in seen.acked if i < 40}
    assert 5 <= len(acked0) < 40, "the kill must fall in the middle of the burst"
    assert set(mine[1]) <= set(seen.acked), "the surviving node failed a submission"
    cluster.wait_released()
    stop.set()
    join(reading)
    assert not seen.wrong, seen.wrong
    assert not seen.unavailable, "the store was unavailable to the surviving node"

    everything = {**mine[0], **mine[1]}
    stored = set(read_names(node1, provider, outbox))
    for i in seen.acked:
        assert {o["name"] for o in everything[i]} <= stored, f"acknowledged envelope {i} lost objects"
    for i, objs in everything.items():
        present = {o["name"] for o in objs} & stored
        assert present in (set(), {o["name"] for o in objs}), f"envelope {i} is half-stored"
    names = read_names(node1, consumer, inbox)
    assert len(names) == len(set(names)) and set(names) == stored, "released twice, or not at all"
    assert_polls_match(poller, node1)

    again = Outcomes()
    assert burst(node1, provider, outbox, everything, again)  # resend everything to the survivor
    assert len(again.acked) == len(everything) and not again.wrong
    cluster.wait_released()
    names = read_names(node1, consumer, inbox)
    assert len(names) == len(set(names)) == len(everything) * PER_ENVELOPE
    with cluster.broker.exchange() as ex:
        report = ex.verify_audit()
        assert report.ok, report.summary()
        for status_id in [*seen.acked.values(), *again.acked.values()]:
            assert ex.prove(status_id=status_id)
    cluster.nodes = [node1]
    cluster.check_logs()


def test_two_nodes_racing_on_the_same_submission_store_it_once(cluster: Cluster) -> None:
    cluster.start(2)
    provider, consumer, outbox, inbox = setup_pair(cluster, release="none")
    rounds = envelopes(0, 12, "race")
    barrier = threading.Barrier(2)
    seen = [Outcomes(), Outcomes()]

    def racer(n: int) -> None:
        for i, objs in rounds.items():
            barrier.wait(timeout=60)
            burst(cluster.nodes[n], provider, outbox, {i: objs}, seen[n])

    join(run_threads(lambda: racer(0), lambda: racer(1)))
    for s in seen:
        assert not s.wrong and not s.unavailable and len(s.acked) == len(rounds), s.wrong
    outbox_names = read_names(cluster.nodes[1], provider, outbox)
    assert len(outbox_names) == len(set(outbox_names)) == len(rounds) * PER_ENVELOPE
    names = read_names(cluster.nodes[0], consumer, inbox)
    assert len(names) == len(set(names)) == len(rounds) * PER_ENVELOPE, "the consumer got a raced object twice"
    cluster.check_logs()


def test_postgres_restart_mid_burst(tmp_path: Path) -> None:
    """PostgreSQL stops (fast: every session cut, open transactions rolled back) and starts again while both
    nodes take a burst and a consumer polls. Clients hear 503 store-unavailable meanwhile and resend; nodes
    reconnect by themselves; everything sent is stored once and released once; no request fails otherwise."""
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need CUTOUT_TEST_POSTGRES=postgresql://… (CI sets it)")
    try:
        pg = PrivatePostgres.create()
    except Unavailable as exc:
        pytest.skip(f"cannot make a private PostgreSQL cluster to restart: {exc}")
    try:
        pg.start()
        cluster = make_cluster(tmp_path, pg.url)
        try:
            cluster.start(2)
            _restart_during_burst(cluster, pg)
        finally:
            cluster.stop()
    finally:
        pg.destroy()


def _restart_during_burst(cluster: Cluster, pg: PrivatePostgres) -> None:
    provider, consumer, outbox, inbox = setup_pair(cluster, release="fixed", delay=1)
    node0, node1 = cluster.nodes
    mine = [envelopes(0, 30, "zero"), envelopes(30, 30, "one")]
    seen = Outcomes()
    poller = Poller(cluster.nodes, consumer, inbox, seen)
    stop = threading.Event()
    sending = run_threads(
        lambda: burst(node0, provider, outbox, mine[0], seen), lambda: burst(node1, provider, outbox, mine[1], seen)
    )
    reading = run_threads(lambda: poller.run(stop))
    deadline = time.monotonic() + 60
    while len(seen.acked) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    pg.stop("fast")
    time.sleep(2)  # down long enough for every client to meet it
    pg.start()
    join(sending)
    cluster.wait_released()
    stop.set()
    join(reading)

    assert not seen.wrong, seen.wrong
    assert seen.unavailable > 0, "no client met the outage"
    everything = {**mine[0], **mine[1]}
    assert set(seen.acked) == set(everything), "a node did not carry on after PostgreSQL came back"
    stored = read_names(node0, provider, outbox)
    assert len(stored) == len(set(stored)) == len(everything) * PER_ENVELOPE
    names = read_names(node1, consumer, inbox)
    assert len(names) == len(set(names)) and set(names) == set(stored), "released twice, or not at all"
    assert_polls_match(poller, node0)
    with cluster.broker.exchange() as ex:
        report = ex.verify_audit()
        assert report.ok, report.summary()
    cluster.check_logs()
