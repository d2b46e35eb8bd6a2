"""Bad input through the real server: the right status, a TAXII error message, and nothing stored."""

from __future__ import annotations

import base64
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from .support import (
    TAXII,
    Broker,
    Party,
    assert_taxii_error,
    by_name,
    coll_path,
    indicator,
    location,
    manifest,
    post_objects,
    read_all,
    send,
)

pytestmark = pytest.mark.integration

MAX = 65_536
BROKER_ENV = {"CUTOUT_MAX_CONTENT_LENGTH": str(MAX)}


@dataclass
class Parties:
    provider: Party
    consumer: Party
    other: Party  # a consumer of the same provider: its collections are not the consumer's
    copy: dict[str, Any]  # one object in the consumer's inbox
    original: dict[str, Any]  # the provider's original of it

    def state(self, broker: Broker) -> list[Any]:
        """Everything stored for these parties, every version, as each of them can read it."""
        return [
            manifest(broker, p, title, **{"match[version]": "all"})
            for p in (self.provider, self.consumer, self.other)
            for title in ("inbox", "outbox")
        ]


@pytest.fixture(scope="module")
def parties(broker: Broker) -> Parties:
    provider, consumer = broker.pair("Strict")
    other = broker.add_party("Strict Other", consumer=True)
    broker.add_agreement(provider, other)
    original = indicator(1, name="known")
    send(broker, provider, [original])
    copy = by_name(read_all(broker, consumer))["known"]
    return Parties(provider, consumer, other, copy, original)


@pytest.fixture
def unchanged(broker: Broker, parties: Parties) -> Iterator[None]:
    """The test must leave every collection as it found it."""
    before = parties.state(broker)
    yield
    assert parties.state(broker) == before


def _post(h: httpx.Client, path: str, body: bytes, content_type: str | None = TAXII, **headers: str) -> httpx.Response:
    hdrs = dict(headers)
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    return h.post(path, content=body, headers=hdrs)


def test_api_root_announces_the_configured_max_content_length(broker: Broker, parties: Parties) -> None:
    with broker.http(parties.provider) as h:
        assert h.get("").json()["max_content_length"] == MAX


BAD_BODIES = [
    pytest.param(b'{"objects": [', TAXII, 400, id="truncated-json"),
    pytest.param(b"{objects: []}", TAXII, 400, id="malformed-json"),
    pytest.param(b"\xff\xfe\x00", TAXII, 400, id="not-utf8"),
    pytest.param(b"", TAXII, 400, id="no-body"),
    pytest.param(b'{"objects": []}', "application/json", 415, id="plain-json"),
    pytest.param(b'{"objects": []}', "text/plain", 415, id="text"),
    pytest.param(b'{"objects": []}', "application/taxii+json;version=2.0", 415, id="taxii-2.0"),
    pytest.param(b'{"objects": []}', None, 415, id="no-content-type"),
    pytest.param(b'{"objects": []}', TAXII, 422, id="empty-envelope"),
    pytest.param(b'{"type": "bundle", "id": "bundle--x"}', TAXII, 422, id="no-objects"),
    pytest.param(b'{"objects": {"type": "indicator"}}', TAXII, 422, id="objects-not-a-list"),
    pytest.param(b"[]", TAXII, 422, id="a-list"),
    pytest.param(b'"objects"', TAXII, 422, id="a-string"),
]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("body", "content_type", "status"), BAD_BODIES)
def test_bad_bodies(broker: Broker, parties: Parties, body: bytes, content_type: str | None, status: int) -> None:
    with broker.http(parties.provider) as h:
        assert_taxii_error(_post(h, coll_path(broker, parties.provider, "outbox"), body, content_type), status)


def test_tolerated_content_types_are_accepted(broker: Broker, parties: Parties) -> None:
    """What real clients send (OpenCTI's space before version, the bare type, the 2.0-era STIX type)."""
    path = coll_path(broker, parties.provider, "outbox")
    with broker.http(parties.provider) as h:
        for n, ctype in enumerate(
            (
                "application/stix+json; version=2.1",
                "application/taxii+json",
                "application/vnd.oasis.stix+json; version=2.1",
                "Application/TAXII+JSON;Version=2.1",
            )
        ):
            r = _post(h, path, orjson.dumps({"objects": [indicator(100 + n)]}), ctype)
            assert r.status_code == 202, (ctype, r.text)


