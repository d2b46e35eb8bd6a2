"""Timing side channels of the channel back, with the exchange's injectable clock (no wall-clock timings).

An automatic per-item receipt links a consumer to a provider by its timing in a handful of messages
(REFERENCE.md §4). So everything sent back within one ``feedback_epoch`` - outcomes and requests for
information, from any consumer, at any moment of the epoch - must reach each provider at one instant, with one
``created``/``modified``, with ``date_added`` values that show no gap, and in an order that says nothing of when
or by whom each item was sent (the reader's id order, across the whole batch). And a request that nothing
covers gets a no-route note whose bytes are the same whatever providers and agreements exist.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.testclient import TestClient

from cutout.api import create_app
from cutout.extensions import REQUEST_EXT, REQUEST_TYPE, opinion_for
from cutout.model.timestamps import floor_us, format_ms, now_us, parse_us
from cutout.service import Exchange
from cutout.settings import Settings
from tests.api.conftest import AMBER, Caller, location

SECOND = 1_000_000
TRIALS = 6  # epochs
PER_EPOCH = 12  # outcomes per consumer and epoch, half about each provider's objects


@dataclass
class Clock:
    """The exchange's clock, moved by the test."""

    now: int = field(default_factory=lambda: (now_us() // (3600 * SECOND) + 1) * 3600 * SECOND)

    def __call__(self) -> int:
        return self.now


@dataclass
class World:
    exchange: Exchange
    clock: Clock
    client: TestClient
    callers: dict[str, Caller]

    def inbox(self, who: str, **params: Any) -> list[dict[str, Any]]:
        """Every version in a party's inbox, in the order it is served (following ``next``)."""
        out: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 7, "match[version]": "all", **params}
        while True:
            r = self.callers[who].inbox(**query)
            assert r.status_code == 200, r.text
            doc = r.json()
            out.extend(doc.get("objects", []))
            if not doc.get("more"):
                return out
            query["next"] = doc["next"]

    def manifest(self, who: str, **params: Any) -> list[dict[str, Any]]:
        c = self.callers[who]
        r = c.get(f"/collections/{c.collection_id('inbox')}/manifest/", params={"match[version]": "all", **params})
        assert r.status_code == 200, r.text
        entries: list[dict[str, Any]] = r.json().get("objects", [])
        return entries


@pytest.fixture
def world(exchange: Exchange, settings: Settings) -> Iterator[World]:
    clock = Clock()
    exchange.clock = clock
    tokens = {}
    for name, provider, consumer in (
        ("Northern Watch", True, False),
        ("Coastal Radar", True, False),
        ("Harbor Command", False, True),
        ("Eastern Desk", False, True),
    ):
        _, tokens[name] = exchange.add_party(name, provider=provider, consumer=consumer)
    for p in ("Northern Watch", "Coastal Radar"):
        for c in ("Harbor Command", "Eastern Desk"):
            exchange.add_agreement(p, c)
    with TestClient(create_app(settings, exchange, run_scheduler=False)) as client:
        yield World(exchange, clock, client, {n: Caller(client, n, t) for n, t in tokens.items()})


def _opinion(ref: str, outcome: str) -> dict[str, Any]:
    return {
        "type": "opinion",
        "spec_version": "2.1",
        "id": f"opinion--{uuid.uuid4()}",
        "created": "2026-11-21T02:13:45.771Z",
        "modified": "2026-11-21T02:13:45.771Z",
        "opinion": opinion_for(outcome),
        "object_refs": [ref],
    }


def _request(now: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": REQUEST_TYPE,
        "spec_version": "2.1",
        "id": f"{REQUEST_TYPE}--{uuid.uuid4()}",
        "created": "2026-11-21T03:02:11.219Z",
        "modified": "2026-11-21T03:02:11.219Z",
        "question": "Convoy positions near Kalvo?",
        "priority": "high",
        "expires": format_ms(now + 30 * 86_400 * SECOND),
        "extensions": {REQUEST_EXT: {"extension_type": "new-sdo"}},
        "object_marking_refs": [AMBER],
        **extra,
    }


def _spearman(values: list[int]) -> float:
    """Spearman's rank correlation of distinct values with their positions."""
    n = len(values)
    rank = {v: i for i, v in enumerate(sorted(values))}
    d2 = sum((rank[v] - i) ** 2 for i, v in enumerate(values))
    return 1 - 6 * d2 / (n * (n * n - 1))


def test_everything_sent_back_in_an_epoch_arrives_at_one_instant_in_id_order(world: World) -> None:
    """Outcomes and requests sent by two consumers at random moments of an epoch reach each provider at the
    epoch's end, all stamped alike, with consecutive date_added values, in the provider's id order - never in
    the order they were sent, nor grouped by sender: over several epochs the position in the inbox is
    uncorrelated with the moment of sending, and the sender changes from one item to the next as often as
    chance has it."""
    ex, clock = world.exchange, world.clock
    epoch = ex.settings.feedback_epoch * SECOND
    rng = random.Random(20261121)
    c = world.callers
    # intel to give feedback on: each consumer holds copies of both providers' objects
    c["Northern Watch"].send([location(46.0 + i / 100, 33.0, name=f"valley {i}") for i in range(PER_EPOCH)])
    c["Coastal Radar"].send([location(-5.0 - i / 100, 105.0, name=f"island {i}") for i in range(PER_EPOCH)])
    copies = {who: [o["id"] for o in world.inbox(who)] for who in ("Harbor Command", "Eastern Desk")}
    provider_of: dict[str, str] = {}
    for who in copies:
        for o in world.inbox(who):
            provider_of[o["id"]] = "Northern Watch" if o["name"].startswith("valley") else "Coastal Radar"
    assert all(len(v) == 2 * PER_EPOCH for v in copies.values())

    rhos: list[float] = []
    switches = expected_switches = 0.0
    seen = {"Northern Watch": 0, "Coastal Radar": 0}
    for _ in range(TRIALS):
        start = (clock.now // epoch + 1) * epoch  # the start of a fresh epoch
        end = start + epoch
        # what each consumer sends, one item per post, at random distinct moments of the epoch
        plan: list[tuple[str, dict[str, Any]]] = []
        for who in ("Harbor Command", "Eastern Desk"):
            for ref in copies[who]:
                plan.append((who, _opinion(ref, rng.choice(("confirmed-hit", "not-found", "stale")))))
            plan.append((who, _request(end)))
        moments = sorted(rng.sample(range(start + SECOND, end - SECOND, 997), len(plan)))
        rng.shuffle(plan)
        sent_at: dict[str, list[tuple[int, str]]] = {"Northern Watch": [], "Coastal Radar": []}  # (moment, sender)
        for moment, (who, obj) in zip(moments, plan, strict=True):
            clock.now = moment
            assert c[who].send([obj]).status_code == 202
            targets = (
                [provider_of[obj["object_refs"][0]]]
                if obj["type"] == "opinion"
                else ["Northern Watch", "Coastal Radar"]  # both agreements cover the request
            )
            for p in targets:
                sent_at[p].append((moment, who))
        # nothing reaches a provider before the epoch ends, even a microsecond before
        assert world.inbox("Northern Watch")[seen["Northern Watch"] :] == []
        assert ex.release_due(end - 1) == 0
        clock.now = end
        assert ex.release_due(end) == len(plan) + 2  # each request goes to both providers
        for p in ("Northern Watch", "Coastal Radar"):
            got = world.inbox(p)[seen[p] :]
            entries = world.manifest(p)[seen[p] :]
            seen[p] += len(got)
            assert len(got) == len(sent_at[p]) == 2 * PER_EPOCH + 2
            # one instant: the same created and modified (the epoch's end, rounded), whatever the moment sent
            stamp = format_ms(floor_us(end, ex.settings.release_granularity))
            assert {o["created"] for o in got} == {o["modified"] for o in got} == {stamp}
            # date_added: consecutive microseconds from the release instant, no gap between senders
            added = [parse_us(e["date_added"]) for e in entries]
            assert added == list(range(added[0], added[0] + len(added))) and added[0] >= end
            # the order is the provider's id order over the whole batch (senders and kinds mixed)
            ids = [o["id"] for o in got]
            assert ids == sorted(ids), "the batch is not in the reader's id order: it shows who sent what"
            # a receipt for any one of them proves the delivery of the whole batch, not of one sender's part
            for pick in (ids[0], ids[-1], rng.choice(ids)):
                r = c[p].get(f"/receipts/{pick}/")
                assert r.status_code == 200, r.text
                event = json.loads(r.json()["event"])
                assert sorted(i for i, _ in event["objects"]) == ids, "a receipt groups the batch by sender"
            # ... so it follows neither the moment of sending nor the sender (the operator's view of who sent
            # each item and when: the provider itself cannot know)
            moments, senders = _origins(ex, p, ids)
            assert sorted(moments) == sorted(m for m, _ in sent_at[p])
            rhos.append(_spearman(moments))
            switches += sum(1 for a, b in itertools.pairwise(senders) if a != b)
            n1 = senders.count("Harbor Command")
            expected_switches += 2 * n1 * (len(senders) - n1) / len(senders)
    mean_rho = sum(rhos) / len(rhos)
    # 12 samples of 14 items each: the standard error of the mean rho is about 0.08
    assert abs(mean_rho) < 0.3, f"the inbox order follows the moment of sending (mean Spearman rho {mean_rho:.2f})"
    assert switches >= 0.6 * expected_switches, (
        f"items of one sender come together in the provider's inbox ({switches} changes of sender where "
        f"chance gives about {expected_switches:.0f}): the order groups them by consumer"
    )


def _origins(ex: Exchange, provider: str, out_ids: list[str]) -> tuple[list[int], list[str]]:
    """For each of a provider's copies, in the order given: the moment its original was sent, and by whom."""
    with ex.store.read() as tx:
        names = {p.id: p.name for p in tx.parties()}
        party = next(pid for pid, name in names.items() if name == provider)
        rows = {c.out_id: c for c in tx.copies_by_out(party, out_ids)}
        moments: list[int] = []
        senders: list[str] = []
        for out_id in out_ids:
            r = rows[out_id]
            outbox = tx.collection(r.sender_id, "outbox")
            moments.append(int(tx.latest_objects(outbox.id, [r.orig_id])[r.orig_id].date_added))
            senders.append(names[r.sender_id])
    return moments, senders


def _batch_view(world: World, who: str, before: int) -> tuple[list[str], list[list[str]]]:
    """What a reader sees of its latest batch: the ids in inbox order, and for each the ids its receipt proves."""
    ids = [o["id"] for o in world.inbox(who)][before:]
    proved = []
    for i in ids:
        r = world.callers[who].get(f"/receipts/{i}/")
        assert r.status_code == 200, r.text
        proved.append(sorted(x for x, _ in json.loads(r.json()["event"])["objects"]))
    return ids, proved


def test_a_batch_is_one_delivery_whoever_sent_its_items(world: World) -> None:
    """A batch holding items of several senders is stored and logged as one delivery: the reader's inbox holds
    it in one id order, and the receipt for any item proves the whole batch. Stored or logged sender by sender,
    the break in the id order, or the ids a receipt names together, would group the items by sender. Both ways:
    two consumers' outcomes to a provider, and two providers' intel pooled to a consumer."""
    ex, clock = world.exchange, world.clock
    c = world.callers
    c["Northern Watch"].send([location(46.0 + i / 100, 33.0, name=f"valley {i}") for i in range(8)])
    refs = {who: [o["id"] for o in world.inbox(who)] for who in ("Harbor Command", "Eastern Desk")}
    for who, mine in refs.items():
        for ref in mine:
            assert c[who].send([_opinion(ref, "confirmed-hit")]).status_code == 202
    assert ex.release_due(clock.now + (ex.settings.feedback_epoch + 1) * SECOND) == 16
    ids, proved = _batch_view(world, "Northern Watch", 0)
    assert len(ids) == 16 and ids == sorted(ids)
    assert all(p == ids for p in proved), "a receipt names only one consumer's part of the batch"

    # intel the other way: two providers pooled towards one consumer (k = 2), released together
    _, token = ex.add_party("Inland Desk", provider=False, consumer=True)
    c["Inland Desk"] = Caller(world.client, "Inland Desk", token)
    for p in ("Northern Watch", "Coastal Radar"):
        ex.add_agreement(p, "Inland Desk", release="pool", pool_k=2, epoch=60)
    c["Northern Watch"].send([location(46.5, 33.5 + i / 100, name=f"north {i}") for i in range(8)])
    c["Coastal Radar"].send([location(-5.5, 105.5 + i / 100, name=f"coast {i}") for i in range(8)])
    assert world.inbox("Inland Desk") == []
    ex.release_due(clock.now + 120 * SECOND)
    ids, proved = _batch_view(world, "Inland Desk", 0)
    assert len(ids) == 16 and ids == sorted(ids), "a pooled release shows, by its order, which items share a provider"
    assert all(p == ids for p in proved), "a receipt names only one provider's part of the pooled release"


def test_a_batch_is_never_cut_by_the_run_limit(world: World) -> None:
    """A release run takes at most ``limit`` items, but never part of one instant's batch: otherwise the first
    run would hold the earliest submissions, and the split would order the batch by the moment sent."""
    ex, clock = world.exchange, world.clock
    c = world.callers
    c["Northern Watch"].send([location(46.0 + i / 100, 33.0, name=f"valley {i}") for i in range(6)])
    refs = [o["id"] for o in world.inbox("Harbor Command")]
    for ref in refs:
        assert c["Harbor Command"].send([_opinion(ref, "stale")]).status_code == 202
    assert ex.release_due(clock.now + (ex.settings.feedback_epoch + 1) * SECOND, limit=2) == 6
    ids, proved = _batch_view(world, "Northern Watch", 0)
    assert len(ids) == 6 and ids == sorted(ids) and all(p == ids for p in proved)


# -- no route ----------------------------------------------------------------------------------------------

_ID = re.compile(rb"[a-z0-9-]+--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


NOTE_KEYS = (
    "type", "spec_version", "id", "created_by_ref", "created", "modified", "abstract", "content", "object_refs",
    "object_marking_refs",
)  # fmt: skip


def _normalised(raw: bytes, own: dict[bytes, bytes]) -> bytes:
    """Bytes with the requester's own ids named by role and every other id and uuid masked."""
    for value, name in own.items():
        raw = raw.replace(value, name)
    return _UUID.sub(b"<uuid>", _ID.sub(b"<id>", raw))


def test_no_route_says_the_same_whatever_exists(exchange: Exchange, settings: Settings) -> None:
    """Requesters in different situations - no provider in the exchange at all; providers only towards someone
    else; an agreement whose area or types miss the request; an agreement ended; a provider revoked - each
    post the same request at the same instant: the no-route note they find, the status of their POST and every
    byte of their inbox and manifest responses are the same, apart from the ids the exchange minted for them."""
    clock = Clock()
    clock.now += 17 * SECOND + 3_000  # odd moment inside a minute
    exchange.clock = clock
    request = _request(clock.now, area=[-80.0, 10.0, -70.0, 20.0], object_types=["sighting", "location"])
    situations = ("alone", "others-only", "area", "types", "ended", "revoked")
    tokens: dict[str, str] = {}

    def consumer(name: str) -> str:
        _, tokens[name] = exchange.add_party(name, provider=False, consumer=True)
        return name

    # a requester in an exchange with no provider at all, then the rest of the exchange appears
    consumer("Requester alone")
    for name in ("Northern Watch", "Coastal Radar", "Inland Post"):
        exchange.add_party(name, provider=True, consumer=False)
    other = consumer("Eastern Desk")
    exchange.add_agreement("Northern Watch", other)  # covers everything, but towards someone else
    exchange.add_agreement("Coastal Radar", other, types=["sighting"])
    consumer("Requester others-only")
    exchange.add_agreement("Northern Watch", consumer("Requester area"), area="30,44,36,48")
    exchange.add_agreement("Coastal Radar", "Requester area", area="100,-10,110,0")
    exchange.add_agreement("Northern Watch", consumer("Requester types"), types=["indicator", "malware"])
    ended = exchange.add_agreement("Coastal Radar", consumer("Requester ended"))
    exchange.end_agreement(ended["id"])
    exchange.add_agreement("Inland Post", consumer("Requester revoked"))
    exchange.revoke_party("Inland Post")

    seen: dict[str, bytes] = {}
    with TestClient(create_app(settings, exchange, run_scheduler=False)) as client:
        for situation in situations:
            who = Caller(client, f"Requester {situation}", tokens[f"Requester {situation}"])
            inbox, outbox = who.collection_id("inbox"), who.collection_id("outbox")
            posted = who.send([request])
            assert posted.status_code == 202, posted.text
            status = posted.json()
            responses = [posted]
            responses.append(who.inbox())
            responses.append(who.get(f"/collections/{inbox}/manifest/"))
            (note,) = responses[1].json()["objects"]
            assert note["abstract"] == "no route" and note["object_refs"] == [request["id"]]
            responses.append(who.get(f"/collections/{inbox}/objects/{note['id']}/"))
            responses.append(who.get(f"/collections/{inbox}/objects/{note['id']}/versions/"))
            responses.append(who.get(f"/status/{status['id']}/"))
            own = {
                note["id"].encode(): b"<note>",
                status["id"].encode(): b"<status>",
                inbox.encode(): b"<inbox>",
                outbox.encode(): b"<outbox>",
            }
            transcript = b""
            for r in responses:
                head = f"{r.status_code}\n".encode() + b"".join(
                    k + b": " + v + b"\n" for k, v in sorted(r.headers.raw) if k.lower() != b"date"
                )
                transcript += head + b"\n" + r.content + b"\n\n"
            seen[situation] = _normalised(transcript, own)
            assert sorted(note) == sorted(NOTE_KEYS), note
    # the stamps are the instant of the POST (the same in every situation) and nothing routed anywhere
    first = seen["alone"]
    for situation, transcript in seen.items():
        assert transcript == first, f"the no-route answer differs when the requester is in situation {situation!r}"
    assert exchange.release_due(clock.now + 2 * exchange.settings.feedback_epoch * SECOND) == 0
