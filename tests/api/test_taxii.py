"""The TAXII surface in process: shapes, auth, negotiation, paging, errors."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.api.conftest import TAXII, World, indicator


def test_discovery_api_root_and_collections(world: World) -> None:
    p = world.provider
    r = world.client.get("/taxii2/", headers={"Accept": TAXII, "Authorization": f"Bearer {p.token}"})
    assert r.status_code == 200
    assert r.headers["content-type"] == TAXII
    doc = r.json()
    assert doc["api_roots"] == ["http://testserver/exchange/"] and doc["default"] == "http://testserver/exchange/"
    root = p.get("/").json()
    assert root["versions"] == [TAXII]
    assert root["max_content_length"] == world.exchange.settings.max_content_length
    cols = p.get("/collections/").json()["collections"]
    assert sorted(c["title"] for c in cols) == ["inbox", "outbox"]
    by = {c["title"]: c for c in cols}
    assert by["outbox"]["can_write"] and by["outbox"]["can_read"]
    assert not by["inbox"]["can_write"] and by["inbox"]["can_read"]
    assert p.get(f"/collections/{by['inbox']['id']}/").json() == by["inbox"]


def test_collections_are_per_party(world: World) -> None:
    mine = {world.provider.collection_id(t) for t in ("inbox", "outbox")}
    theirs = {world.consumer.collection_id(t) for t in ("inbox", "outbox")}
    assert not mine & theirs
    for cid in theirs:
        # someone else's collection is simply not there: 404, never 403
        assert world.provider.get(f"/collections/{cid}/").status_code == 404
        assert world.provider.get(f"/collections/{cid}/objects/").status_code == 404


def test_paths_with_and_without_trailing_slash(world: World) -> None:
    p = world.provider
    assert p.get("").status_code == 200
    assert p.get("/collections").status_code == 200
    cid = p.collection_id("outbox")
    assert p.get(f"/collections/{cid}/objects").status_code == 200
    assert world.client.get("/taxii2", headers={"Authorization": f"Bearer {p.token}"}).status_code == 200


def test_error_envelope_shape_is_pinned(world: World) -> None:
    r = world.client.get("/taxii2/")
    assert r.status_code == 401
    assert r.headers["content-type"] == TAXII
    assert "Basic" in r.headers["www-authenticate"] and "Bearer" in r.headers["www-authenticate"]
    assert set(r.json()) == {"title", "description", "error_code", "http_status"}
    assert r.json()["http_status"] == "401"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer nope",
        "Basic " + base64.b64encode(b"Provider One:wrong").decode(),
        "Basic !!!notbase64",
        "Digest abc",
    ],
)
def test_bad_credentials(world: World, authorization: str | None) -> None:
    headers = {"Accept": TAXII}
    if authorization:
        headers["Authorization"] = authorization
    r = world.client.get("/exchange/collections/", headers=headers)
    assert r.status_code == 401
    assert r.json()["error_code"] == "unauthorized"


def test_basic_auth_needs_the_right_name(world: World) -> None:
    token = world.provider.token
    for user, status in (("Provider One", 200), ("Consumer One", 401)):
        raw = base64.b64encode(f"{user}:{token}".encode()).decode()
        r = world.client.get("/exchange/", headers={"Authorization": f"basic {raw}"})  # scheme in any case
        assert r.status_code == status


def test_revoked_and_rotated_tokens(world: World) -> None:
    old = world.consumer.token
    _, new = world.exchange.rotate_party("Consumer One")
    assert world.client.get("/exchange/", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert world.client.get("/exchange/", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    world.exchange.revoke_party("Consumer One")
    assert world.client.get("/exchange/", headers={"Authorization": f"Bearer {new}"}).status_code == 401


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        (TAXII, 200),
        ("application/taxii+json", 200),
        ("application/taxii+json; version=2.1", 200),
        ("*/*", 200),
        ("application/json", 406),
        ("application/taxii+json;version=2.0", 406),
    ],
)
def test_accept_negotiation(world: World, accept: str, status: int) -> None:
    r = world.client.get("/exchange/", headers={"Accept": accept, "Authorization": f"Bearer {world.provider.token}"})
    assert r.status_code == status


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/taxii+json;version=2.1", 202),
        ("application/stix+json; version=2.1", 202),
        ("application/vnd.oasis.stix+json;version=2.1", 202),
        ("application/taxii+json", 202),
        ("application/json", 415),
        ("text/plain", 415),
        ("application/taxii+json;version=2.0", 415),
    ],
)
def test_content_types(world: World, content_type: str, status: int) -> None:
    p = world.provider
    r = p.post(
        f"/collections/{p.collection_id('outbox')}/objects/",
        {"objects": [indicator()]},
        headers={"Content-Type": content_type},
    )
    assert r.status_code == status


def test_post_returns_a_complete_status_and_it_can_be_read_back(world: World) -> None:
    objs = [indicator(), indicator()]
    r = world.provider.send(objs)
    assert r.status_code == 202
    status = r.json()
    assert status["status"] == "complete"
    assert status["total_count"] == status["success_count"] == 2
    assert status["failure_count"] == status["pending_count"] == 0
    assert "failures" not in status  # TAXII §2: no empty lists
    assert "pendings" not in status
    assert {s["id"] for s in status["successes"]} == {o["id"] for o in objs}
    again = world.provider.get(f"/status/{status['id']}/")
    assert again.status_code == 200 and again.json() == status
    # a status is its poster's alone
    assert world.consumer.get(f"/status/{status['id']}/").status_code == 404


def test_bundle_shaped_body_is_accepted(world: World) -> None:
    p = world.provider
    bundle = {"type": "bundle", "id": "bundle--6f1e2c3a-4b5d-4e6f-8a7b-9c0d1e2f3a4b", "objects": [indicator()]}
    assert p.post(f"/collections/{p.collection_id('outbox')}/objects/", bundle).status_code == 202


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad-request"),
        (b"[]", 422, "invalid-content"),
        (b'{"objects": []}', 422, "invalid-content"),
        (b'{"objects": "x"}', 422, "invalid-content"),
        (b'{"more": false}', 422, "invalid-content"),
    ],
)
def test_malformed_envelopes(world: World, body: bytes, status: int, code: str) -> None:
    p = world.provider
    r = p.post(f"/collections/{p.collection_id('outbox')}/objects/", body)
    assert r.status_code == status
    assert r.json()["error_code"] == code


def test_one_invalid_object_refuses_the_whole_envelope(world: World) -> None:
    good = indicator()
    bad = indicator()
    del bad["pattern"]
    r = world.provider.send([good, bad, {"hello": "world"}])
    assert r.status_code == 422
    problems = r.json()["details"]["problems"]
    assert [p["index"] for p in problems] == [1, 2]
    assert problems[0]["id"] == bad["id"] and "pattern" in problems[0]["message"]
    outbox = world.provider.get(f"/collections/{world.provider.collection_id('outbox')}/objects/").json()
    assert outbox["objects"] == []


def test_too_large(world: World) -> None:
    p = world.provider
    limit = world.exchange.settings.max_content_length
    r = p.post(f"/collections/{p.collection_id('outbox')}/objects/", b"x" * (limit + 1))
    assert r.status_code == 413
    assert r.json()["error_code"] == "too-large"


def test_posting_to_your_inbox_is_forbidden(world: World) -> None:
    p = world.provider
    r = p.post(f"/collections/{p.collection_id('inbox')}/objects/", {"objects": [indicator()]})
    assert r.status_code == 403


def test_posting_to_someone_elses_collection_is_not_found(world: World) -> None:
    cid = world.consumer.collection_id("outbox")
    r = world.provider.post(f"/collections/{cid}/objects/", {"objects": [indicator()]})
    assert r.status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "-3"},
        {"limit": "ten"},
        {"added_after": "yesterday"},
        {"added_after": "2026-01-01"},
        {"match[version]": "newest"},
        {"match[spec_version]": "9.9"},
        {"next": "not-a-token"},
    ],
)
def test_malformed_parameters_are_400(world: World, params: dict[str, str]) -> None:
    r = world.consumer.inbox(**params)
    assert r.status_code == 400
    assert r.json()["http_status"] == "400"


def test_unknown_paths_and_methods_get_taxii_errors(world: World) -> None:
    r = world.provider.get("/nothing/here/")
    assert r.status_code == 404 and r.headers["content-type"] == TAXII
    r = world.client.delete("/exchange/collections/", headers={"Authorization": f"Bearer {world.provider.token}"})
    assert r.status_code == 405 and r.json()["http_status"] == "405"


def test_object_versions_and_manifest_of_the_outbox(world: World) -> None:
    p = world.provider
    first = indicator()
    second = {**first, "modified": "2026-11-21T00:00:00.000Z", "name": "updated"}
    assert p.send([first]).status_code == 202
    assert p.send([second]).status_code == 202
    cid = p.collection_id("outbox")
    got = p.get(f"/collections/{cid}/objects/{first['id']}/").json()["objects"]
    assert [o["name"] for o in got] == ["updated"]
    every = p.get(f"/collections/{cid}/objects/{first['id']}/", params={"match[version]": "all"}).json()
    assert len(every["objects"]) == 2
    oldest = p.get(f"/collections/{cid}/objects/{first['id']}/", params={"match[version]": "first"}).json()
    assert oldest["objects"][0]["modified"] == first["modified"]
    versions = p.get(f"/collections/{cid}/objects/{first['id']}/versions/").json()
    assert versions["versions"] == [first["modified"], "2026-11-21T00:00:00.000Z"]
    manifest = p.get(f"/collections/{cid}/manifest/").json()
    assert [(m["id"], m["version"]) for m in manifest["objects"]] == [(first["id"], "2026-11-21T00:00:00.000Z")]
    assert p.get(f"/collections/{cid}/objects/indicator--00000000-0000-4000-8000-000000000000/").status_code == 404


def test_paging_with_next_and_added_after_is_exact(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    sent = [indicator() for _ in range(25)]
    assert world.provider.send(sent[:10]).status_code == 202
    assert world.provider.send(sent[10:]).status_code == 202
    c = world.consumer
    seen: list[str] = []
    r = c.inbox(limit=4)
    while True:
        doc = r.json()
        seen.extend(o["id"] for o in doc["objects"])
        assert ("next" in doc) == doc["more"]
        if not doc["more"]:
            break
        # real clients re-send limit and filters with next
        r = c.inbox(limit=4, next=doc["next"])
    assert len(seen) == len(set(seen)) == 25
    # the same through added_after = the previous page's X-TAXII-Date-Added-Last
    seen2: list[str] = []
    params: dict[str, str | int] = {"limit": 7}
    while True:
        r = c.inbox(**params)
        objs = r.json()["objects"]
        if not objs:
            break
        seen2.extend(o["id"] for o in objs)
        params["added_after"] = r.headers["X-TAXII-Date-Added-Last"]
    assert seen2 == seen


def test_next_tokens_are_bound_to_their_reader(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    world.exchange.add_agreement("Provider One", "Outsider")
    world.provider.send([indicator() for _ in range(5)])
    doc = world.consumer.inbox(limit=2).json()
    assert doc["more"]
    token = doc["next"]
    assert "/" not in token and "+" not in token and "=" not in token
    assert world.outsider.inbox(next=token).status_code == 400
    # a token stays good: use it twice, long after
    assert world.consumer.inbox(next=token).json() == world.consumer.inbox(next=token).json()


def test_filters(world: World) -> None:
    world.exchange.add_agreement("Provider One", "Consumer One")
    a, b = indicator(), indicator()
    world.provider.send([a, b])
    c = world.consumer
    everything = c.inbox().json()["objects"]
    assert len(everything) == 2
    one = everything[0]["id"]
    assert [o["id"] for o in c.inbox(**{"match[id]": one}).json()["objects"]] == [one]
    assert c.inbox(**{"match[type]": "malware"}).json()["objects"] == []
    assert len(c.inbox(**{"match[type]": "malware,indicator"}).json()["objects"]) == 2
    assert len(c.inbox(**{"match[spec_version]": "2.1"}).json()["objects"]) == 2


def test_empty_page_shape(world: World) -> None:
    r = world.consumer.inbox()
    assert r.status_code == 200
    # `objects` stays, empty, on purpose: real clients read it unconditionally (docs/taxii-conformance.md)
    assert orjson.loads(r.content) == {"more": False, "objects": []}
    # §3.2: the date-added headers on every page; an empty one repeats the position searched after
    assert (
        r.headers["X-TAXII-Date-Added-First"] == r.headers["X-TAXII-Date-Added-Last"] == "1970-01-01T00:00:00.000000Z"
    )
    after = "2026-11-26T10:00:00.5Z"
    r = world.consumer.inbox(added_after=after)
    assert r.headers["X-TAXII-Date-Added-Last"] == "2026-11-26T10:00:00.500000Z"


def test_health_needs_no_credentials_and_says_only_ok(world: World) -> None:
    r = world.client.get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