@pytest.mark.usefixtures("unchanged")
def test_accept_must_be_taxii(broker: Broker, parties: Parties) -> None:
    body = orjson.dumps({"objects": [indicator(2)]})
    path = coll_path(broker, parties.provider, "outbox")
    with broker.http(parties.provider) as h:
        for accept in ("application/json", "application/taxii+json;version=2.0", "text/html"):
            assert_taxii_error(_post(h, path, body, Accept=accept), 406)
            assert_taxii_error(h.get(path, headers={"Accept": accept}), 406)
            assert_taxii_error(h.get("collections/", headers={"Accept": accept}), 406)
        # what a TAXII 2.1 client may send is accepted
        for accept in ("application/taxii+json", "application/taxii+json; version=2.1", "*/*"):
            assert h.get(path, headers={"Accept": accept}).status_code == 200


@pytest.mark.usefixtures("unchanged")
def test_invalid_stix_is_refused_whole_with_problems_per_object(broker: Broker, parties: Parties) -> None:
    good = indicator(3)
    no_pattern = {k: v for k, v in indicator(4).items() if k != "pattern"}
    bad_id = {**location(5), "id": "location--not-a-uuid"}
    bad_time = {**indicator(6), "modified": "2026-13-45T99:00:00Z"}
    not_stix = {"foo": "bar"}
    objects = [good, no_pattern, bad_id, bad_time, not_stix, location(7)]
    with broker.http(parties.provider) as h:
        r = post_objects(h, broker, parties.provider, objects)
        doc = assert_taxii_error(r, 422)
        problems = doc["details"]["problems"]
        assert sorted({p["index"] for p in problems}) == [1, 2, 3, 4]
        for p in problems:
            assert p["message"]
            assert p["id"] == objects[p["index"]].get("id")
        # one non-STIX object alone
        doc = assert_taxii_error(post_objects(h, broker, parties.provider, [not_stix]), 422)
        assert [p["index"] for p in doc["details"]["problems"]] == [0]
        mixed: list[Any] = [good, "a string"]
        doc = assert_taxii_error(post_objects(h, broker, parties.provider, mixed), 422)
        assert [p["index"] for p in doc["details"]["problems"]] == [1]


@pytest.mark.usefixtures("unchanged")
def test_a_body_over_max_content_length(broker: Broker, parties: Parties) -> None:
    objs = []
    while len(orjson.dumps({"objects": objs})) <= MAX:
        objs.append(indicator(len(objs), description="x" * 500))
    body = orjson.dumps({"objects": objs})
    path = coll_path(broker, parties.provider, "outbox")
    with broker.http(parties.provider) as h:
        assert_taxii_error(_post(h, path, body), 413)  # Content-Length declared

        def chunks() -> Iterator[bytes]:  # chunked: no Content-Length, the server counts as it reads
            for i in range(0, len(body), 8192):
                yield body[i : i + 8192]

        r = h.post(path, content=chunks(), headers={"Content-Type": TAXII})
        assert "content-length" not in r.request.headers
        assert_taxii_error(r, 413)


def test_a_body_just_under_the_limit_is_accepted(broker: Broker, parties: Parties) -> None:
    objs: list[dict[str, Any]] = []
    while True:
        nxt = [*objs, indicator(len(objs), description="y" * 500)]
        if len(orjson.dumps({"objects": nxt})) > MAX:
            break
        objs = nxt
    send(broker, parties.provider, objs)


@pytest.mark.usefixtures("unchanged")
def test_unknown_and_missing_credentials(broker: Broker, parties: Parties) -> None:
    body = orjson.dumps({"objects": [indicator(8)]})
    path = coll_path(broker, parties.provider, "outbox")
    p = parties.provider
    variants: list[dict[str, str]] = [
        {"Authorization": "Bearer ct_unknown-token"},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(f"{p.name}:ct_wrong".encode()).decode()},
        {"Authorization": f"Token {p.token}"},
        {"Authorization": "Basic " + base64.b64encode(b"None:None").decode()},  # OpenCTI, unconfigured
    ]
    with broker.http(None) as h:
        for headers in [{}, *variants]:
            for r in (
                _post(h, path, body, **headers),
                h.get(path, headers=headers),
                h.get(broker.discovery, headers=headers),
            ):
                assert_taxii_error(r, 401)
                assert "basic" in r.headers["WWW-Authenticate"].lower()
        # Basic with the right token but someone else's name
        r = h.get(path, auth=(parties.consumer.name, p.token))
        assert_taxii_error(r, 401)


