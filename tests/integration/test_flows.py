"""Whole flows through a real server: a provider's updates, and a consumer's feedback going back."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from cutout.extensions import OUTCOME_EXT
from cutout.model.timestamps import parse_us

from .support import (
    TLP,
    Broker,
    by_name,
    coll_path,
    indicator,
    location,
    manifest,
    read_all,
    read_until,
    send,
    ts,
)

pytestmark = pytest.mark.integration

#: feedback goes back in batches: one-second epochs, so the test need not wait an hour
BROKER_SETTINGS = {"feedback_epoch": 1, "scheduler_interval": 0.2}


def test_a_newer_version_updates_the_same_copy(broker: Broker) -> None:
    provider, consumer = broker.pair("Update")
    v1 = indicator(1, name="beacon v1", modified=ts(10, ms=111))
    other = location(2)
    send(broker, provider, [v1, other])
    (copy1,) = [o for o in read_all(broker, consumer) if o["type"] == "indicator"]

    v2 = {**v1, "modified": ts(20, ms=222), "name": "beacon v2", "pattern": "[ipv4-addr:value = '10.9.9.9']"}
    send(broker, provider, [v2])

    got = read_all(broker, consumer)
    assert len(got) == 2  # the default GET returns the latest version only
    (copy2,) = [o for o in got if o["type"] == "indicator"]
    assert copy2["id"] == copy1["id"] != v1["id"]
    assert copy2["created"] == copy1["created"]
    assert parse_us(copy2["modified"]) > parse_us(copy1["modified"])
    assert (copy2["name"], copy2["pattern"]) == ("beacon v2", v2["pattern"])

    with broker.http(consumer) as h:
        obj = coll_path(broker, consumer, "inbox", f"objects/{copy1['id']}/")
        assert h.get(obj).json()["objects"] == [copy2]
        assert h.get(obj, params={"match[version]": "all"}).json()["objects"] == [copy1, copy2]
        assert h.get(obj, params={"match[version]": "first"}).json()["objects"] == [copy1]
        versions = h.get(obj + "versions/").json()["versions"]
        assert versions == [copy1["modified"], copy2["modified"]]
        every = h.get(coll_path(broker, consumer, "inbox"), params={"match[version]": "all"}).json()["objects"]
        assert sorted(o["name"] for o in every if o["type"] == "indicator") == ["beacon v1", "beacon v2"]

    # an older version, and the same version again, change nothing for the consumer
    before = manifest(broker, consumer)
    v0 = {**v1, "modified": ts(5), "name": "beacon v0"}
    send(broker, provider, [v0])
    send(broker, provider, [v2])
    assert manifest(broker, consumer) == before
    assert read_all(broker, consumer) == got


def _opinion(refs: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "type": "opinion",
        "spec_version": "2.1",
        "id": f"opinion--{uuid.uuid4()}",
        "created": ts(0, 30),
        "modified": ts(0, 30),
        "opinion": "strongly-agree",
        "explanation": "Confirmed.",
        "object_refs": refs,
        **extra,
    }


def test_feedback_reaches_the_provider_about_its_own_ids(broker: Broker) -> None:
    provider, consumer = broker.pair("Feedback")
    depot = indicator(1, name="depot")
    site = location(2, name="site")
    send(broker, provider, [depot, site])
    copies = by_name(read_all(broker, consumer))
    depot_copy, site_copy = copies["depot"], copies["site"]

    consumer_identity = f"identity--{uuid.uuid4()}"
    observed = f"observed-data--{uuid.uuid4()}"
    common: dict[str, Any] = {
        "created_by_ref": consumer_identity,
        "labels": ["consumer-internal"],
        "confidence": 64,
        "lang": "en",
        "x_consumer_ref": "STRIKE-17",
        "external_references": [{"source_name": "consumer-case", "url": "https://consumer.example/17"}],
        "object_marking_refs": [TLP["amber"]],
    }
    opinion = _opinion(
        [depot_copy["id"], site_copy["id"]],
        explanation=f"Struck; precise hit. {consumer.name} will report.",
        authors=["Maj. Example"],
        **common,
    )
    sighting = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": f"sighting--{uuid.uuid4()}",
        "created": ts(1, 31, ms=417),
        "modified": ts(1, 31, ms=417),
        "sighting_of_ref": depot_copy["id"],
        "where_sighted_refs": [consumer_identity],
        "observed_data_refs": [observed],
        "first_seen": ts(13, 20, ms=777),
        "last_seen": ts(44, 25, ms=901),
        "count": 7,
        "description": "Seen at the gate.",
        **common,
    }
    status = send(broker, consumer, [opinion, sighting])
    assert [s["id"] for s in status["successes"]] == [opinion["id"], sighting["id"]]
    # the consumer's own outbox holds what it sent
    assert read_all(broker, consumer, "outbox") == [opinion, sighting]

    back = read_until(broker, provider, 2)
    assert sorted(o["type"] for o in back) == ["opinion", "sighting"]
    got_opinion = next(o for o in back if o["type"] == "opinion")
    got_sighting = next(o for o in back if o["type"] == "sighting")

    assert sorted(got_opinion["object_refs"]) == sorted([depot["id"], site["id"]])
    assert got_sighting["sighting_of_ref"] == depot["id"]
    for o in back:
        assert o["created_by_ref"] == broker.identity["id"]
        assert o["id"] not in (opinion["id"], sighting["id"])
        assert not {"where_sighted_refs", "observed_data_refs", "authors", "labels", "lang"} & o.keys()
        assert not [k for k in o if k.startswith("x_")]
        assert "granular_markings" not in o
        # the only extension is the exchange's outcome: the opinion strongly agrees, the sighting is a hit
        outcome = {"extension_type": "property-extension", "outcome": "confirmed-hit"}
        assert o["extensions"] == {OUTCOME_EXT: outcome}
        assert o.get("external_references") is None
        assert set(o["object_marking_refs"]) <= set(TLP.values())
        assert o.get("confidence", 10) in (10, 30, 50, 70, 90)
        assert o["created"].endswith(":00.000Z") and o["modified"].endswith(":00.000Z")
    assert got_opinion["opinion"] == "strongly-agree"
    assert consumer.name not in got_opinion["explanation"]
    assert "[REDACTED]" in got_opinion["explanation"]
    # counts are bucketed, times coarsened outwards (first_seen down, last_seen up)
    assert got_sighting["count"] == 5
    assert got_sighting["first_seen"] == ts(0, 20) and got_sighting["last_seen"] == ts(0, 26)

    # feedback about feedback's targets stays put: the consumer's inbox did not change
    assert by_name(read_all(broker, consumer)).keys() == {"depot", "site"}
    # the provider can read its feedback object by object
    with broker.http(provider) as h:
        for o in back:
            r = h.get(coll_path(broker, provider, "inbox", f"objects/{o['id']}/"))
            assert r.json()["objects"] == [o]


def test_feedback_from_two_consumers_reaches_the_one_provider(broker: Broker) -> None:
    provider, first = broker.pair("Shared")
    second = broker.add_party("Shared Consumer B", consumer=True)
    broker.add_agreement(provider, second)
    obj = indicator(1, name="shared")
    send(broker, provider, [obj])
    a = by_name(read_all(broker, first))["shared"]
    b = by_name(read_all(broker, second))["shared"]
    assert a["id"] != b["id"]  # each consumer has its own id for the same object
    send(broker, first, [_opinion([a["id"]], opinion="agree")])
    send(broker, second, [_opinion([b["id"]], opinion="disagree")])
    back = read_until(broker, provider, 2)
    assert sorted(o["opinion"] for o in back) == ["agree", "disagree"]
    assert all(o["object_refs"] == [obj["id"]] for o in back)
    # and one consumer's feedback never reaches the other
    assert [o["type"] for o in read_all(broker, first)] == ["indicator"]
    assert [o["type"] for o in read_all(broker, second)] == ["indicator"]


def test_feedback_updates_and_duplicates(broker: Broker) -> None:
    provider, consumer = broker.pair("Revise")
    obj = indicator(1, name="target")
    send(broker, provider, [obj])
    copy = by_name(read_all(broker, consumer))["target"]
    first = _opinion([copy["id"]], opinion="agree", explanation="Likely.")
    send(broker, consumer, [first])
    send(broker, consumer, [first])  # the same version again: nothing new
    (v1,) = read_until(broker, provider, 1)
    revised = {**first, "modified": ts(0, 45), "opinion": "strongly-agree", "explanation": "Confirmed."}
    send(broker, consumer, [revised])
    (v2,) = read_until(broker, provider, 1, until=lambda got: got[0]["opinion"] == "strongly-agree")
    assert v2["id"] == v1["id"] and v2["created"] == v1["created"]
    assert parse_us(v2["modified"]) > parse_us(v1["modified"])
    assert (v2["opinion"], v2["explanation"], v2["object_refs"]) == ("strongly-agree", "Confirmed.", [obj["id"]])
    assert len(manifest(broker, provider, **{"match[version]": "all"})) == 2


def test_held_items_are_released_by_the_running_scheduler(broker: Broker) -> None:
    """An agreement with a delay: nothing at first, then the server's own scheduler releases it; an agreement
    that ends meanwhile releases nothing (decided again at release time)."""
    provider, waiting = broker.pair("Delay", delay=3)
    ending = broker.add_party("Delay Consumer Ending", consumer=True)
    agreement = broker.add_agreement(provider, ending, delay=3)
    send(broker, provider, [indicator(1, name="later")])
    assert read_all(broker, waiting) == [] and read_all(broker, ending) == []
    with broker.exchange() as ex:
        ex.end_agreement(agreement["id"])
    deadline = time.monotonic() + 15
    while not (got := read_all(broker, waiting)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert [o["name"] for o in got] == ["later"]
    # both were due at the same moment and decided in the same release run
    assert read_all(broker, ending) == []
