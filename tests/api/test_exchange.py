"""The pipeline through the API: decide, sanitize, release, feedback, and what must never flow."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bench.workload import Workload

from cutout import service
from cutout.errors import NotFound
from cutout.model.timestamps import now_us
from cutout.model.tlp import TLP2_IDS
from cutout.store import Store
from cutout.store.sql import PageQuery
from tests.api.conftest import World, flush_batches, indicator, location

TLP1_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
TLP1_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"


def inbox_objects(world: World, who: str = "consumer") -> list[dict[str, Any]]:
    caller = getattr(world, who)
    r = caller.inbox()
    assert r.status_code == 200
    objects: list[dict[str, Any]] = r.json()["objects"]
    return objects


def test_no_agreement_nothing_flows(world: World) -> None:
    assert world.provider.send([indicator()]).status_code == 202
    assert inbox_objects(world) == []
    assert inbox_objects(world, "outsider") == []


def test_released_copy_is_the_readers_own(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    world.exchange.add_agreement("Provider One", "Outsider")
    obj = indicator()
    world.provider.send([obj])
    mine, theirs = inbox_objects(world)[0], inbox_objects(world, "outsider")[0]
    assert mine["id"] != obj["id"]
    assert theirs["id"] != obj["id"]
    assert mine["id"] != theirs["id"]
    assert mine["created_by_ref"] == world.exchange.identity["id"]
    assert mine["object_marking_refs"] == [TLP2_IDS[2]]


def test_type_tlp_and_area_scope(world: World) -> None:
    world.exchange.add_agreement(
        "Provider One", "Consumer One", types=["indicator", "location"], tlp_max="green", area="30,44,36,48"
    )
    ok = indicator(object_marking_refs=[TLP1_GREEN])
    too_secret = indicator(object_marking_refs=[TLP1_RED])
    unmarked = indicator()
    del unmarked["object_marking_refs"]  # counts as red (the default unmarked_tlp)
    inside = location(46.0, 33.0, object_marking_refs=[TLP1_GREEN])
    outside = location(50.0, 33.0, object_marking_refs=[TLP1_GREEN])
    wrong_type = {**indicator(object_marking_refs=[TLP1_GREEN]), "type": "indicator"}
    malware = {
        "type": "malware",
        "spec_version": "2.1",
        "id": f"malware--{uuid.uuid4()}",
        "created": "2026-11-20T05:00:00.000Z",
        "modified": "2026-11-20T05:00:00.000Z",
        "name": "m",
        "is_family": True,
        "object_marking_refs": [TLP1_GREEN],
    }
    world.provider.send([ok, too_secret, unmarked, inside, outside, wrong_type, malware])
    got = inbox_objects(world)
    kinds = sorted((o["type"], o.get("latitude")) for o in got)
    assert kinds == [("indicator", None), ("indicator", None), ("location", 46.0)]
    assert all(o["object_marking_refs"] == [TLP2_IDS[1]] for o in got)


def test_sighting_tied_to_a_location_outside_the_area_does_not_flow(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One", area="30,44,36,48")
    far = location(10.0, 10.0)
    target = indicator()
    sighting = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": f"sighting--{uuid.uuid4()}",
        "created": "2026-11-20T05:00:00.000Z",
        "modified": "2026-11-20T05:00:00.000Z",
        "sighting_of_ref": target["id"],
        "where_sighted_refs": [far["id"]],
        "object_marking_refs": [TLP2_IDS[1]],
    }
    world.provider.send([far, target])
    world.provider.send([sighting])  # the location is found in the provider's outbox
    assert sorted(o["type"] for o in inbox_objects(world)) == ["indicator"]


def test_duplicates_are_ordinary_successes_and_not_released_twice(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    obj = indicator()
    first = world.provider.send([obj]).json()
    again = world.provider.send([obj]).json()
    assert first["success_count"] == again["success_count"] == 1
    assert len(inbox_objects(world)) == 1


def test_each_objects_references_and_tlp_are_worked_out_once_and_before_the_write_lock(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scheduling and releasing a provider's envelope read each object's references and TLP level, which
    depend on the object alone: worked out once per object, before the write transaction, they are not part
    of the time another writer waits for (docs/benchmarks.md, "What is left", item 9)."""
    world.exchange.add_agreement("Provider One", "Consumer One")
    envelope = Workload().objects(100)
    assert any(service._all_refs(o) for o in envelope)  # sightings and relationships: something to release
    calls: dict[str, list[bool]] = {"refs": [], "tlp": []}
    writing = [False]
    write, all_refs, object_tlp = Store.write, service._all_refs, service.object_tlp

    @contextlib.contextmanager
    def flagged(self: Store) -> Iterator[Any]:
        with write(self) as tx:
            writing[0] = True
            try:
                yield tx
            finally:
                writing[0] = False

    def counted(name: str, f: Any) -> Any:
        def call(*args: Any) -> Any:
            calls[name].append(writing[0])
            return f(*args)

        return call

    monkeypatch.setattr(Store, "write", flagged)
    monkeypatch.setattr(service, "_all_refs", counted("refs", all_refs))
    monkeypatch.setattr(service, "object_tlp", counted("tlp", object_tlp))
    assert world.provider.send(envelope).json()["success_count"] == 100
    assert calls == {"refs": [False] * 100, "tlp": [False] * 100}
    monkeypatch.undo()
    assert len(inbox_objects(world)) == sum(1 for o in envelope if o["type"] in service.RELEASED_TYPES)