def test_a_revoked_or_rotated_token(broker: Broker, parties: Parties) -> None:
    provider = broker.add_party("Strict Revoked Provider", provider=True)
    broker.add_agreement(provider, parties.consumer)
    send(broker, provider, [indicator(9)])
    path = coll_path(broker, provider, "outbox")
    broker.revoke(provider)
    before = parties.state(broker)
    with broker.exchange() as ex:
        accepted = [r["kind"] for r in ex.audit_rows()].count("accept")
    body = orjson.dumps({"objects": [indicator(10)]})
    with broker.http(provider) as bearer, broker.http(provider, basic=True) as basic:
        for h in (bearer, basic):
            for r in (_post(h, path, body), h.get(path), h.get("collections/")):
                assert_taxii_error(r, 401)
                assert r.headers["WWW-Authenticate"]
    # nothing was accepted from it, and its consumer saw nothing new
    assert parties.state(broker) == before
    with broker.exchange() as ex:
        assert [r["kind"] for r in ex.audit_rows()].count("accept") == accepted

    rotating = broker.add_party("Strict Rotating Consumer", consumer=True)
    ids = broker.collection_ids(rotating)
    with broker.exchange() as ex:
        _, new_token = ex.rotate_party(rotating.name)
    with broker.http(rotating) as old:
        assert_taxii_error(old.get(f"collections/{ids['inbox']}/objects/"), 401)
    with broker.http(Party(rotating.name, new_token)) as new:
        assert new.get(f"collections/{ids['inbox']}/objects/").status_code == 200


@pytest.mark.usefixtures("unchanged")
def test_posting_to_your_inbox_is_forbidden(broker: Broker, parties: Parties) -> None:
    body = orjson.dumps({"objects": [indicator(11)]})
    for party in (parties.provider, parties.consumer):
        with broker.http(party) as h:
            assert_taxii_error(_post(h, coll_path(broker, party, "inbox"), body), 403)


@pytest.mark.usefixtures("unchanged")
def test_other_parties_collections_do_not_exist(broker: Broker, parties: Parties) -> None:
    body = orjson.dumps({"objects": [indicator(12)]})
    theirs = [*broker.collection_ids(parties.consumer).values(), *broker.collection_ids(parties.other).values()]
    with broker.http(parties.provider) as h:
        missing = assert_taxii_error(_post(h, f"collections/{uuid.uuid4()}/objects/", body), 404)
        for cid in theirs:
            doc = assert_taxii_error(_post(h, f"collections/{cid}/objects/", body), 404)
            assert doc == missing  # the same answer as for an id that does not exist
            for rest in ("", "objects/", "manifest/", f"objects/{parties.copy['id']}/", "objects/x/versions/"):
                assert_taxii_error(h.get(f"collections/{cid}/{rest}"), 404)
    # the consumer cannot reach the other consumer's collections either, nor read by the provider's ids
    with broker.http(parties.consumer) as h:
        for cid in broker.collection_ids(parties.other).values():
            assert_taxii_error(h.get(f"collections/{cid}/objects/"), 404)
        assert_taxii_error(
            h.get(coll_path(broker, parties.consumer, "inbox", f"objects/{parties.original['id']}/")), 404
        )


def _opinion(refs: list[str]) -> dict[str, Any]:
    return {
        "type": "opinion",
        "spec_version": "2.1",
        "id": f"opinion--{uuid.uuid4()}",
        "created": "2026-01-02T03:04:05.000Z",
        "modified": "2026-01-02T03:04:05.000Z",
        "opinion": "agree",
        "object_refs": refs,
    }


@pytest.mark.usefixtures("unchanged")
def test_feedback_about_objects_never_received(broker: Broker, parties: Parties) -> None:
    c = parties.consumer
    other_copy = by_name(read_all(broker, parties.other))["known"]
    cases = {
        "unknown id": [f"indicator--{uuid.uuid4()}"],
        "the provider's original id": [parties.original["id"]],
        "another consumer's copy": [other_copy["id"]],
        "one known, one not": [parties.copy["id"], f"indicator--{uuid.uuid4()}"],
    }
    with broker.http(c) as h:
        messages = {}
        for case, refs in cases.items():
            fb = _opinion(refs)
            doc = assert_taxii_error(post_objects(h, broker, c, [fb]), 422)
            assert [(p["index"], p["id"]) for p in doc["details"]["problems"]] == [(0, fb["id"])]
            messages[case] = doc["details"]["problems"][0]["message"]
        # an id that exists elsewhere is refused exactly like one that exists nowhere: no oracle
        assert messages["unknown id"] == messages["the provider's original id"] == messages["another consumer's copy"]
        sighting = {
            "type": "sighting",
            "spec_version": "2.1",
            "id": f"sighting--{uuid.uuid4()}",
            "created": "2026-01-02T03:04:05.000Z",
            "modified": "2026-01-02T03:04:05.000Z",
            "sighting_of_ref": parties.original["id"],
        }
        assert_taxii_error(post_objects(h, broker, c, [sighting]), 422)
        # a good opinion does not carry a bad one through: all or nothing
        assert_taxii_error(
            post_objects(h, broker, c, [_opinion([parties.copy["id"]]), _opinion(cases["unknown id"])]), 422
        )
        # a consumer sends feedback only
        assert_taxii_error(post_objects(h, broker, c, [indicator(13)]), 422)


