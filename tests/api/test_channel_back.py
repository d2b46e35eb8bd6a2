"""The channel back, through the API with two providers and two consumers: outcomes reach only their provider,
in batches; grades move with outcomes; requests for information and their answers route as specified; and
no party's identity crosses either way."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from cutout.api import create_app
from cutout.extensions import (
    DEFINITIONS,
    GRADE_EXT,
    OUTCOME_EXT,
    REQUEST_EXT,
    REQUEST_TYPE,
    opinion_for,
)
from cutout.model.timestamps import format_ms, now_us, parse_us
from cutout.service import Exchange
from cutout.settings import Settings
from tests.api.conftest import AMBER, Caller, indicator, location

EPOCH = 3600 * 1_000_000


@dataclass
class Four:
    exchange: Exchange
    p1: Caller  # covers the valley area
    p2: Caller  # covers another area
    c1: Caller
    c2: Caller

    def flush(self) -> int:
        """Release everything the next feedback epoch would."""
        return self.exchange.release_due(now_us() + EPOCH + 1_000_000)

    def inbox(self, who: str, **params: Any) -> list[dict[str, Any]]:
        r = getattr(self, who).inbox(**params)
        assert r.status_code == 200, r.text
        objects: list[dict[str, Any]] = r.json()["objects"]
        return objects


VALLEY = "30,44,36,48"
ELSEWHERE = "100,-10,110,0"


@pytest.fixture
def four(exchange: Exchange, settings: Settings) -> Iterator[Four]:
    callers = {}
    for name, provider, consumer in (
        ("Northern Watch", True, False),
        ("Coastal Radar", True, False),
        ("Harbor Command", False, True),
        ("Eastern Desk", False, True),
    ):
        _, token = exchange.add_party(name, provider=provider, consumer=consumer)
        callers[name] = token
    for consumer in ("Harbor Command", "Eastern Desk"):
        exchange.add_agreement("Northern Watch", consumer, area=VALLEY)
        exchange.add_agreement("Coastal Radar", consumer, area=ELSEWHERE)
    with TestClient(create_app(settings, exchange, run_scheduler=False)) as client:
        yield Four(
            exchange,
            *(Caller(client, name, token) for name, token in callers.items()),  # type: ignore[arg-type]
        )


def _opinion(refs: list[str], outcome: str | None = None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "opinion",
        "spec_version": "2.1",
        "id": f"opinion--{uuid.uuid4()}",
        "created": "2026-11-21T02:13:45.771Z",
        "modified": "2026-11-21T02:13:45.771Z",
        "opinion": opinion_for(outcome or "confirmed-hit"),
        "explanation": "Struck. Harbor Command J2.",
        "object_refs": refs,
        **extra,
    }
    if outcome is not None:
        obj["extensions"] = {OUTCOME_EXT: {"extension_type": "property-extension", "outcome": outcome}}
    return obj


def _request(**extra: Any) -> dict[str, Any]:
    expires = format_ms(now_us() + 7 * 24 * 3600 * 1_000_000)
    return {
        "type": REQUEST_TYPE,
        "spec_version": "2.1",
        "id": f"{REQUEST_TYPE}--{uuid.uuid4()}",
        "created": "2026-11-21T03:02:11.219Z",
        "modified": "2026-11-21T03:02:11.219Z",
        "question": "Convoy positions near Kalvo? Harbor Command asks.",
        "priority": "high",
        "expires": expires,
        "area": [32.0, 45.0, 34.0, 47.0],
        "extensions": {REQUEST_EXT: {"extension_type": "new-sdo"}},
        "x_hc_tasking": "HC-TASK-2207",
        "object_marking_refs": [AMBER],
        **extra,
    }


def _intel(four: Four, n: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Each provider sends n objects in its own area; returns each consumer's copies."""
    four.p1.send([location(46.0, 33.0, name=f"valley {i}") for i in range(n)])
    four.p2.send([location(-5.0, 105.0, name=f"island {i}") for i in range(n)])
    return {"c1": four.inbox("c1"), "c2": four.inbox("c2")}


# -- outcomes ---------------------------------------------------------------------------------------------


