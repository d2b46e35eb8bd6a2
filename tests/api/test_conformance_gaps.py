"""TAXII 2.1 requirements that no other test covered (docs/taxii-conformance.md lists them all)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from cutout.api import create_app
from cutout.settings import Settings
from tests.api.conftest import TAXII, Caller, World, indicator, location

STIX_MEDIA = "application/stix+json;version=2.1"


def _outbox(p: Caller) -> str:
    return f"/collections/{p.collection_id('outbox')}/"


def _pages(p: Caller, path: str, key: str, **params: Any) -> list[Any]:
    """Every item of a paged endpoint, one per page (limit=1), following ``next``."""
    items: list[Any] = []
    query: dict[str, Any] = {"limit": 1, **params}
    for _ in range(20):
        r = p.get(path, params=query)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert len(doc.get(key) or []) <= 1  # §3.4: never more than the client's limit
        items.extend(doc.get(key) or [])
        assert ("next" in doc) == doc["more"]
        if not doc["more"]:
            return items
        query["next"] = doc["next"]
    pytest.fail("paging did not end")


def test_an_unversioned_object_is_versioned_by_its_created(world: World) -> None:
    """§3.4.1, §4.3.1, §5.3.1, §5.8: an object without `modified` MUST be versioned by `created`."""
    p = world.provider
    created = "2026-01-02T03:04:05.000Z"
    marking = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": f"marking-definition--{uuid.uuid4()}",
        "created": created,
        "definition_type": "statement",
        "definition": {"statement": "Copyright Provider One"},
    }
    r = p.send([marking])
    assert r.status_code == 202, r.text
    assert r.json()["successes"] == [{"id": marking["id"], "version": created}]
    out = _outbox(p)
    entries = p.get(out + "manifest/", params={"match[id]": marking["id"]}).json()["objects"]
    assert [(e["version"], e["media_type"]) for e in entries] == [(created, STIX_MEDIA)]
    assert p.get(out + f"objects/{marking['id']}/versions/").json()["versions"] == [created]
    for version in (created, "last", "first", "all"):
        got = p.get(out + f"objects/{marking['id']}/", params={"match[version]": version}).json()["objects"]
        assert got == [marking], version


def test_an_object_without_timestamps_has_one_consistent_version(world: World) -> None:
    """§4.3.1, §5.3.1 (SHOULD), §3.4.1: an object with neither `created` nor `modified` (an SCO) gets "a value for
    the version that is consistent to the server": the status, the manifest, the versions endpoint and
    match[version] agree on it."""
    p = world.provider
    addr = {"type": "ipv4-addr", "spec_version": "2.1", "id": f"ipv4-addr--{uuid.uuid4()}", "value": "198.51.100.7"}
    out = _outbox(p)
    first = p.send([addr]).json()["successes"][0]["version"]
    manifest = p.get(out + "manifest/", params={"match[id]": addr["id"]}).json()["objects"]
    assert len(manifest) == 1
    version = manifest[0]["version"]
    assert p.get(out + f"objects/{addr['id']}/versions/").json()["versions"] == [version]
    assert first == version
    again = p.send([addr])  # an exact duplicate: stored once, reported with the stored version
    assert again.status_code == 202 and again.json()["failure_count"] == 0
    assert again.json()["successes"] == [{"id": addr["id"], "version": version}]
    assert len(p.get(out + "manifest/", params={"match[id]": addr["id"]}).json()["objects"]) == 1
    by_version = p.get(out + f"objects/{addr['id']}/", params={"match[version]": version})
    assert by_version.status_code == 200 and by_version.json()["objects"] == [addr]


def test_a_request_without_user_agent_is_served(world: World) -> None:
    """§8.2.1: a server SHOULD NOT reject a valid request that has no User-Agent."""
    request = world.client.build_request(
        "GET", "/exchange/collections/", headers={"Accept": TAXII, "Authorization": f"Bearer {world.provider.token}"}
    )
    del request.headers["User-Agent"]
    r = world.client.send(request)
    assert "user-agent" not in r.request.headers
    assert r.status_code == 200
    assert len(r.json()["collections"]) == 2


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "ten"},
        {"added_after": "2026-01-02T03:04:05+01:00"},
        {"match[version]": "newest"},
        {"match[spec_version]": "2.2"},
        {"next": "forged"},
    ],
)
@pytest.mark.parametrize("rest", ["objects/{id}/", "objects/{id}/versions/"])
def test_malformed_parameters_on_the_object_and_versions_endpoints_are_400(
    world: World, params: dict[str, str], rest: str
) -> None:
    """§3.4: a malformed URL query parameter MUST get a 400, on every endpoint that filters."""
    p = world.provider
    obj = indicator()
    assert p.send([obj]).status_code == 202
    r = p.get(_outbox(p) + rest.format(id=obj["id"]), params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == TAXII and r.json()["http_status"] == "400"


def test_limit_holds_on_the_manifest_object_and_versions_endpoints(world: World) -> None:
    """§3.4: a response MUST NOT hold more than the client's `limit`; §3.5: `more`/`next` carry the rest."""
    p = world.provider
    a, b = indicator(), indicator()
    a2 = {**a, "modified": "2026-11-21T00:00:00.000Z"}
    assert p.send([a, b]).status_code == 202
    assert p.send([a2]).status_code == 202
    out = _outbox(p)
    manifest = _pages(p, out + "manifest/", "objects", **{"match[version]": "all"})
    assert [(e["id"], e["version"]) for e in manifest] == [
        (a["id"], a["modified"]),
        (b["id"], b["modified"]),
        (a["id"], a2["modified"]),
    ]
    versions = _pages(p, out + f"objects/{a['id']}/versions/", "versions")
    assert versions == [a["modified"], a2["modified"]]
    both = _pages(p, out + f"objects/{a['id']}/", "objects", **{"match[version]": "all"})
    assert both == [a, a2]


