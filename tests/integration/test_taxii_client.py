"""taxii2-client (the client under OpenCTI, MISP and the stix2 data store) against a real server."""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from taxii2client.exceptions import AccessError
from taxii2client.v21 import ApiRoot, Collection, Server, Status, as_pages

from cutout.model.timestamps import parse_us

from .support import (
    STIX,
    TAXII,
    TLP_IDS,
    Broker,
    Party,
    by_name,
    coll_path,
    indicator,
    location,
    read_all,
    ts,
)

pytestmark = pytest.mark.integration

BULK_ENVELOPES = 3
BULK_PER_ENVELOPE = 1000


@contextmanager
def taxii_root(broker: Broker, party: Party) -> Iterator[tuple[Server, ApiRoot]]:
    """Discovery → the default API root, as the party (HTTP Basic); every connection closed afterwards."""
    server = Server(broker.discovery, user=party.name, password=party.token)
    try:
        root = server.default
        assert root is not None
        try:
            yield server, root
        finally:
            for r in server.api_roots:
                r.close()
    finally:
        server.close()


def collections(root: ApiRoot) -> dict[str, Collection]:
    return {c.title: c for c in root.collections}


def test_discovery_api_root_and_collections(broker: Broker) -> None:
    provider, _ = broker.pair("Discovery")
    with taxii_root(broker, provider) as (server, root):
        assert server.title == broker.identity["name"]
        assert [r.url for r in server.api_roots] == [broker.root]
        assert server.default is server.api_roots[0]
        assert root.title
        assert root.versions == [TAXII]
        assert root.max_content_length == broker.settings.max_content_length
        cols = collections(root)
        assert sorted(cols) == ["inbox", "outbox"]
        outbox, inbox = cols["outbox"], cols["inbox"]
        assert outbox.can_read and outbox.can_write
        assert inbox.can_read and not inbox.can_write
        assert outbox.media_types == [STIX] and inbox.media_types == [STIX]
        assert outbox.id == broker.collection_ids(provider)["outbox"]
        # a Collection made from its URL loads itself (Get a Collection, §5.2)
        with Collection(outbox.url, user=provider.name, password=provider.token) as again:
            assert (again.id, again.title, again.can_write) == (outbox.id, "outbox", True)


def test_add_objects_status_and_reads_as_provider(broker: Broker) -> None:
    provider, consumer = broker.pair("Writer")
    first = [indicator(i) for i in range(5)]
    second = [location(i) for i in range(3)]
    with taxii_root(broker, provider) as (_, root):
        outbox = collections(root)["outbox"]

        # an envelope as a dict
        status = outbox.add_objects({"objects": first})
        assert isinstance(status, Status)
        assert status.status == "complete" and bool(status)
        assert (status.total_count, status.success_count, status.failure_count, status.pending_count) == (5, 5, 0, 0)
        assert [s["id"] for s in status.successes] == [o["id"] for o in first]
        assert all(s["version"] == o["modified"] for s, o in zip(status.successes, first, strict=True))
        assert status.failures == [] and status.pendings == []
        parse_us(status.request_timestamp)

        # an envelope as a JSON string
        status2 = outbox.add_objects(json.dumps({"objects": second}))
        assert status2.status == "complete"
        assert (status2.total_count, status2.success_count, status2.failure_count) == (3, 3, 0)
        assert status2.id != status.id

        # Get Status (§4.3) again, both through the Status and the API root
        before = (status.id, status.total_count, status.success_count, status.successes)
        status.refresh()
        assert (status.id, status.total_count, status.success_count, status.successes) == before
        assert status.url.startswith(broker.root + "status/")
        again = root.get_status(status2.id)
        assert again.status == "complete" and again.total_count == 3

        # the outbox holds what was sent, exactly
        env = outbox.get_objects()
        assert env["more"] is False and "next" not in env
        assert env["objects"] == [*first, *second]
        assert outbox.get_objects(type="location")["objects"] == second
        assert outbox.get_objects(id=[first[0]["id"], second[0]["id"]])["objects"] == [first[0], second[0]]

        one = outbox.get_object(first[2]["id"])
        assert one["objects"] == [first[2]] and one["more"] is False

        man = outbox.get_manifest()
        assert [e["id"] for e in man["objects"]] == [o["id"] for o in [*first, *second]]
        for e, o in zip(man["objects"], [*first, *second], strict=True):
            assert e["version"] == o["modified"]
            assert e["media_type"] == STIX
        added = [parse_us(e["date_added"]) for e in man["objects"]]
        assert added == sorted(added) and len(set(added)) == len(added)

        vers = outbox.object_versions(first[0]["id"])
        assert vers["versions"] == [first[0]["modified"]] and vers["more"] is False

        # a newer version: both versions listed, the default GET returns only the latest
        newer = {**first[0], "modified": ts(30), "name": "indicator 0, revised"}
        assert outbox.add_objects({"objects": [newer]}).success_count == 1
        assert outbox.object_versions(first[0]["id"])["versions"] == [first[0]["modified"], newer["modified"]]
        assert outbox.get_object(first[0]["id"])["objects"] == [newer]
        assert outbox.get_object(first[0]["id"], version="all")["objects"] == [first[0], newer]
        assert outbox.get_object(first[0]["id"], version="first")["objects"] == [first[0]]
        assert outbox.get_object(first[0]["id"], version=first[0]["modified"])["objects"] == [first[0]]

    # the consumer's inbox: one copy per object, latest versions only
    with taxii_root(broker, consumer) as (_, root):
        inbox = collections(root)["inbox"]
        got = inbox.get_objects()["objects"]
        assert len(got) == 8
        names = by_name(got)
        assert set(names) == {*(f"indicator {i}" for i in range(1, 5)), "indicator 0, revised"} | {
            f"site {i}" for i in range(3)
        }
        sent_ids = {o["id"] for o in [*first, *second]}
        for o in got:
            assert o["id"] not in sent_ids
            assert o["created_by_ref"] == broker.identity["id"]
            assert set(o["object_marking_refs"]) <= TLP_IDS
        copy = names["indicator 0, revised"]
        assert inbox.get_object(copy["id"])["objects"] == [copy]
        assert len(inbox.object_versions(copy["id"])["versions"]) == 2