def test_outcomes_reach_only_their_provider_and_only_in_a_batch(four: Four) -> None:
    copies = _intel(four)
    valley = [o["id"] for o in copies["c1"] if o["name"].startswith("valley")]
    island = [o["id"] for o in copies["c1"] if o["name"].startswith("island")]
    r = four.c1.send([_opinion([valley[0]], "confirmed-hit"), _opinion([island[0]], "false-positive")])
    assert r.status_code == 202, r.text
    # never at once, and not before the epoch: an automatic per-item receipt would link the parties
    assert four.inbox("p1") == [] and four.inbox("p2") == []
    assert four.exchange.release_due(now_us()) == 0
    assert four.flush() == 2
    (to_p1,) = four.inbox("p1")
    (to_p2,) = four.inbox("p2")
    assert to_p1["extensions"] == {OUTCOME_EXT: {"extension_type": "property-extension", "outcome": "confirmed-hit"}}
    assert to_p2["extensions"][OUTCOME_EXT]["outcome"] == "false-positive"
    assert to_p2["opinion"] == "strongly-disagree"
    assert "Harbor Command" not in to_p1["explanation"]
    # released at the batch's time, not the submission's: both carry the same epoch-aligned stamp
    assert to_p1["modified"] == to_p2["modified"]
    assert parse_us(to_p1["modified"]) % 60_000_000 == 0
    # the other consumer hears nothing of it
    assert all(o["type"] == "location" for o in four.inbox("c2"))


def test_an_opinion_without_the_extension_is_read_by_its_value(four: Four) -> None:
    copies = _intel(four, 1)
    (valley,) = [o["id"] for o in copies["c1"] if o["name"].startswith("valley")]
    four.c1.send([_opinion([valley], opinion="disagree")])
    four.flush()
    (back,) = four.inbox("p1")
    assert back["opinion"] == "disagree" and back["extensions"][OUTCOME_EXT]["outcome"] == "not-found"
    assert four.exchange.grades()[0]["outcomes"] == {"not-found": 1}


def test_an_inconsistent_outcome_is_refused_whole(four: Four) -> None:
    copies = _intel(four, 1)
    (valley,) = [o["id"] for o in copies["c1"] if o["name"].startswith("valley")]
    bad = _opinion([valley], "confirmed-hit", opinion="disagree")
    r = four.c1.send([_opinion([valley], "stale"), bad])
    assert r.status_code == 422
    (problem,) = r.json()["details"]["problems"]
    assert problem["message"] == "outcome confirmed-hit goes with opinion strongly-agree, not disagree"
    four.flush()
    assert four.inbox("p1") == []


# -- grades -----------------------------------------------------------------------------------------------


def _grade(four: Four, name: str) -> dict[str, Any]:
    return next(g for g in four.exchange.grades() if g["party"] == name)


def test_grades_move_as_outcomes_accumulate(four: Four) -> None:
    copies = _intel(four, 8)
    valley = [o["id"] for o in copies["c1"] if o["name"].startswith("valley")]
    valley2 = [o["id"] for o in copies["c2"] if o["name"].startswith("valley")]
    assert _grade(four, "Northern Watch")["grade"] == "F" and _grade(four, "Northern Watch")["proposed"] == "F"
    four.c1.send([_opinion([v], "confirmed-hit") for v in valley[:4]])
    assert _grade(four, "Northern Watch")["proposed"] == "F"  # four outcomes: too few to judge
    four.c2.send([_opinion([v], "confirmed-hit") for v in valley2[:4]])
    g = _grade(four, "Northern Watch")
    assert g["hits"] == 8 and g["proposed"] == "B" and g["grade"] == "F"  # proposed, not yet adopted
    assert _grade(four, "Coastal Radar")["outcomes"] == {}
    # a consumer revising its outcome replaces it (one outcome per consumer and object)
    four.c1.send([_opinion([v], "false-positive") for v in valley[:4]])
    g = _grade(four, "Northern Watch")
    assert g["outcomes"] == {"confirmed-hit": 4, "false-positive": 4} and g["proposed"] == "D"
    assert four.exchange.set_grade("Northern Watch")["grade"] == "D"  # adopt
    assert four.exchange.set_grade("Northern Watch", "b")["grade"] == "B"  # the operator decides


