"""The channel back with real clients against a real ``cutout serve``: a consumer asks with taxii2-client, the
covering provider reads the request and answers with taxii2-client, the consumer reads the answer with the
stix2 library's TAXIICollectionSource, and an outcome goes back. Two providers, two consumers; every byte each
party receives (status lines, headers, bodies) is searched for the other side's canaries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from stix2 import Filter, TAXIICollectionSource
from taxii2client.v21 import Collection, Server, as_pages

from cutout.extensions import OUTCOME_EXT, REQUEST_EXT, REQUEST_TYPE

from .support import TLP, Broker, Party, RecordingAuth, Transcript

pytestmark = pytest.mark.integration

#: requests and outcomes go in batches: one-second epochs, so the test need not wait an hour
BROKER_SETTINGS = {"feedback_epoch": 1, "scheduler_interval": 0.2}

VALLEY = "30,44,36,48"
ELSEWHERE = "100,-10,110,0"

# -- the requester's canaries ------------------------------------------------------------------------------
C_NAME = "Harrowgate Command"
C_IDENTITY = "identity--2c0d9a8e-4e61-4f0b-9d8e-5f3a7c1b9e42"
C_MARK = "marking-definition--6b1f0e2d-3c4a-4d5e-8f9a-0b1c2d3e4f51"
C_EXT = "extension-definition--7e2a1c3b-5d4f-4a6e-9b8c-1d2e3f4a5b6c"
C_EMAIL = "hgcnry-j2@harrowgate.example"
C_TASK = "HGCNRY-TASK-7731"
C_CREATED = "2026-11-21T03:02:11.219Z"
C_MODIFIED = "2026-11-21T03:04:47.613Z"
C_OUTCOME_AT = "2026-11-22T07:41:53.337Z"
C_HEADERS = {
    "User-Agent": "hgcnry-collector/2.1",
    "X-Forwarded-For": "10.77.31.9",
    "Via": "1.1 hgcnry-proxy.example",
    "X-Hgcnry-Trace": "hgcnry-trace-value",
}
# -- the answering provider's canaries -------------------------------------------------------------------------
P_NAME = "Vellmoor Signals Unit"
P_IDENTITY = "identity--9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
P_MARK = "marking-definition--1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a0b"
P_HANDLE = "VMCNRY-ASSET-LIMA"
P_CREATED = "2026-11-21T05:17:29.871Z"
P_HEADERS = {"User-Agent": "vmcnry-pusher/1.0", "X-Forwarded-For": "10.99.12.7", "X-Vmcnry-Desk": "vmcnry-desk"}


def _future(days: float) -> str:
    t = datetime.now(UTC) + timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:") + "37.913Z"


@dataclass
class Scene:
    broker: Broker
    p1: Party  # covers the valley: gets the request and answers
    p2: Party  # covers another area only: gets nothing of it
    c1: Party  # the requester
    c2: Party  # another consumer of both providers
    rx: dict[str, Transcript] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rx = {who: Transcript() for who in ("p1", "p2", "c1", "c2")}

    @contextmanager
    def collections(self, who: str) -> Iterator[dict[str, Collection]]:
        """taxii2-client as one party, from discovery down, every response recorded, its headers sent."""
        party: Party = getattr(self, who)
        headers = {"p1": P_HEADERS, "c1": C_HEADERS}.get(who, {})
        server = Server(self.broker.discovery, auth=RecordingAuth(party, self.rx[who], headers))
        try:
            root = server.default
            assert root is not None
            try:
                yield {c.title: c for c in root.collections}
            finally:
                for r in server.api_roots:
                    r.close()
        finally:
            server.close()

    def read(self, who: str, title: str = "inbox") -> list[dict[str, Any]]:
        """Every version in a collection, through taxii2-client's paging, plus its manifest."""
        with self.collections(who) as cols:
            col = cols[title]
            out = [o for page in as_pages(col.get_objects, per_request=3, version="all") for o in page["objects"]]
            for _ in as_pages(col.get_manifest, per_request=3):
                pass
            return out

    def poll(self, who: str, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.read(who)
            if until(got):
                return got
            assert time.monotonic() < deadline, f"{who} never got what it waited for: {got}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def scene(broker: Broker) -> Scene:
    p1 = broker.add_party(P_NAME, provider=True)
    p2 = broker.add_party("Coastal Radar", provider=True)
    c1 = broker.add_party(C_NAME, consumer=True)
    c2 = broker.add_party("Eastern Desk", consumer=True)
    broker.add_agreement(p1, c1, area=VALLEY)
    broker.add_agreement(p2, c1, area=ELSEWHERE)
    broker.add_agreement(p1, c2)
    broker.add_agreement(p2, c2)
    return Scene(broker, p1, p2, c1, c2)


def _request() -> dict[str, Any]:
    return {
        "type": REQUEST_TYPE,
        "spec_version": "2.1",
        "id": f"{REQUEST_TYPE}--{uuid.uuid4()}",
        "created": C_CREATED,
        "modified": C_MODIFIED,
        "created_by_ref": C_IDENTITY,
        "question": f"Convoy positions near Kalvo? {C_NAME} J2 asks; write to {C_EMAIL}.",
        "priority": "high",
        "expires": _future(7),
        "area": [32.0, 45.0, 34.0, 47.0],
        "window_start": "2026-11-20T06:13:27.449Z",
        "window_end": "2026-11-27T18:29:43.557Z",
        "object_types": ["location", "note", "sighting"],
        "labels": ["hgcnry-label"],
        "lang": "cy",
        "confidence": 67,
        "external_references": [{"source_name": "hgcnry-tasking", "external_id": C_TASK}],
        "x_hgcnry_tasking": C_TASK,
        "extensions": {
            REQUEST_EXT: {"extension_type": "new-sdo"},
            C_EXT: {"extension_type": "property-extension", "hgcnry_desk": "hgcnry-desk-value"},
        },
        "object_marking_refs": [TLP["amber"], C_MARK],
        "granular_markings": [{"selectors": ["question"], "marking_ref": C_MARK}],
    }


def _answer(copy_id: str) -> list[dict[str, Any]]:
    where = {
        "type": "location",
        "spec_version": "2.1",
        "id": f"location--{uuid.uuid4()}",
        "created": P_CREATED,
        "modified": P_CREATED,
        "created_by_ref": P_IDENTITY,
        "name": "the ferry crossing",
        "latitude": 46.02,
        "longitude": 33.41,
        "x_vmcnry_source": P_HANDLE,
        "object_marking_refs": [TLP["amber"], P_MARK],
    }
    note = {
        "type": "note",
        "spec_version": "2.1",
        "id": f"note--{uuid.uuid4()}",
        "created": P_CREATED,
        "modified": P_CREATED,
        "created_by_ref": P_IDENTITY,
        "abstract": "Convoy position",
        "content": f"At the ferry since dawn. {P_NAME} observers in place.",
        "authors": ["vmcnry-analyst"],
        "object_refs": [copy_id, where["id"]],
        "labels": ["vmcnry-label"],
        "x_vmcnry_source": P_HANDLE,
        "object_marking_refs": [TLP["amber"], P_MARK],
    }
    return [where, note]


def test_a_request_its_answer_and_an_outcome_cross_with_real_clients(scene: Scene) -> None:
    s = scene
    req = _request()
    c_canaries = [
        C_NAME, C_IDENTITY, C_MARK, C_EXT, C_EMAIL, C_TASK, C_CREATED, C_MODIFIED, C_OUTCOME_AT, req["id"],
        "03:02:11", "03:04:47", "06:13:27", "18:29:43", ":37.913", "07:41:53", "hgcnry", '"lang":"cy"',
        '"confidence":67',
    ]  # fmt: skip
    p_canaries = [P_NAME, P_IDENTITY, P_MARK, P_HANDLE, P_CREATED, "05:17:29", "vmcnry"]

    # the consumer asks with taxii2-client
    with s.collections("c1") as cols:
        status = cols["outbox"].add_objects({"objects": [req]})
        assert status.status == "complete" and status.success_count == 1
    assert [o for o in s.read("c1") if o["type"] == "note"] == []  # covered: no "no route" note

    # the covering provider reads it (with taxii2-client) once the batch falls due; the other one never does
    got = s.poll("p1", lambda objs: any(o["type"] == REQUEST_TYPE for o in objs))
    (copy,) = [o for o in got if o["type"] == REQUEST_TYPE]
    assert copy["id"] != req["id"] and copy["created_by_ref"] == s.broker.identity["id"]
    assert copy["extensions"] == {REQUEST_EXT: {"extension_type": "new-sdo"}}
    assert copy["question"].startswith("Convoy positions near Kalvo?")
    assert s.read("p2") == []

    # it answers with taxii2-client: a note referencing its copy of the request, and a location
    with s.collections("p1") as cols:
        status = cols["outbox"].add_objects({"objects": _answer(copy["id"])})
        assert status.status == "complete" and status.success_count == 2

    # the requester reads the answer with the stix2 library's TAXIICollectionSource
    s.poll("c1", lambda objs: any(o["type"] == "note" for o in objs))
    url = f"{s.broker.root}collections/{s.broker.collection_ids(s.c1)['inbox']}/"
    with Collection(url, auth=RecordingAuth(s.c1, s.rx["c1"], C_HEADERS)) as inbox:
        source = TAXIICollectionSource(inbox, allow_custom=True)
        (note,) = source.query([Filter("type", "=", "note")])
        (place,) = source.query([Filter("type", "=", "location")])
    assert sorted(note.object_refs) == sorted([req["id"], place.id])  # its own request id, nothing else
    assert note.created_by_ref == s.broker.identity["id"]
    assert "[REDACTED]" in note.content and place.latitude == 46.02

    # the other consumer gets the answer only under its own agreement, and never with a request id
    theirs = s.read("c2")
    assert [o for o in theirs if o["type"] == REQUEST_TYPE] == []
    assert all(req["id"] not in o.get("object_refs", []) for o in theirs)

    # the requester reports the outcome (taxii2-client); it reaches the provider about its own ids
    outcome = {
        "type": "opinion",
        "spec_version": "2.1",
        "id": f"opinion--{uuid.uuid4()}",
        "created": C_OUTCOME_AT,
        "modified": C_OUTCOME_AT,
        "created_by_ref": C_IDENTITY,
        "opinion": "strongly-agree",
        "explanation": f"Struck at the ferry. {C_NAME} J3.",
        "authors": ["hgcnry-officer"],
        "object_refs": [note.id, place.id],
        "x_hgcnry_tasking": C_TASK,
        "extensions": {OUTCOME_EXT: {"extension_type": "property-extension", "outcome": "confirmed-hit"}},
        "object_marking_refs": [TLP["amber"], C_MARK],
    }
    with s.collections("c1") as cols:
        status = cols["outbox"].add_objects({"objects": [outcome]})
        assert status.status == "complete"
    got = s.poll("p1", lambda objs: any(o["type"] == "opinion" for o in objs))
    (back,) = [o for o in got if o["type"] == "opinion"]
    assert back["opinion"] == "strongly-agree"
    assert back["extensions"] == {OUTCOME_EXT: {"extension_type": "property-extension", "outcome": "confirmed-hit"}}
    sent = {o["id"] for o in _answer_ids(s)}
    assert set(back["object_refs"]) <= sent and len(back["object_refs"]) == 2  # the provider's own ids
    assert "[REDACTED]" in back["explanation"]
    assert s.read("p2") == []  # the other provider heard nothing of any of it

    # every byte each party received
    for who in ("p1", "p2", "c2"):
        assert s.rx[who].find(c_canaries) == [], who
    for who in ("c1", "c2"):
        assert s.rx[who].find(p_canaries) == [], who
    assert s.rx["c2"].find([copy["id"]]) == [] and s.rx["c1"].find([copy["id"]]) == []
    assert min(len(s.rx[who]) for who in s.rx) >= 4


def _answer_ids(s: Scene) -> list[dict[str, Any]]:
    """What the provider sent, read back from its own outbox."""
    return [o for o in s.read("p1", "outbox") if o["type"] in ("note", "location")]