# -- thousands of objects, paged -------------------------------------------------------------------------
@dataclass
class Bulk:
    provider: Party
    consumer: Party
    names: list[str]


@pytest.fixture(scope="module")
def bulk(broker: Broker) -> Bulk:
    """A provider sends a few thousand indicators and locations in envelopes of 1000; a consumer gets them."""
    provider, consumer = broker.pair("Bulk")
    names: list[str] = []
    with taxii_root(broker, provider) as (_, root):
        outbox = collections(root)["outbox"]
        n = 0
        for _ in range(BULK_ENVELOPES):
            objs: list[dict[str, Any]] = []
            for _ in range(BULK_PER_ENVELOPE):
                objs.append(indicator(n) if n % 3 else location(n))
                n += 1
            status = outbox.add_objects(orjson.dumps({"objects": objs}).decode())
            assert status.status == "complete"
            assert status.success_count == status.total_count == len(objs)
            names.extend(o["name"] for o in objs)
    return Bulk(provider, consumer, names)


def test_as_pages_delivers_every_object_once_in_date_added_order(broker: Broker, bulk: Bulk) -> None:
    per_request = 400
    total = BULK_ENVELOPES * BULK_PER_ENVELOPE
    with taxii_root(broker, bulk.consumer) as (_, root):
        inbox = collections(root)["inbox"]
        pages = list(as_pages(inbox.get_objects, per_request=per_request))
        assert len(pages) == -(-total // per_request)
        for page in pages[:-1]:
            assert page["more"] is True and len(page["objects"]) == per_request
            assert re.fullmatch(r"[A-Za-z0-9_-]{16,}", page["next"])  # opaque, URL-safe (MISP puts it in a path)
        assert pages[-1]["more"] is False and "next" not in pages[-1]
        objects = [o for p in pages for o in p["objects"]]
        manifest = [e for p in as_pages(inbox.get_manifest, per_request=per_request) for e in p["objects"]]

    ids = [o["id"] for o in objects]
    assert len(ids) == total and len(set(ids)) == total
    assert sorted(o["name"] for o in objects) == sorted(bulk.names)
    # date_added order: the manifest lists the same objects in the same order, date_added strictly increasing
    assert [e["id"] for e in manifest] == ids
    added = [parse_us(e["date_added"]) for e in manifest]
    assert all(a < b for a, b in itertools.pairwise(added))
    # a filtered, paged read
    with taxii_root(broker, bulk.consumer) as (_, root):
        inbox = collections(root)["inbox"]
        locs = [o for p in as_pages(inbox.get_objects, per_request=250, type="location") for o in p["objects"]]
    assert [o["id"] for o in locs] == [o["id"] for o in objects if o["type"] == "location"]
    assert len(locs) == total // 3


def test_added_after_paging_is_exact(broker: Broker, bulk: Bulk) -> None:
    """Following X-TAXII-Date-Added-Last as added_after loses and repeats nothing (Bearer auth)."""
    total = BULK_ENVELOPES * BULK_PER_ENVELOPE
    path = coll_path(broker, bulk.consumer, "inbox")
    seen: list[str] = []
    last: str | None = None
    with broker.http(bulk.consumer) as h:
        manifest_all = []
        for _ in range(50):
            params: dict[str, Any] = {"limit": 700}
            if last is not None:
                params["added_after"] = last
            r = h.get(path, params=params)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == TAXII
            doc = r.json()
            objs = doc.get("objects", [])
            if not objs:
                assert doc["more"] is False
                break
            first_h, last_h = r.headers["X-TAXII-Date-Added-First"], r.headers["X-TAXII-Date-Added-Last"]
            # the headers are the page's own first and last date_added
            m = h.get(coll_path(broker, bulk.consumer, "inbox", "manifest/"), params=params).json()["objects"]
            assert [e["id"] for e in m] == [o["id"] for o in objs]
            assert (m[0]["date_added"], m[-1]["date_added"]) == (first_h, last_h)
            if last is not None:
                assert parse_us(first_h) > parse_us(last)
            assert doc["more"] is (len(seen) + len(objs) < total)
            manifest_all.extend(m)
            seen.extend(o["id"] for o in objs)
            last = last_h
        else:
            pytest.fail("added_after paging did not end")
    assert len(seen) == total and len(set(seen)) == total
    assert seen == [o["id"] for o in read_all(broker, bulk.consumer)]
    # taxii2-client re-sends added_after (and limit) beside next on every page
    with taxii_root(broker, bulk.consumer) as (_, root):
        inbox = collections(root)["inbox"]
        after = manifest_all[999]["date_added"]
        pages = list(as_pages(inbox.get_objects, per_request=300, added_after=after))
    assert [o["id"] for p in pages for o in p["objects"]] == seen[1000:]

    # added_after at a page's last date_added, given with any number of fractional digits up to its own
    mid = manifest_all[1499]["date_added"]
    with broker.http(bulk.consumer) as h:
        for text in (mid, mid.replace("Z", "000Z")):
            r = h.get(path, params={"added_after": text, "limit": 10})
            assert [o["id"] for o in r.json()["objects"]] == seen[1500:1510]


def test_basic_and_bearer_see_the_same(broker: Broker, bulk: Bulk) -> None:
    path = coll_path(broker, bulk.consumer, "inbox")
    with broker.http(bulk.consumer) as bearer, broker.http(bulk.consumer, basic=True) as basic:
        a = bearer.get(path, params={"limit": 50})
        b = basic.get(path, params={"limit": 50})
        assert a.status_code == b.status_code == 200
        assert [o["id"] for o in a.json()["objects"]] == [o["id"] for o in b.json()["objects"]]
        assert a.json()["objects"] == b.json()["objects"]
        # a token is valid with either scheme, and so is the lowercase scheme name
        lower = bearer.get(path, params={"limit": 1}, headers={"Authorization": f"bearer {bulk.consumer.token}"})
        assert lower.status_code == 200
        basic_lower = "basic " + base64.b64encode(f"{bulk.consumer.name}:{bulk.consumer.token}".encode()).decode()
        assert bearer.get(path, params={"limit": 1}, headers={"Authorization": basic_lower}).status_code == 200
        # HTTP Basic needs the party's own name beside the token
        wrong = basic.get(path, auth=(bulk.provider.name, bulk.consumer.token))
        assert wrong.status_code == 401


def test_refresh_wait_and_delete_object(broker: Broker) -> None:
    """The rest of taxii2-client's public calls: refresh everywhere, wait_until_final, delete_object."""
    provider, consumer = broker.pair("Deleter")
    obj = indicator(7)
    with taxii_root(broker, provider) as (server, root):
        server.refresh()
        root.refresh()
        root.refresh_information()
        root.refresh_collections()
        outbox = collections(root)["outbox"]
        outbox.refresh()
        status = outbox.add_objects({"objects": [obj]}, wait_for_completion=False)
        status.wait_until_final(poll_interval=0.05, timeout=5)
        assert status.status == "complete"
        outbox.delete_object(obj["id"])
        assert outbox.get_objects()["objects"] == []
    with taxii_root(broker, consumer) as (_, root):
        inbox = collections(root)["inbox"]
        (copy,) = inbox.get_objects()["objects"]
        assert copy["revoked"] is True
        with pytest.raises(AccessError):
            inbox.delete_object(copy["id"])  # taxii2-client itself refuses: can_write is false