def test_manifest_filters_apply_to_the_objects_it_describes(world: World) -> None:
    """§5.3: the manifest filters like the objects endpoint, on the objects its records describe."""
    p = world.provider
    ind, loc = indicator(), location(10.0, 20.0)
    assert p.send([ind, loc]).status_code == 202
    out = _outbox(p)

    def ids(**params: str) -> list[str]:
        r = p.get(out + "manifest/", params=params)
        assert r.status_code == 200
        return [e["id"] for e in r.json()["objects"]]

    assert ids(**{"match[type]": "location"}) == [loc["id"]]
    assert ids(**{"match[type]": "indicator,location"}) == [ind["id"], loc["id"]]
    assert ids(**{"match[id]": ind["id"]}) == [ind["id"]]
    assert ids(**{"match[type]": "location", "match[id]": ind["id"]}) == []  # ANDed
    assert ids(**{"match[spec_version]": "2.1"}) == [ind["id"], loc["id"]]
    assert ids(**{"match[version]": ind["modified"], "match[id]": ind["id"]}) == [ind["id"]]


def test_a_limit_above_the_maximum_is_clamped(world: World, settings: Settings) -> None:
    """§3.4: a server MAY give fewer objects than a `limit` it is not willing to serve; it says `more`."""
    small = dataclasses.replace(settings, page_size=2, max_page_size=3)
    p = world.provider
    assert p.send([indicator() for _ in range(5)]).status_code == 202
    with TestClient(create_app(small, world.exchange, run_scheduler=False)) as client:
        capped = Caller(client, p.name, p.token)
        out = _outbox(capped)
        doc = capped.get(out + "objects/", params={"limit": 100}).json()
        assert len(doc["objects"]) == 3 and doc["more"] is True and "next" in doc
        rest = capped.get(out + "objects/", params={"limit": 100, "next": doc["next"]}).json()
        assert len(rest["objects"]) == 2 and rest["more"] is False
        default = capped.get(out + "objects/").json()
        assert len(default["objects"]) == 2 and default["more"] is True  # no limit: page_size