@pytest.mark.usefixtures("unchanged")
def test_bad_query_parameters(broker: Broker, parties: Parties) -> None:
    c = parties.consumer
    inbox = coll_path(broker, c, "inbox")
    with broker.http(c) as h:
        for params in (
            {"limit": "0"},
            {"limit": "-5"},
            {"limit": "many"},
            {"added_after": "yesterday"},
            {"added_after": "2026-01-02"},
            {"added_after": "2026-02-30T00:00:00Z"},
            {"match[version]": "newest"},
            {"match[spec_version]": "3.0"},
            {"next": "not-a-token"},
        ):
            assert_taxii_error(h.get(inbox, params=params), 400)
            assert_taxii_error(h.get(coll_path(broker, c, "inbox", "manifest/"), params=params), 400)


def test_next_tokens_are_bound_to_their_party(broker: Broker, parties: Parties) -> None:
    c, o = parties.consumer, parties.other
    send(broker, parties.provider, [indicator(16), indicator(17)])
    with broker.http(c) as h, broker.http(o) as other:
        r = h.get(coll_path(broker, c, "inbox"), params={"limit": 1})
        token = r.json()["next"]
        assert h.get(coll_path(broker, c, "inbox"), params={"limit": 1, "next": token}).status_code == 200
        # a token of another of your own collections is ignored (OpenCTI re-sends old tokens everywhere)
        outbox = coll_path(broker, c, "outbox")
        assert h.get(outbox, params={"next": token}).json() == h.get(outbox).json()
        # another party's token is refused
        assert_taxii_error(other.get(coll_path(broker, o, "inbox"), params={"next": token}), 400)


@pytest.mark.usefixtures("unchanged")
def test_unknown_routes_methods_and_statuses(broker: Broker, parties: Parties) -> None:
    p = parties.provider
    with broker.http(p) as h:
        assert_taxii_error(h.get("status/" + str(uuid.uuid4()) + "/"), 404)
        assert_taxii_error(h.get("nothing-here/"), 404)
        assert_taxii_error(h.get(broker.url + "/taxii2/elsewhere/"), 404)
        assert_taxii_error(h.put(coll_path(broker, p, "outbox"), content=b"{}"), 405)
        assert_taxii_error(h.patch(coll_path(broker, p, "outbox", f"objects/{parties.original['id']}/")), 405)
        assert_taxii_error(h.post("collections/", content=b"{}", headers={"Content-Type": TAXII}), 405)


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("authorised", [True, False])
def test_a_client_that_hangs_up_mid_body(broker: Broker, parties: Parties, authorised: bool) -> None:
    """A sender that closes its connection before its body ends stores nothing and leaves one line in the
    server's log, not the traceback of an unhandled error."""
    assert broker.server is not None
    log = broker.server.log
    before = log.read_text(errors="replace").count("disconnected before its body ended")
    path = f"/{broker.settings.api_root}/collections/{broker.collection_ids(parties.provider)['outbox']}/objects/"
    host, port = broker.url.removeprefix("http://").split(":")
    auth = f"Authorization: Bearer {parties.provider.token}\r\n" if authorised else ""
    body = orjson.dumps({"objects": [indicator(2, name="never whole")]})
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {TAXII}\r\nContent-Type: {TAXII}\r\n{auth}"
        f"Content-Length: {len(body) + 1000}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body[: len(body) // 2])
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    text = log.read_text(errors="replace")
    while text.count("disconnected before its body ended") == before and time.monotonic() < deadline:
        time.sleep(0.05)
        text = log.read_text(errors="replace")
    assert text.count("disconnected before its body ended") == before + 1
    assert "Traceback" not in text, text[-3000:]
