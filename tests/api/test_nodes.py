"""Several nodes on one PostgreSQL, in process: each node is an ``Exchange`` with its own engine and pool, as a
``cutout serve`` process would have, and threads play the providers, the schedulers and a consumer.

The properties: a consumer paging its inbox on any node while several nodes commit at once never skips or
repeats an object (copies made at submission and copies made by releases alike); whichever nodes run the
scheduler, nothing is released twice and a pool never releases fewer than k providers at once; the same
submission raced through two nodes is stored once. Timings are never asserted.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from cutout.service import Exchange, Party
from cutout.settings import Settings, load_settings
from cutout.store.sql import PageQuery
from tests.api.conftest import AMBER
from tests.conftest import POSTGRES_URL, reset_postgres

NODES = 3


@pytest.fixture
def pg_settings(tmp_path: Path) -> Settings:
    if not POSTGRES_URL:
        pytest.skip("several nodes need PostgreSQL: set CUTOUT_TEST_POSTGRES=postgresql://… (CI sets it)")
    reset_postgres(POSTGRES_URL)
    return load_settings(tmp_path / "broker", {"database_url": POSTGRES_URL}, environ={})


@pytest.fixture
def nodes(pg_settings: Settings) -> Iterator[list[Exchange]]:
    Exchange.init(pg_settings, "Node Exchange")
    opened = [Exchange.open(pg_settings) for _ in range(NODES)]
    yield opened
    for ex in opened:
        ex.close()


@dataclass
class Member:
    party: Party
    outbox: str
    inbox: str


def member(ex: Exchange, name: str, *, provider: bool = False, consumer: bool = False) -> Member:
    _, token = ex.add_party(name, provider=provider, consumer=consumer)
    party = ex.authenticate(None, token)
    colls = {c.kind: c.uuid for c in ex.collections(party)}
    return Member(party, colls["outbox"], colls["inbox"])


def indicator(name: str) -> dict[str, Any]:
    n = uuid.uuid4().int
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": "2026-01-02T03:04:05.000Z",
        "modified": "2026-01-02T03:04:05.000Z",
        "name": name,
        "pattern": f"[ipv4-addr:value = '10.{n % 256}.{n // 256 % 256}.{n // 65536 % 256}']",
        "pattern_type": "stix",
        "valid_from": "2026-01-02T03:04:05.000Z",
        "object_marking_refs": [AMBER],
    }


@dataclass
class Crew:
    """Threads that record their exceptions instead of dying quietly."""

    errors: list[BaseException] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, target: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def join(self, threads: list[threading.Thread] | None = None) -> None:
        for t in threads if threads is not None else self.threads:
            t.join(timeout=120)
            assert not t.is_alive(), "a worker hung"
        if self.errors:
            raise self.errors[0]


@dataclass
class Reader:
    """A consumer polling its inbox the way a TAXII client does: ``added_after`` the last date_added it saw,
    following ``next`` within one poll, each request on the next node in turn."""

    nodes: list[Exchange]
    who: Member
    limit: int = 7
    seen: list[tuple[int, str]] = field(default_factory=list)  # (date_added, name)
    _turn: int = 0

    def poll(self) -> None:
        after = self.seen[-1][0] if self.seen else -1
        token: str | None = None
        while True:
            node = self.nodes[self._turn % len(self.nodes)]
            self._turn += 1
            page = node.page(self.who.party, self.who.inbox, PageQuery(after=after, limit=self.limit), token)
            for row in page.rows:
                self.seen.append((int(row.date_added), _name(row.body)))
            if not page.more:
                return
            token = page.next


def _name(body: bytes) -> str:
    import orjson

    return str(orjson.loads(body)["name"])


def _nothing_held(ex: Exchange) -> bool:
    with ex.store.read() as tx:
        return tx.next_due() is None


def test_readers_never_skip_or_repeat_while_nodes_commit_at_once(nodes: list[Exchange]) -> None:
    """Providers submit through every node; half their agreements release at once (the copy is written by the
    submission), half after a delay (written by whichever node's scheduler gets there); a consumer polls all
    along. The union of its polls is exactly what was released, in date_added order, with no repeat."""
    admin = nodes[0]
    consumer = member(admin, "Harbor", consumer=True)
    providers = []
    for i in range(4):
        providers.append(member(admin, f"Watch {i}", provider=True))
        if i % 2:
            admin.add_agreement(f"Watch {i}", "Harbor", release="fixed", delay=1)
        else:
            admin.add_agreement(f"Watch {i}", "Harbor", release="none")
    envelopes, per = 12, 5
    expected = {f"w{i} e{e} o{k}" for i in range(len(providers)) for e in range(envelopes) for k in range(per)}

    crew = Crew()
    writing = threading.Event()
    writing.set()

    def provider(i: int) -> Callable[[], None]:
        def run() -> None:
            for e in range(envelopes):
                node = nodes[(i + e) % len(nodes)]
                node.submit(providers[i].party, providers[i].outbox, [indicator(f"w{i} e{e} o{k}") for k in range(per)])

        return run

    def scheduler(node: Exchange) -> Callable[[], None]:
        def run() -> None:
            while writing.is_set() or not _nothing_held(node):
                node.release_due()
                time.sleep(0.02)

        return run

    reader = Reader(nodes, consumer)

    def poll() -> None:
        while writing.is_set() or not _nothing_held(admin):
            reader.poll()

    writers = [crew.start(provider(i)) for i in range(len(providers))]
    for node in nodes:
        crew.start(scheduler(node))
    crew.start(poll)
    crew.join(writers)
    writing.clear()
    crew.join()
    reader.poll()  # whatever the last release committed after the last poll

    names = [n for _, n in reader.seen]
    assert len(names) == len(set(names)), "a poll repeated an object"
    added = [a for a, _ in reader.seen]
    assert all(a < b for a, b in pairwise(added)), "the inbox went out of date_added order"
    assert set(names) == expected, f"missed {len(expected - set(names))} of {len(expected)} released objects"
    whole = Reader(nodes, consumer, limit=1000)
    whole.poll()
    assert whole.seen == reader.seen, "a fresh read disagrees with what the polls collected"


def test_the_same_submission_through_two_nodes_is_stored_once(nodes: list[Exchange]) -> None:
    admin = nodes[0]
    consumer = member(admin, "Harbor", consumer=True)
    provider = member(admin, "Watch", provider=True)
    admin.add_agreement("Watch", "Harbor", release="none")
    crew = Crew()
    rounds = 15
    envelopes = [[indicator(f"r{r} o{k}") for k in range(3)] for r in range(rounds)]
    barrier = threading.Barrier(len(nodes))

    def racer(node: Exchange) -> Callable[[], None]:
        def run() -> None:
            for objs in envelopes:
                barrier.wait(timeout=60)
                status = node.submit(provider.party, provider.outbox, objs)
                assert status["success_count"] == len(objs)

        return run

    for node in nodes:
        crew.start(racer(node))
    crew.join()
    everything = PageQuery(limit=10_000, versions=("all",))
    outbox = admin.page(provider.party, provider.outbox, everything, None).rows
    assert len(outbox) == rounds * 3, "a raced submission was stored more than once"
    inbox = admin.page(consumer.party, consumer.inbox, everything, None).rows
    names = [_name(r.body) for r in inbox]
    assert len(names) == len(set(names)) == rounds * 3, "the consumer got a raced object twice"


class Clock:
    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


def test_a_pool_never_releases_fewer_than_k_providers_whatever_the_batch_size(pg_settings: Settings) -> None:
    """Several scheduler nodes each taking one due item at a time: a pool of k = 2 still releases the items of
    both providers in one transaction, never one provider's alone."""
    Exchange.init(pg_settings, "Pool Exchange")
    t0 = 1_780_000_000 * 1_000_000
    clock = Clock(t0)
    opened = [Exchange.open(pg_settings) for _ in range(NODES)]
    try:
        for ex in opened:
            ex.clock = clock
        admin = opened[0]
        consumer = member(admin, "Harbor", consumer=True)
        watch = [member(admin, f"Watch {i}", provider=True) for i in range(3)]
        for i in range(3):
            admin.add_agreement(f"Watch {i}", "Harbor", release="pool", pool_k=2, epoch=10)
        # one provider alone in the first epoch, then two
        admin.submit(watch[0].party, watch[0].outbox, [indicator(f"alone {k}") for k in range(4)])
        clock.now += 11 * 1_000_000
        crew = Crew()
        for ex in opened:
            crew.start(functools.partial(_drain, ex, clock.now))
        crew.join()
        reader = Reader(opened, consumer, limit=1000)
        reader.poll()
        assert reader.seen == [], "one provider's pooled items went out alone"
        admin.submit(watch[1].party, watch[1].outbox, [indicator(f"second {k}") for k in range(4)])
        clock.now += 10 * 1_000_000
        crew = Crew()
        for ex in opened:
            crew.start(functools.partial(_drain, ex, clock.now))
        crew.join()
        reader.poll()
        names = sorted(n for _, n in reader.seen)
        assert names == sorted([f"alone {k}" for k in range(4)] + [f"second {k}" for k in range(4)])
        assert len({a for a, _ in reader.seen}) == 8
    finally:
        for ex in opened:
            ex.close()


def _drain(ex: Exchange, now: int) -> None:
    while ex.release_due(now, limit=1):
        pass


def test_an_unreachable_database_is_a_retryable_503_that_says_nothing_of_it(tmp_path: Path) -> None:
    """Every request while the database is out of reach: 503 store-unavailable with Retry-After, the TAXII
    error envelope, and not a word of the driver's message, the host or the database's name."""
    from starlette.testclient import TestClient

    from cutout.api import create_app
    from cutout.demo.server import free_port
    from cutout.store import Store

    settings = load_settings(tmp_path / "broker", environ={})
    Exchange.init(settings, "Dark Exchange")
    ex = Exchange.open(settings)
    _, token = ex.add_party("Watch", provider=True, consumer=False)
    ex.store.close()
    ex.store = Store(f"postgresql://nobody@127.0.0.1:{free_port()}/secret_db_name")
    try:
        with TestClient(create_app(settings, ex, run_scheduler=False)) as client:
            headers = {"Accept": "application/taxii+json;version=2.1", "Authorization": f"Bearer {token}"}
            for path in ("/taxii2/", "/exchange/collections/", "/exchange/collections/x/objects/"):
                r = client.get(path, headers=headers)
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "2"
                assert r.headers["content-type"] == "application/taxii+json;version=2.1"
                doc = r.json()
                assert doc["error_code"] == "store-unavailable" and doc["http_status"] == "503"
                for secret in ("secret_db_name", "nobody", "127.0.0.1", "psycopg", "connection", "refused"):
                    assert secret not in r.text
            # the load balancer's readiness check says so too, and nothing more
            r = client.get("/health")
            assert (r.status_code, r.json()) == (503, {"status": "unavailable"})
    finally:
        ex.close()


def test_every_node_signing_a_checkpoint_at_once_signs_it_once(nodes: list[Exchange]) -> None:
    """The schedulers of all nodes find a checkpoint due at the same moment: one is signed, the others reuse
    it, and none fails."""
    admin = nodes[0]
    for round_ in range(5):
        member(admin, f"Watch {round_}", provider=True)  # the log grows
        barrier = threading.Barrier(len(nodes))
        notes: list[str] = []

        crew = Crew()
        for node in nodes:
            crew.start(functools.partial(_sign, node, barrier, notes))
        crew.join()
        assert len(set(notes)) == 1, "two nodes signed different checkpoints of one log"
    with admin.store.read() as tx:
        sizes = [c.size for c in tx.checkpoints()]
    assert len(sizes) == len(set(sizes)) == 5
    assert admin.verify_audit().ok


def _sign(node: Exchange, barrier: threading.Barrier, notes: list[str]) -> None:
    barrier.wait(timeout=60)
    notes.append(node.checkpoint()["note"])