def test_two_providers_sending_the_same_object_get_the_same_answer(world: World) -> None:
    world.exchange.add_party("Provider Two", provider=True, consumer=False)
    _, token = world.exchange.rotate_party("Provider Two")
    from tests.api.conftest import Caller

    second = Caller(world.client, "Provider Two", token)
    obj = indicator()
    a, b = world.provider.send([obj]).json(), second.send([obj]).json()
    for key in ("status", "total_count", "success_count", "failure_count", "pending_count", "successes"):
        assert a[key] == b[key]


def test_updates_reach_the_consumer_as_new_versions_of_its_copy(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    v1 = indicator()
    world.provider.send([v1])
    copy1 = inbox_objects(world)[0]
    v2 = {**v1, "modified": "2026-11-22T00:00:00.000Z", "name": "updated"}
    world.provider.send([v2])
    latest = inbox_objects(world)
    assert len(latest) == 1
    copy2 = latest[0]
    assert copy2["id"] == copy1["id"]
    assert copy2["name"] == "updated"
    assert copy2["created"] == copy1["created"]
    assert copy2["modified"] > copy1["modified"]
    cid = world.consumer.collection_id("inbox")
    versions = world.consumer.get(f"/collections/{cid}/objects/{copy1['id']}/versions/").json()["versions"]
    assert versions == [copy1["modified"], copy2["modified"]]
    # an older version arriving late is stored for the provider but not released
    v0 = {**v1, "modified": "2026-11-20T05:00:01.000Z", "name": "stale"}
    world.provider.send([v0])
    assert [o["name"] for o in inbox_objects(world)] == ["updated"]


def test_revocation_reaches_the_consumer(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    v1 = indicator()
    world.provider.send([v1])
    world.provider.send([{**v1, "modified": "2026-11-22T00:00:00.000Z", "revoked": True}])
    (copy,) = inbox_objects(world)
    assert copy["revoked"] is True


def test_delayed_release(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One", delay=3600)
    world.provider.send([indicator()])
    assert inbox_objects(world) == []
    assert world.exchange.release_due() == 0
    assert world.exchange.release_due(now_us() + 3601 * 1_000_000) == 1
    assert len(inbox_objects(world)) == 1


def test_agreement_ended_while_held_releases_nothing(world: World) -> None:
    a = world.exchange.add_agreement("Provider One", "Consumer One", delay=3600)
    world.provider.send([indicator()])
    world.exchange.end_agreement(a["id"])
    assert world.exchange.release_due(now_us() + 3601 * 1_000_000) == 1
    assert inbox_objects(world) == []


def test_revoked_consumer_gets_nothing_more(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    world.provider.send([indicator()])
    party = world.exchange.authenticate(None, world.consumer.token)
    inbox = next(c for c in world.exchange.collections(party) if c.kind == "inbox")
    world.exchange.revoke_party("Consumer One")
    world.provider.send([indicator()])
    assert len(world.exchange.page(party, inbox.uuid, PageQuery(), None).rows) == 1


def _opinion(refs: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "type": "opinion",
        "spec_version": "2.1",
        "id": f"opinion--{uuid.uuid4()}",
        "created": "2026-11-21T02:13:45.771Z",
        "modified": "2026-11-21T02:13:45.771Z",
        "opinion": "strongly-agree",
        "explanation": "Struck; precise hit. Consumer One BDA to follow.",
        "authors": ["Maj. Example"],
        "object_refs": refs,
        **extra,
    }


def test_feedback_goes_back_to_the_provider_only(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    world.exchange.add_agreement("Provider One", "Outsider")
    original = indicator()
    world.provider.send([original])
    copy = inbox_objects(world)[0]
    op = _opinion([copy["id"]], x_consumer_case="CASE-77", created_by_ref="identity--" + str(uuid.uuid4()))
    sighting = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": f"sighting--{uuid.uuid4()}",
        "created": "2026-11-21T02:13:45.771Z",
        "modified": "2026-11-21T02:13:45.771Z",
        "sighting_of_ref": copy["id"],
        "where_sighted_refs": ["identity--" + str(uuid.uuid4())],
        "count": 37,
    }
    r = world.consumer.send([op, sighting])
    assert r.status_code == 202, r.text
    assert inbox_objects(world, "provider") == []  # never at once: feedback goes in batches
    assert flush_batches(world.exchange) == 2
    back = inbox_objects(world, "provider")
    assert sorted(o["type"] for o in back) == ["opinion", "sighting"]
    got_op = next(o for o in back if o["type"] == "opinion")
    got_s = next(o for o in back if o["type"] == "sighting")
    assert got_op["object_refs"] == [original["id"]]
    assert got_op["explanation"] == "Struck; precise hit. [REDACTED] BDA to follow."
    assert got_op["created_by_ref"] == world.exchange.identity["id"]
    assert got_op["id"] != op["id"]
    for gone in ("authors", "x_consumer_case"):
        assert gone not in got_op
    assert got_s["sighting_of_ref"] == original["id"]
    assert "where_sighted_refs" not in got_s and got_s["count"] == 20
    # nobody else hears of it
    assert all(o["type"] == "indicator" for o in inbox_objects(world, "outsider"))
    assert all(o["type"] == "indicator" for o in inbox_objects(world))


def test_feedback_naming_something_never_received_is_refused(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Outsider")
    original = indicator()
    world.provider.send([original])
    theirs = inbox_objects(world, "outsider")[0]["id"]
    for refs in ([original["id"]], [theirs], ["indicator--" + str(uuid.uuid4())]):
        r = world.consumer.send([_opinion(refs)])
        assert r.status_code == 422
        problem = r.json()["details"]["problems"][0]["message"]
        # the same words whether the object exists elsewhere or not
        assert problem == "feedback must name objects in your inbox; this names none of them"
    assert inbox_objects(world, "provider") == []


def test_consumers_send_only_feedback(world: World) -> None:
    r = world.consumer.send([indicator()])
    assert r.status_code == 422
    assert "may send only feedback" in r.json()["details"]["problems"][0]["message"]


def test_withdrawal_revokes_every_copy(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    world.exchange.add_agreement("Provider One", "Outsider")
    obj = indicator()
    world.provider.send([obj])
    before = {w: inbox_objects(world, w)[0] for w in ("consumer", "outsider")}
    p = world.provider
    outbox = p.collection_id("outbox")
    r = world.client.delete(
        f"/exchange/collections/{outbox}/objects/{obj['id']}/",
        headers={"Authorization": f"Bearer {p.token}", "Accept": "application/taxii+json;version=2.1"},
    )
    assert r.status_code == 200
    assert p.get(f"/collections/{outbox}/objects/{obj['id']}/").status_code == 404
    for who, copy in before.items():
        (after,) = inbox_objects(world, who)
        assert after["id"] == copy["id"]
        assert after["revoked"] is True
        assert after["modified"] > copy["modified"]
    # again: it is gone
    r = world.client.delete(
        f"/exchange/collections/{outbox}/objects/{obj['id']}/", headers={"Authorization": f"Bearer {p.token}"}
    )
    assert r.status_code == 404


def test_withdrawal_of_a_held_object_releases_nothing(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One", delay=3600)
    obj = indicator()
    world.provider.send([obj])
    outbox = world.provider.collection_id("outbox")
    r = world.client.delete(
        f"/exchange/collections/{outbox}/objects/{obj['id']}/",
        headers={"Authorization": f"Bearer {world.provider.token}"},
    )
    assert r.status_code == 200
    world.exchange.release_due(now_us() + 3601 * 1_000_000)
    assert inbox_objects(world) == []


def test_only_your_outbox_can_be_withdrawn_from(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    world.provider.send([indicator()])
    copy = inbox_objects(world)[0]
    c = world.consumer
    headers = {"Authorization": f"Bearer {c.token}"}
    inbox = c.collection_id("inbox")
    assert (
        world.client.delete(f"/exchange/collections/{inbox}/objects/{copy['id']}/", headers=headers).status_code == 403
    )
    theirs = world.provider.collection_id("outbox")
    assert (
        world.client.delete(f"/exchange/collections/{theirs}/objects/{copy['id']}/", headers=headers).status_code == 404
    )


def test_registered_terms_are_redacted_and_own_assets_withheld(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    terms = world.exchange.party_terms("Provider One", add=["Operation KESTREL", "192.0.2.0/24"])
    assert terms == ["192.0.2.0/24", "Operation KESTREL"]

    def ip(value: str) -> dict[str, Any]:
        return {
            "type": "ipv4-addr",
            "spec_version": "2.1",
            "id": f"ipv4-addr--{uuid.uuid4()}",
            "value": value,
            "object_marking_refs": [TLP2_IDS[1]],
        }

    own_ip, other_ip = ip("192.0.2.9"), ip("203.0.113.9")
    own_pattern = indicator(pattern="[ipv4-addr:value = '192.0.2.10']")
    text = indicator(description="Part of operation   kestrel; mail ops@provider.example")
    assert world.provider.send([own_ip, other_ip, own_pattern, text]).status_code == 202
    got = inbox_objects(world)
    values = sorted(o.get("value") or o.get("description") or o.get("pattern") for o in got)
    assert values == ["203.0.113.9", "Part of [REDACTED]; mail [REDACTED]"]
    assert world.exchange.party_terms("Provider One", remove=["Operation KESTREL"]) == ["192.0.2.0/24"]


def test_review_holds_redacted_objects_for_the_operator(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One", review=True)
    clean = indicator(description="Beacon every 60 s")
    dirty = indicator(description="Reported by Provider One's desk")
    rejected = indicator(description="Call +99 555 0100")
    world.provider.send([clean, dirty, rejected])
    assert [o["description"] for o in inbox_objects(world)] == ["Beacon every 60 s"]
    held = world.exchange.list_reviews()
    assert len(held) == 2
    by_text = {h["preview"]["description"]: h for h in held}
    assert set(by_text) == {"Reported by [REDACTED]'s desk", "Call [REDACTED]"}
    first = by_text["Reported by [REDACTED]'s desk"]
    assert first["from"] == "Provider One"
    assert first["to"] == "Consumer One"
    world.exchange.decide_review(first["id"], release=True)
    world.exchange.decide_review(by_text["Call [REDACTED]"]["id"], release=False)
    got = sorted(o["description"] for o in inbox_objects(world))
    assert got == ["Beacon every 60 s", "Reported by [REDACTED]'s desk"]
    assert world.exchange.list_reviews() == []
    with pytest.raises(NotFound):
        world.exchange.decide_review(first["id"], release=True)