def test_grades_are_refused_for_non_providers_and_bad_values(four: Four) -> None:
    from cutout.errors import BadRequest, NotFound

    with pytest.raises(BadRequest, match="only providers are graded"):
        four.exchange.set_grade("Harbor Command", "A")
    with pytest.raises(BadRequest, match="a grade is one of A, B, C, D, E, F"):
        four.exchange.set_grade("Northern Watch", "G")
    with pytest.raises(NotFound):
        four.exchange.set_grade("Nobody", "A")


def _grade_ext(four: Four) -> dict[str, Any]:
    four.p1.send([indicator(confidence=75, object_marking_refs=[AMBER])])
    (ind,) = [o for o in four.inbox("c1") if o["type"] == "indicator"]
    ext: dict[str, Any] = ind["extensions"][GRADE_EXT]
    return ext


@pytest.mark.parametrize(
    ("policy", "crowd", "visible"),
    [("never", 1, False), ("always", 3, True), ("shared", 2, True), ("shared", 3, False)],
)
def test_grade_visibility_follows_the_policy(four: Four, policy: str, crowd: int, visible: bool) -> None:
    """Two providers share grade B: under "shared" the grade shows only if the crowd is at most two."""
    four.exchange.set_grade("Northern Watch", "B")
    four.exchange.set_grade("Coastal Radar", "B")
    four.exchange.settings = dataclasses.replace(four.exchange.settings, grade_visibility=policy, grade_crowd=crowd)
    ext = _grade_ext(four)
    assert ext["information_credibility"] == 2  # confidence 75 (Appendix A: probably true)
    assert ("source_reliability" in ext) is visible
    if visible:
        assert ext["source_reliability"] == "B"


def test_a_grade_no_other_provider_shares_is_withheld(four: Four) -> None:
    four.exchange.set_grade("Northern Watch", "A")
    four.exchange.settings = dataclasses.replace(four.exchange.settings, grade_visibility="shared", grade_crowd=2)
    assert "source_reliability" not in _grade_ext(four)


def test_the_crowd_that_shares_a_grade_is_of_active_providers_only(four: Four) -> None:
    """Consumers and revoked providers holding the grade do not make it shared; each submission counts the
    crowd afresh (a revocation takes the grade away from the next release)."""
    four.exchange.set_grade("Northern Watch", "B")
    four.exchange.set_grade("Coastal Radar", "B")
    four.exchange.add_party("Quiet Reader", provider=False, consumer=True)  # grade F, not a provider
    four.exchange.settings = dataclasses.replace(four.exchange.settings, grade_visibility="shared", grade_crowd=2)
    assert _grade_ext(four)["source_reliability"] == "B"
    four.exchange.revoke_party("Coastal Radar")
    before = {o["id"] for o in four.inbox("c1")}
    four.p1.send([indicator(confidence=75, object_marking_refs=[AMBER])])
    (later,) = [o for o in four.inbox("c1") if o["type"] == "indicator" and o["id"] not in before]
    assert "source_reliability" not in later["extensions"][GRADE_EXT]


# -- requests for information -------------------------------------------------------------------------------


def test_a_request_reaches_the_covering_provider_only_without_the_requester(four: Four) -> None:
    req = _request()
    assert four.c1.send([req]).status_code == 202
    assert four.inbox("p1") == []  # in the next batch
    four.flush()
    (copy,) = four.inbox("p1")
    assert four.inbox("p2") == []  # its agreements with the requester cover another area
    assert copy["type"] == REQUEST_TYPE and copy["id"] != req["id"]
    assert copy["created_by_ref"] == four.exchange.identity["id"]
    assert copy["question"] == "Convoy positions near Kalvo? [REDACTED] asks."
    assert copy["extensions"] == {REQUEST_EXT: {"extension_type": "new-sdo"}}
    assert "x_hc_tasking" not in copy and copy["priority"] == "high" and copy["area"] == req["area"]
    assert copy["created"].endswith(":00.000Z")
    # the other consumer sees nothing; the requester gets no route note
    assert four.inbox("c2") == [] and four.inbox("c1") == []


