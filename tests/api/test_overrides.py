"""Per-agreement sanitizing options through the API: an agreement can let more through, only what it names,
only to its own consumer, and only while it is active."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from typing import Any

import pytest

from cutout.errors import BadRequest
from cutout.model.timestamps import now_us
from tests.api.conftest import AMBER, World, indicator, location, ts

PAYLOAD = base64.b64encode(b"MZ\x90\x00 sample bytes").decode()


def _artifact() -> dict[str, Any]:
    return {
        "type": "artifact",
        "spec_version": "2.1",
        "id": f"artifact--{uuid.uuid4()}",
        "mime_type": "application/octet-stream",
        "payload_bin": PAYLOAD,
        "object_marking_refs": [AMBER],
    }


def _translation(target: dict[str, Any], **contents: Any) -> dict[str, Any]:
    return {
        "type": "language-content",
        "spec_version": "2.1",
        "id": f"language-content--{uuid.uuid4()}",
        "created": ts(0),
        "modified": ts(0),
        "object_ref": target["id"],
        "object_modified": target["modified"],
        "contents": contents,
        "object_marking_refs": [AMBER],
    }


def _inbox(world: World, who: str) -> dict[str, list[dict[str, Any]]]:
    r = getattr(world, who).inbox()
    assert r.status_code == 200
    by_type: dict[str, list[dict[str, Any]]] = {}
    for o in r.json()["objects"]:
        by_type.setdefault(o["type"], []).append(o)
    return by_type


def test_options_reach_only_the_agreement_that_allows_them(world: World) -> None:
    world.exchange.party_terms("Provider One", add=["Operation Nightjar"])
    world.exchange.add_agreement(
        "Provider One", "Consumer One", allow=["artifact", "labels", "lang", "language-content", "authors"]
    )
    world.exchange.add_agreement("Provider One", "Outsider")
    ind = indicator(labels=["apt-x", "house-tag-4711"], lang="en-GB")
    note = {
        "type": "note",
        "spec_version": "2.1",
        "id": f"note--{uuid.uuid4()}",
        "created": ts(0),
        "modified": ts(0),
        "content": "seen twice",
        "authors": ["J. Smith of Operation Nightjar"],
        "object_refs": [ind["id"]],
        "object_marking_refs": [AMBER],
    }
    translation = _translation(
        ind,
        **{
            "fr-FR": {"name": "indicateur de Operation Nightjar", "x_secret": "hidden", "pattern": "[x:y = 'z']"},
            "de": {"description": "Beschreibung"},
        },
    )
    assert world.provider.send([ind, _artifact(), translation, note]).status_code == 202

    allowed = _inbox(world, "consumer")
    (art,) = allowed["artifact"]
    assert art["payload_bin"] == PAYLOAD and art["id"].startswith("artifact--")
    (copy,) = allowed["indicator"]
    assert copy["labels"] == ["apt-x", "house-tag-4711"]
    assert copy["lang"] == "en"
    (lc,) = allowed["language-content"]
    assert lc["object_ref"] == copy["id"]  # the reader's own id of the indicator
    assert "object_modified" not in lc  # it is the provider's exact modification time
    assert lc["contents"] == {"fr": {"name": "indicateur de [REDACTED]"}, "de": {"description": "Beschreibung"}}
    (n,) = allowed["note"]
    assert n["authors"] == ["J. Smith of [REDACTED]"]

    strict = _inbox(world, "outsider")
    assert set(strict) == {"indicator", "note"}
    assert "labels" not in strict["indicator"][0] and "lang" not in strict["indicator"][0]
    assert "authors" not in strict["note"][0]


def test_the_label_vocabulary_is_released_without_any_option(world: World) -> None:
    world.exchange.settings = dataclasses.replace(world.exchange.settings, label_vocabulary="ransomware, C2")
    world.exchange.add_agreement("Provider One", "Consumer One")
    world.provider.send([indicator(labels=["RANSOMWARE", "ｃ２", "acme-internal-7"])])
    (copy,) = _inbox(world, "consumer")["indicator"]
    assert copy["labels"] == ["C2", "ransomware"]


def test_held_items_go_under_the_options_of_the_agreement_active_at_release(world: World) -> None:
    a = world.exchange.add_agreement("Provider One", "Consumer One", delay=3600, allow=["artifact"])
    world.provider.send([_artifact()])
    assert _inbox(world, "consumer") == {}
    world.exchange.end_agreement(a["id"])
    world.exchange.add_agreement("Provider One", "Consumer One", delay=3600)  # strict: no artifacts
    assert world.exchange.release_due(now_us() + 3601 * 1_000_000) == 1
    assert _inbox(world, "consumer") == {}  # fail closed: the agreement that allowed it has ended


def test_held_items_keep_their_options(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One", delay=60, allow=["location.street_address"])
    world.provider.send([location(46.0, 33.0, street_address="1 Main Street", postal_code="99999")])
    world.exchange.release_due(now_us() + 61 * 1_000_000)
    (loc,) = _inbox(world, "consumer")["location"]
    assert loc["street_address"] == "1 Main Street"
    assert "postal_code" not in loc


def test_artifact_urls_that_name_the_provider_are_withheld(world: World) -> None:
    world.exchange.party_terms("Provider One", add=["files.provider-one.example"])
    world.exchange.add_agreement("Provider One", "Consumer One", allow=["artifact.url"])
    own = {k: v for k, v in _artifact().items() if k != "payload_bin"}
    own["url"] = "https://files.provider-one.example/s/1"
    own["hashes"] = {"SHA-256": "a" * 64}
    public = {**own, "id": f"artifact--{uuid.uuid4()}", "url": "https://malware.example.net/x.bin"}
    public["hashes"] = {"SHA-256": "b" * 64}
    world.provider.send([own, public])
    (art,) = _inbox(world, "consumer")["artifact"]
    assert art["url"] == "https://malware.example.net/x.bin"


@pytest.mark.parametrize(
    ("allow", "types", "message"),
    [
        (["x_provider_field"], None, "unknown sanitizing option"),
        (["identity"], None, "unknown sanitizing option"),
        (["user-account.credential"], None, "unknown sanitizing option"),
        (["artifact.decryption_key"], None, "has no effect without one of: artifact, artifact.url"),
        ([], ["artifact"], "released only when the agreement allows it: artifact (--allow artifact)"),
        (["artifact"], ["identity"], "never released by the exchange: identity"),
    ],
)
def test_only_catalogued_options_can_be_allowed(
    world: World, allow: list[str], types: list[str] | None, message: str
) -> None:
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        world.exchange.add_agreement("Provider One", "Consumer One", types=types, allow=allow)
    assert world.exchange.list_agreements() == []


def test_an_agreement_lists_its_options(world: World) -> None:
    a = world.exchange.add_agreement("Provider One", "Consumer One", types=["artifact"], allow=["artifact"])
    assert a["allow"] == ["artifact"] and a["types"] == ["artifact"]
    assert world.exchange.list_agreements()[0]["allow"] == ["artifact"]