def test_types_narrow_the_route(four: Four) -> None:
    four.exchange.end_agreement(1)  # Northern Watch -> Harbor Command (every type)
    four.exchange.add_agreement("Northern Watch", "Harbor Command", types=["indicator"])
    four.c1.send([_request(object_types=["sighting"])])
    four.flush()
    assert four.inbox("p1") == []
    (note,) = four.inbox("c1")
    assert note["abstract"] == "no route"


def test_a_request_nothing_covers_gets_an_honest_no_route(four: Four) -> None:
    req = _request(area=[-80.0, 10.0, -70.0, 20.0])
    four.c1.send([req])
    (note,) = four.inbox("c1")  # at once: there is nothing to wait for
    assert note["type"] == "note" and note["abstract"] == "no route" and note["object_refs"] == [req["id"]]
    assert note["created_by_ref"] == four.exchange.identity["id"]
    # it says nothing about who exists: the same words whatever the exchange holds
    assert "provider" not in note["content"].lower() or "no agreement of yours" in note["content"].lower()
    assert "Northern" not in note["content"] and "Coastal" not in note["content"]
    four.flush()
    assert four.inbox("p1") == [] and four.inbox("p2") == []


def test_malformed_and_expired_requests_are_refused(four: Four) -> None:
    past = format_ms(now_us() - 1_000_000)
    r = four.c1.send([_request(expires=past)])
    assert r.status_code == 422
    assert r.json()["details"]["problems"][0]["message"] == "expires is in the past: the request would never be routed"
    r = four.c1.send([_request(priority="now!")])
    assert r.status_code == 422 and "priority must be one of" in r.text
    r = four.p1.send([_request()])
    assert r.status_code == 422 and "only a consumer sends requests for information" in r.text


def test_a_request_that_expires_while_batched_is_not_delivered(four: Four) -> None:
    soon = format_ms(now_us() + 60 * 1_000_000)
    four.c1.send([_request(expires=soon)])
    assert four.flush() == 1
    assert four.inbox("p1") == []


def _asked(four: Four) -> tuple[dict[str, Any], dict[str, Any]]:
    req = _request()
    four.c1.send([req])
    four.flush()
    (copy,) = four.inbox("p1")
    return req, copy


def _note(refs: list[str], content: str, stamp: str = "2026-11-21T04:00:00.000Z", **extra: Any) -> dict[str, Any]:
    """A provider's note about ``refs`` (an answer when one of them is its copy of a request)."""
    return {
        "type": "note",
        "spec_version": "2.1",
        "id": f"note--{uuid.uuid4()}",
        "created": stamp,
        "modified": stamp,
        "content": content,
        "object_refs": refs,
        "object_marking_refs": [AMBER],
        **extra,
    }


def test_an_answer_goes_to_the_requester_naming_its_own_request(four: Four) -> None:
    req, copy = _asked(four)
    before = {o["id"] for o in four.inbox("c2")}
    far = location(-30.0, -60.0, name="answer place outside the agreement's area")
    answer = _note(
        [copy["id"], far["id"]], "At the ferry. Northern Watch observers in place.", abstract="Convoy position"
    )
    assert four.p1.send([far, answer]).status_code == 202
    got = {o["type"]: o for o in four.inbox("c1")}
    assert set(got) == {"note", "location"}  # the answer and what it references, outside the area
    note = got["note"]
    assert sorted(note["object_refs"]) == sorted([req["id"], got["location"]["id"]])
    assert note["content"] == "At the ferry. [REDACTED] observers in place."
    # the other consumer gets it only under its own agreement: the far location is outside its area, and the
    # note, left with no reference that reaches it, is withheld (a note needs object_refs)
    assert [o for o in four.inbox("c2") if o["id"] not in before] == []


def test_answers_stop_once_the_request_expired(four: Four) -> None:
    req, copy = _asked(four)
    revised = {**req, "modified": "2026-11-21T03:05:00.000Z", "revoked": True}
    assert four.c1.send([revised]).status_code == 202
    four.exchange.end_agreement(3)  # Northern Watch -> Eastern Desk: nothing flows there
    far = location(-30.0, -60.0, name="late answer")
    answer = _note([copy["id"], far["id"]], "Late.")
    four.p1.send([far, answer])
    assert [o for o in four.inbox("c1") if o["type"] == "location"] == []
    notes = [o for o in four.inbox("c1") if o["type"] == "note"]
    assert all(req["id"] not in n["object_refs"] for n in notes)


def test_the_extension_definitions_are_published(four: Four) -> None:
    r = four.c1.get("/extensions/")
    assert r.status_code == 200
    assert r.json()["objects"] == list(DEFINITIONS)
    assert four.c1.client.get("/exchange/extensions/").status_code == 401


def test_no_identity_crosses_the_channel_back(four: Four) -> None:
    """Canaries of the consumer in its feedback and request never reach the provider, and the provider's in
    its answer never reach the consumer."""
    copies = _intel(four, 1)
    (valley,) = [o["id"] for o in copies["c1"] if o["name"].startswith("valley")]
    consumer_id = f"identity--{uuid.uuid4()}"
    canaries_c = ["Harbor Command", "HC-TASK-2207", "x_hc_tasking", consumer_id, "02:13:45.771", "03:02:11.219"]
    req = _request(created_by_ref=consumer_id)
    fb = _opinion([valley], "confirmed-hit", created_by_ref=consumer_id, x_hc_tasking="HC-TASK-2207")
    four.c1.send([req, fb])
    four.flush()
    provider_bytes = (
        b"".join(four.p1.get(path).content for path in ("/", "/collections/", "/extensions/"))
        + four.p1.inbox(**{"match[version]": "all"}).content
    )
    for c in [*canaries_c, req["id"], fb["id"]]:
        assert c.encode() not in provider_bytes, c
    copy = next(o for o in four.inbox("p1") if o["type"] == REQUEST_TYPE)
    provider_id = f"identity--{uuid.uuid4()}"
    answer = _note(
        [copy["id"]],
        "Northern Watch team.",
        "2026-11-21T04:00:00.417Z",
        created_by_ref=provider_id,
        x_nw_handle="ASSET-LIMA-7",
    )
    four.p1.send([answer])
    consumer_bytes = four.c1.inbox(**{"match[version]": "all"}).content
    for c in ("Northern Watch", provider_id, answer["id"], "ASSET-LIMA-7", "04:00:00.417", copy["id"]):
        assert c.encode() not in consumer_bytes, c
    assert req["id"].encode() in consumer_bytes  # the consumer's own request id, which it knows


def test_feedback_epoch_is_a_batch_boundary(four: Four) -> None:
    """Everything sent back within one epoch falls due at the same instant, whatever the order it came in."""
    copies = _intel(four, 2)
    valley = [o["id"] for o in copies["c1"] if o["name"].startswith("valley")]
    four.c1.send([_opinion([valley[0]], "stale")])
    four.c1.send([_opinion([valley[1]], "not-found")])
    due = [parse_us(o["modified"]) for o in four.inbox("p1")]
    assert due == []
    nxt = (now_us() // EPOCH + 1) * EPOCH
    assert four.exchange.release_due(nxt - 1) == 0
    assert four.exchange.release_due(nxt) == 2
    stamps = {o["modified"] for o in four.inbox("p1")}
    assert len(stamps) == 1 and parse_us(stamps.pop()) == nxt - nxt % 60_000_000
    assert datetime.fromtimestamp(nxt / 1e6, UTC) - datetime.now(UTC) < timedelta(hours=1, minutes=1)


def test_others_get_an_answer_only_as_their_agreement_allows_and_without_the_request(four: Four) -> None:
    req, copy = _asked(four)
    near = location(46.2, 33.1, name="answer place inside the valley")
    answer = _note([copy["id"], near["id"]], "Here.")
    four.p1.send([near, answer])
    mine = {o["type"]: o for o in four.inbox("c1")}
    theirs = {o["type"]: o for o in four.inbox("c2")}
    assert sorted(mine["note"]["object_refs"]) == sorted([req["id"], mine["location"]["id"]])
    assert theirs["note"]["object_refs"] == [theirs["location"]["id"]]  # no trace of the request
    assert mine["note"]["id"] != theirs["note"]["id"]
