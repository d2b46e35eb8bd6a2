"""The leak test: canaries planted in everything that can identify a party must never reach the other side.

The provider plants canaries in every field of its objects that can name it (ids, created_by_ref, its
identity, custom properties, an extension, a statement marking, granular markings, labels, lang, external
references, exact timestamps, kill chains, confidence, its name in free text) and in the headers of its
requests. Every byte the consumer receives - status lines, all headers, bodies, from every endpoint it can
call, errors included - is searched for them (case-insensitive). Then the same the other way round for the
consumer's feedback, and a party without an agreement must see nothing at all.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from cutout.extensions import GRADE_EXT

from .support import (
    TAXII,
    TLP,
    Broker,
    Party,
    RecordingAuth,
    Transcript,
    assert_taxii_error,
    coll_path,
    indicator,
    read_all,
    read_until,
    send,
    walk,
)

pytestmark = pytest.mark.integration

#: feedback goes back in batches: one-second epochs, so the test need not wait an hour
BROKER_SETTINGS = {"feedback_epoch": 1, "scheduler_interval": 0.2}

# -- the provider and its canaries ----------------------------------------------------------------------------
P_NAME = "Quillfeather Signals Bureau"
P_IDENTITY_NAME = "Quillfeather Directorate"
P_EMAIL = "qfcnry-duty@quillfeather.example"
P_PHONE = "+99 555 0199"
P_IDENTITY = "identity--8edccff2-948b-484d-b2e1-e3840c931243"
P_MARK = "marking-definition--588e1a53-09e8-41f0-8a50-1293096be3b5"
P_EXT = "extension-definition--001a7ef1-d5c2-4b8a-b6ff-1103d1d39d9c"
P_EXT_TOP = "extension-definition--15bac469-3c6b-4391-8dec-cd554458a821"
ACTOR = "threat-actor--b704872c-5ef5-420f-a141-54fc9251e6db"
INDICATOR = "indicator--c5676130-e28c-4057-9c25-bdb9737e3177"
LOCATION = "location--bf9632db-7893-4cf1-82b7-d79b9728152d"
SIGHTING = "sighting--58f3cfce-0804-4c2a-885b-52f463c09f46"
ADDR = "ipv4-addr--bf99be1d-7e7c-4a65-8aec-80f91e9bb544"  # a random (not content-derived) SCO id
OBSERVED = "observed-data--7a6d76e4-d340-4795-a135-0268397f0c2f"
NOTE = "note--98e7f92b-c68c-4d29-b97c-380788ff91a1"
REL = "relationship--39092c10-f949-4814-a533-de58f7c40fee"
REPORT = "report--54401f81-1e73-4bae-be3a-e37994985b06"
ATTACK = "attack-pattern--f73789dd-d1cc-4620-9820-e6520f0f0f5d"
LANG_CONTENT = "language-content--bbb2a626-f491-4662-9563-ba1f96160fd0"
P_IDS = [
    P_IDENTITY, P_MARK, P_EXT, P_EXT_TOP, ACTOR, INDICATOR, LOCATION, SIGHTING, ADDR, OBSERVED, NOTE, REL, REPORT,
    ATTACK, LANG_CONTENT,
]  # fmt: skip

CREATED = "2025-06-17T11:47:23.587Z"
MODIFIED = "2025-06-18T08:13:29.941Z"
MODIFIED_2 = "2025-06-19T16:02:37.373Z"
FIRST_SEEN = "2025-05-30T22:06:51.263Z"
LAST_SEEN = "2025-06-01T04:58:17.719Z"
VALID_UNTIL = "2026-09-03T17:32:08.143Z"
EXACT_TIMES = [CREATED, MODIFIED, MODIFIED_2, FIRST_SEEN, LAST_SEEN, VALID_UNTIL]
CVE_HASH = "9f2c6a1e4b7d8053c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4"

# free text naming the provider: its party name, its identity's name, any case, any spacing, full width
P_TEXT = (
    f"Reported by {P_NAME}. Desk of {P_IDENTITY_NAME}, QUILLFEATHER   signals\tBUREAU and "
    f"\uff31\uff55\uff49\uff4c\uff4c\uff46\uff45\uff41\uff54\uff48\uff45\uff52 Signals Bureau; "
    f"write to {P_EMAIL} or call {P_PHONE}."
)

P_COMMON: dict[str, Any] = {
    "spec_version": "2.1",
    "created_by_ref": P_IDENTITY,
    "created": CREATED,
    "modified": MODIFIED,
    "object_marking_refs": [TLP["amber"], P_MARK],
    "granular_markings": [{"marking_ref": P_MARK, "selectors": ["labels", "x_qfcnry_source_handle"]}],
    "labels": ["qfcnry-label-desk7"],
    "lang": "cy",
    "confidence": 77,
    "x_qfcnry_source_handle": "QFCNRY-HANDLE-7731",
    "qfcnry_toplevel_prop": "QFCNRY-TOPLEVEL-VALUE",
    "extensions": {
        P_EXT: {"extension_type": "property-extension", "qfcnry_case": "QFCNRY-CASE-4471"},
        P_EXT_TOP: {"extension_type": "toplevel-property-extension"},
    },
    "external_references": [
        {
            "source_name": "qfcnry-casefile",
            "url": "https://qfcnry-portal.quillfeather.example/case/4471",
            "description": "QFCNRY-EXTREF-DESC",
            "external_id": "QFCNRY-EXTID-4471",
        },
        {
            "source_name": "cve",
            "external_id": "CVE-2024-31337",
            "url": "https://qfcnry-cveurl.example/advisory",
            "description": "QFCNRY-CVE-DESC",
            "hashes": {"SHA-256": CVE_HASH},
        },
        {"source_name": "mitre-attack", "external_id": "T1566.001"},
        {"source_name": "mitre-attack", "external_id": "QFCNRY-T9999", "url": "https://attack.mitre.org/qfcnry"},
    ],
}
PUBLIC_REFS = [
    {"source_name": "cve", "external_id": "CVE-2024-31337"},
    {"source_name": "mitre-attack", "external_id": "T1566.001"},
]
KILL_CHAIN = [
    {"kill_chain_name": "qfcnry-killchain", "phase_name": "qfcnry-phase"},
    {"kill_chain_name": "mitre-attack", "phase_name": "initial-access"},
]
P_HEADERS = {
    "User-Agent": "qfcnry-agent/1.0 (Quillfeather)",
    "X-Forwarded-For": "203.0.113.77",
    "X-Qfcnry-Trace": "qfcnry-trace-value",
}

PROVIDER_CANARIES = [
    "Quillfeather",
    "qfcnry",
    P_NAME,
    P_IDENTITY_NAME,
    P_EMAIL,
    "555 0199",
    *P_IDS,
    *(i.partition("--")[2] for i in P_IDS),
    *(t[:19] for t in EXACT_TIMES),
    *(t[19:] for t in EXACT_TIMES),
    CVE_HASH,
    "203.0.113.77",
    "QFCNRY-CASE-4471",
    "QFCNRY-HANDLE-7731",
]


def provider_objects() -> list[dict[str, Any]]:
    sdo = dict(P_COMMON)
    return [
        {
            "type": "identity",
            "spec_version": "2.1",
            "id": P_IDENTITY,
            "created": CREATED,
            "modified": CREATED,
            "name": P_IDENTITY_NAME,
            "description": "QFCNRY-IDENTITY-DESC",
            "identity_class": "organization",
            "sectors": ["government"],
            "contact_information": f"{P_EMAIL}, {P_PHONE}",
        },
        {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": P_MARK,
            "created_by_ref": P_IDENTITY,
            "created": CREATED,
            "name": "QFCNRY handling caveat",
            "definition_type": "statement",
            "definition": {"statement": f"QFCNRY-STATEMENT: property of {P_NAME}. Do not disclose the source."},
        },
        *(
            {
                "type": "extension-definition",
                "spec_version": "2.1",
                "id": ext,
                "created_by_ref": P_IDENTITY,
                "created": CREATED,
                "modified": CREATED,
                "name": "QFCNRY-EXTENSION",
                "description": "QFCNRY case numbers",
                "schema": "https://qfcnry-schema.quillfeather.example/case.json",
                "version": "1.0.0",
                "extension_types": [kind],
                **({"extension_properties": ["qfcnry_toplevel_prop"]} if kind.startswith("toplevel") else {}),
            }
            for ext, kind in ((P_EXT, "property-extension"), (P_EXT_TOP, "toplevel-property-extension"))
        ),
        {
            **sdo,
            "type": "threat-actor",
            "id": ACTOR,
            "name": f"Ashen Brigade (tracked by {P_NAME})",
            "description": P_TEXT,
            "threat_actor_types": ["criminal"],
            "aliases": ["AB", f"{P_NAME} target 7"],
            "goals": [f"evade {P_IDENTITY_NAME}"],
            "first_seen": FIRST_SEEN,
            "last_seen": LAST_SEEN,
        },
        {
            **sdo,
            "type": "attack-pattern",
            "id": ATTACK,
            "name": "Spearphishing attachment",
            "description": P_TEXT,
            "kill_chain_phases": KILL_CHAIN,
        },
        {
            **sdo,
            "type": "indicator",
            "id": INDICATOR,
            "name": f"C2 seen by {P_NAME}",
            "description": P_TEXT,
            "indicator_types": ["malicious-activity"],
            "pattern": "[ipv4-addr:value = '198.51.100.23']",
            "pattern_type": "stix",
            "valid_from": CREATED,
            "valid_until": VALID_UNTIL,
            "kill_chain_phases": KILL_CHAIN,
        },
        {
            **sdo,
            "type": "location",
            "id": LOCATION,
            "name": f"Observation post of {P_NAME}",
            "description": P_TEXT,
            "latitude": 46.4821,
            "longitude": 33.1207,
            "street_address": "QFCNRY-STREET 12 Mill Lane",
            "postal_code": "QFCNRY-PC-9931",
            "city": f"{P_NAME} town",
        },
        {
            **sdo,
            "type": "sighting",
            "id": SIGHTING,
            "sighting_of_ref": ACTOR,
            "where_sighted_refs": [LOCATION, P_IDENTITY],
            "observed_data_refs": [OBSERVED],
            "first_seen": FIRST_SEEN,
            "last_seen": LAST_SEEN,
            "count": 6,
            "description": P_TEXT,
        },
        {
            "type": "ipv4-addr",
            "spec_version": "2.1",
            "id": ADDR,
            "value": "198.51.100.23",
            "object_marking_refs": [TLP["amber"], P_MARK],
            "x_qfcnry_source_handle": "QFCNRY-HANDLE-7731",
            "extensions": {P_EXT: {"extension_type": "property-extension", "qfcnry_case": "QFCNRY-CASE-4471"}},
        },
        {
            **sdo,
            "type": "observed-data",
            "id": OBSERVED,
            "first_observed": FIRST_SEEN,
            "last_observed": LAST_SEEN,
            "number_observed": 3,
            "object_refs": [ADDR],
        },
        {
            **sdo,
            "type": "note",
            "id": NOTE,
            "abstract": f"From {P_NAME}",
            "content": P_TEXT,
            "authors": ["QFCNRY-AUTHOR K. Varo"],
            "object_refs": [ACTOR, P_IDENTITY, LOCATION],
        },
        {
            **sdo,
            "type": "relationship",
            "id": REL,
            "relationship_type": "indicates",
            "source_ref": INDICATOR,
            "target_ref": ACTOR,
            "description": P_TEXT,
            "start_time": FIRST_SEEN,
            "stop_time": LAST_SEEN,
        },
        {
            **sdo,
            "type": "report",
            "id": REPORT,
            "name": f"{P_NAME} weekly",
            "description": P_TEXT,
            "report_types": ["threat-actor"],
            "published": MODIFIED,
            "object_refs": [P_IDENTITY, NOTE, ACTOR, INDICATOR, SIGHTING, REL, LANG_CONTENT, P_MARK, ATTACK],
        },
        {
            "type": "language-content",
            "spec_version": "2.1",
            "id": LANG_CONTENT,
            "created_by_ref": P_IDENTITY,
            "created": CREATED,
            "modified": CREATED,
            "object_ref": ACTOR,
            "object_modified": MODIFIED,
            "contents": {"fr": {"name": "QFCNRY-TRADUCTION", "description": P_TEXT}},
        },
    ]


RELEASED = {
    ACTOR: "threat-actor",
    ATTACK: "attack-pattern",
    INDICATOR: "indicator",
    LOCATION: "location",
    SIGHTING: "sighting",
    ADDR: "ipv4-addr",
    OBSERVED: "observed-data",
    NOTE: "note",
    REL: "relationship",
    REPORT: "report",
}

# -- the consumer and its canaries ----------------------------------------------------------------------------
C_NAME = "Harrowgate Maritime Cell"
C_EMAIL = "hgcnry-ops@harrowgate.example"
C_PHONE = "+98 555 0142"
C_IDENTITY = "identity--96c1027d-599c-4189-b389-a8fc33723c8d"
C_MARK = "marking-definition--ddec7430-a081-49aa-bc53-9396953c6ce9"
C_OBSERVED = "observed-data--da510f03-771f-4d30-85c7-b5b2da28f9f7"
C_OPINION = "opinion--ad4c848f-c781-491d-9ea2-b61b2fe2b1ca"
C_SIGHTING = "sighting--d4c0620a-de1d-4f31-b957-a4a09479a49b"
C_NOTE = "note--ca03d800-dbc1-48d4-81a8-c7c132db0b82"
C_EXT = "extension-definition--e06e65a8-76ef-409d-95bb-e6c37386786e"
C_IDS = [C_IDENTITY, C_MARK, C_OBSERVED, C_OPINION, C_SIGHTING, C_NOTE, C_EXT]
C_CREATED = "2025-07-09T14:22:31.457Z"
C_FIRST = "2025-07-08T23:51:06.389Z"
C_LAST = "2025-07-09T01:17:44.613Z"
C_TIMES = [C_CREATED, C_FIRST, C_LAST]
C_TEXT = f"Struck by {C_NAME} (HARROWGATE maritime  CELL); precise hit. Ask {C_EMAIL} or {C_PHONE} for the report."
C_HEADERS = {
    "User-Agent": "hgcnry-agent/2.0 (Harrowgate)",
    "X-Forwarded-For": "198.51.100.142",
    "X-Hgcnry-Trace": "hgcnry-trace-value",
}
CONSUMER_CANARIES = [
    "Harrowgate",
    "hgcnry",
    C_NAME,
    C_EMAIL,
    "555 0142",
    *C_IDS,
    *(i.partition("--")[2] for i in C_IDS),
    *(t[:19] for t in C_TIMES),
    *(t[19:] for t in C_TIMES),
    "198.51.100.142",
]


def consumer_feedback(copies: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Feedback naming the consumer's copies, with the consumer's canaries in every field."""
    common: dict[str, Any] = {
        "spec_version": "2.1",
        "created_by_ref": C_IDENTITY,
        "created": C_CREATED,
        "modified": C_CREATED,
        "object_marking_refs": [TLP["amber"], C_MARK],
        "granular_markings": [{"marking_ref": C_MARK, "selectors": ["labels"]}],
        "labels": ["hgcnry-label"],
        "lang": "cy",
        "confidence": 41,
        "x_hgcnry_strike_ref": "HGCNRY-STRIKE-0931",
        "extensions": {C_EXT: {"extension_type": "property-extension", "hgcnry_case": "HGCNRY-CASE"}},
        "external_references": [
            {
                "source_name": "hgcnry-case",
                "url": "https://hgcnry.harrowgate.example/bda/17",
                "description": "hgcnry-bda",
                "external_id": "HGCNRY-17",
            }
        ],
    }
    return [
        {
            **common,
            "type": "opinion",
            "id": C_OPINION,
            "opinion": "strongly-agree",
            "explanation": C_TEXT,
            "authors": ["HGCNRY-AUTHOR Lt. Osei"],
            "object_refs": [copies[ACTOR]["id"], copies[LOCATION]["id"]],
        },
        {
            **common,
            "type": "sighting",
            "id": C_SIGHTING,
            "sighting_of_ref": copies[INDICATOR]["id"],
            "where_sighted_refs": [C_IDENTITY],
            "observed_data_refs": [C_OBSERVED],
            "first_seen": C_FIRST,
            "last_seen": C_LAST,
            "count": 13,
            "summary": False,
            "description": C_TEXT,
        },
        {
            **common,
            "type": "note",
            "id": C_NOTE,
            "abstract": f"BDA by {C_NAME}",
            "content": C_TEXT,
            "authors": ["HGCNRY-AUTHOR Lt. Osei"],
            "object_refs": [copies[REPORT]["id"]],
        },
    ]


# -- the scene -------------------------------------------------------------------------------------------------
@dataclass
class Scene:
    broker: Broker
    provider: Party
    consumer: Party
    outsider: Party
    provider_rx: Transcript = field(default_factory=Transcript)
    consumer_rx: Transcript = field(default_factory=Transcript)
    outsider_rx: Transcript = field(default_factory=Transcript)
    sent: list[dict[str, Any]] = field(default_factory=list)
    copies: dict[str, dict[str, Any]] = field(default_factory=dict)  # provider's id -> consumer's copy
    feedback: list[dict[str, Any]] = field(default_factory=list)
    provider_status: str = ""
    consumer_status: str = ""

    def http(self, who: str) -> httpx.Client:
        party: Party = getattr(self, who)
        record: Transcript = getattr(self, f"{who}_rx")
        headers = {"provider": P_HEADERS, "consumer": C_HEADERS}.get(who, {})
        return self.broker.http(party, headers=headers, record=record)

    @contextmanager
    def taxii(self, who: str) -> Iterator[tuple[Server, ApiRoot, dict[str, Collection]]]:
        """taxii2-client as one party, every response recorded, the party's canary headers sent."""
        party: Party = getattr(self, who)
        record: Transcript = getattr(self, f"{who}_rx")
        headers = {"provider": P_HEADERS, "consumer": C_HEADERS}.get(who, {})
        server = Server(self.broker.discovery, auth=RecordingAuth(party, record, headers))
        try:
            root = server.default
            try:
                yield server, root, {c.title: c for c in root.collections}
            finally:
                for r in server.api_roots:
                    r.close()
        finally:
            server.close()


@pytest.fixture(scope="module")
def scene(broker: Broker) -> Scene:
    provider = broker.add_party(P_NAME, provider=True)
    consumer = broker.add_party(C_NAME, consumer=True)
    outsider = broker.add_party("Eastern Desk", consumer=True)
    broker.add_agreement(provider, consumer, tlp_max="amber")
    s = Scene(broker, provider, consumer, outsider)

    # the provider sends its report (raw HTTP, canary headers), then a newer version of one object (taxii2-client)
    s.sent = provider_objects()
    with s.http("provider") as h:
        r = h.post(
            coll_path(broker, provider, "outbox"),
            content=orjson.dumps({"objects": s.sent}),
            headers={"Content-Type": TAXII},
        )
        assert r.status_code == 202, r.text
        s.provider_status = r.json()["id"]
    actor_v2 = {**next(o for o in s.sent if o["id"] == ACTOR), "modified": MODIFIED_2, "name": "Ashen Brigade"}
    with s.taxii("provider") as (_, _, cols):
        status = cols["outbox"].add_objects({"objects": [actor_v2]})
        assert status.status == "complete" and status.success_count == 1

    # the consumer reads its inbox and maps the provider's ids to its copies (the test knows both sides)
    with s.taxii("consumer") as (_, _, cols):
        got = [o for page in as_pages(cols["inbox"].get_objects, per_request=4) for o in page["objects"]]
    s.copies = _match_copies(got)

    # the consumer sends feedback on what it received
    s.feedback = consumer_feedback(s.copies)
    with s.taxii("consumer") as (_, _, cols):
        status = cols["outbox"].add_objects({"objects": s.feedback})
        assert status.status == "complete" and status.success_count == len(s.feedback)
        s.consumer_status = status.id
    read_until(broker, provider, 3)  # the feedback batch falls due
    return s


def _match_copies(got: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The consumer's copy of each released provider object, recognised by content."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for o in got:
        by_type.setdefault(o["type"], []).append(o)
    assert all(len(v) == 1 for v in by_type.values()), sorted((k, len(v)) for k, v in by_type.items())
    assert sorted(by_type) == sorted(RELEASED.values())
    return {orig: by_type[t][0] for orig, t in RELEASED.items()}


def _refs(obj: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in obj.items():
        if key in ("created_by_ref", "object_marking_refs"):
            continue
        if key.endswith("_ref") and isinstance(value, str):
            out.append(value)
        elif key.endswith("_refs") and isinstance(value, list):
            out.extend(value)
    return out


# -- what the consumer holds ---------------------------------------------------------------------------------------
OPERATIONAL_TIMES = {
    "first_seen",
    "last_seen",
    "valid_from",
    "valid_until",
    "published",
    "start_time",
    "stop_time",
    "first_observed",
    "last_observed",
}
DENIED_KEYS = {"labels", "lang", "granular_markings", "authors", "street_address", "postal_code"}


def test_copies_keep_only_what_may_leave(scene: Scene) -> None:
    copies = scene.copies
    inbox_ids = {c["id"] for c in copies.values()}
    broker_id = scene.broker.identity["id"]
    for orig, c in copies.items():
        assert c["id"] != orig
        assert c["object_marking_refs"] == [TLP["amber"]]
        assert not DENIED_KEYS & c.keys(), (c["type"], DENIED_KEYS & c.keys())
        assert not [k for k in c if k.startswith(("x_", "qfcnry"))]
        assert set(_refs(c)) <= inbox_ids, (c["type"], set(_refs(c)) - inbox_ids)
        if c["type"] == "ipv4-addr":
            assert c["id"] == "ipv4-addr--" + str(
                uuid.uuid5(uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7"), '{"value":"198.51.100.23"}')
            )
            continue
        assert c["created_by_ref"] == broker_id
        assert c["confidence"] == 70
        # the only extension is the exchange's grade: credibility from the confidence, and no source
        # reliability while fewer than grade_crowd providers share the provider's grade
        assert c["extensions"] == {GRADE_EXT: {"extension_type": "property-extension", "information_credibility": 2}}, (
            c["extensions"]
        )
        # release times: whole minutes (a newer version within the same minute is one millisecond later)
        assert c["created"].endswith(":00.000Z") and c["modified"][16:19] == ":00"
        assert c.get("external_references") == PUBLIC_REFS

        def visit(key: str, value: Any, c: dict[str, Any] = c) -> None:
            if key in OPERATIONAL_TIMES:
                assert value.endswith(":00.000Z"), (c["type"], key, value)

        walk(c, visit)
    actor = copies[ACTOR]
    assert actor["name"] == "Ashen Brigade"  # the newer version
    assert "[REDACTED]" in actor["description"] and "[REDACTED]" in actor["aliases"][1]
    assert copies[INDICATOR]["kill_chain_phases"] == [
        {"kill_chain_name": "mitre-attack", "phase_name": "initial-access"}
    ]
    assert copies[ATTACK]["kill_chain_phases"] == [{"kill_chain_name": "mitre-attack", "phase_name": "initial-access"}]
    assert copies[SIGHTING]["where_sighted_refs"] == [copies[LOCATION]["id"]]
    assert copies[SIGHTING]["observed_data_refs"] == [copies[OBSERVED]["id"]]
    assert copies[OBSERVED]["object_refs"] == [copies[ADDR]["id"]]
    assert copies[NOTE]["object_refs"] == sorted([copies[ACTOR]["id"], copies[LOCATION]["id"]])
    released_refs = [copies[i]["id"] for i in (NOTE, ACTOR, INDICATOR, SIGHTING, REL, ATTACK)]
    assert copies[REPORT]["object_refs"] == sorted(released_refs)


def _consumer_walks_every_endpoint(s: Scene) -> None:
    """The consumer calls everything it can: reads, filters, paging, its own status, and bad requests."""
    b, c = s.broker, s.consumer
    ids = b.collection_ids(c)
    theirs = b.collection_ids(s.provider)
    with s.http("consumer") as h:
        assert h.get(b.discovery).status_code == 200
        assert h.get(b.url + "/taxii2").status_code == 200
        assert h.get("").status_code == 200
        assert h.get(b.root.rstrip("/")).status_code == 200
        assert h.get("collections/").status_code == 200
        for title in ("inbox", "outbox"):
            assert h.get(f"collections/{ids[title]}/").status_code == 200
            assert h.get(f"collections/{ids[title]}").status_code == 200
            for params in ({}, {"match[version]": "all"}, {"match[version]": "first"}, {"limit": 2}):
                r = h.get(coll_path(b, c, title), params=params)
                assert r.status_code == 200
                if r.json().get("next"):
                    r2 = h.get(coll_path(b, c, title), params={**params, "next": r.json()["next"]})
                    assert r2.status_code == 200
                assert h.get(coll_path(b, c, title, "manifest/"), params=params).status_code == 200
        for t in sorted(set(RELEASED.values())):
            assert h.get(coll_path(b, c, "inbox"), params={"match[type]": t}).status_code == 200
        for copy_ in s.copies.values():
            for rest in (f"objects/{copy_['id']}/", f"objects/{copy_['id']}/versions/"):
                assert h.get(coll_path(b, c, "inbox", rest)).status_code == 200
                assert h.get(coll_path(b, c, "inbox", rest), params={"match[version]": "all"}).status_code == 200
        for fb in s.feedback:
            assert h.get(coll_path(b, c, "outbox", f"objects/{fb['id']}/")).status_code == 200
        assert h.get(f"status/{s.consumer_status}/").status_code == 200

        # errors
        assert_taxii_error(h.get(coll_path(b, c, "inbox", f"objects/indicator--{uuid.uuid4()}/")), 404)
        assert_taxii_error(h.get(coll_path(b, c, "inbox", f"objects/indicator--{uuid.uuid4()}/versions/")), 404)
        for cid in theirs.values():  # the provider's collections do not exist for the consumer
            for rest in ("", "objects/", "manifest/", f"objects/{s.copies[ACTOR]['id']}/"):
                assert_taxii_error(h.get(f"collections/{cid}/{rest}"), 404)
        assert_taxii_error(h.get(f"status/{s.provider_status}/"), 404)
        assert_taxii_error(h.get(coll_path(b, c, "inbox"), params={"limit": "0"}), 400)
        assert_taxii_error(h.get(coll_path(b, c, "inbox"), params={"added_after": "yesterday"}), 400)
        assert_taxii_error(h.get(coll_path(b, c, "inbox"), params={"match[version]": "newest"}), 400)
        assert_taxii_error(h.get(coll_path(b, c, "inbox"), params={"next": "not-a-token"}), 400)
        assert_taxii_error(h.get(coll_path(b, c, "inbox"), headers={"Accept": "application/json"}), 406)
        assert_taxii_error(h.get("collections/", headers={"Authorization": "Bearer ct_nope"}), 401)
        assert_taxii_error(h.get("nowhere/"), 404)
        assert_taxii_error(h.delete(coll_path(b, c, "inbox")), 405)
        post = {"headers": {"Content-Type": TAXII}}
        inbox_ids = list(s.copies)
        mine = orjson.dumps({"objects": s.feedback})
        assert_taxii_error(h.post(coll_path(b, c, "inbox"), content=mine, **post), 403)
        assert_taxii_error(h.post(coll_path(b, c, "outbox"), content=b"{not json", **post), 400)
        assert_taxii_error(
            h.post(coll_path(b, c, "outbox"), content=b"{}", headers={"Content-Type": "application/json"}), 415
        )
        fb = copy.deepcopy(s.feedback[0])
        fb["id"] = f"opinion--{uuid.uuid4()}"
        fb["object_refs"] = [f"threat-actor--{uuid.uuid4()}"]  # never received
        assert_taxii_error(h.post(coll_path(b, c, "outbox"), content=orjson.dumps({"objects": [fb]}), **post), 422)
        fb["object_refs"] = [s.copies[inbox_ids[0]]["id"], f"threat-actor--{uuid.uuid4()}"]
        assert_taxii_error(h.post(coll_path(b, c, "outbox"), content=orjson.dumps({"objects": [fb]}), **post), 422)
        not_feedback = {**s.copies[INDICATOR], "id": f"indicator--{uuid.uuid4()}"}
        assert_taxii_error(
            h.post(coll_path(b, c, "outbox"), content=orjson.dumps({"objects": [not_feedback]}), **post), 422
        )
        invalid = {**s.feedback[0], "id": "opinion--nope"}
        assert_taxii_error(h.post(coll_path(b, c, "outbox"), content=orjson.dumps({"objects": [invalid]}), **post), 422)
        for cid in theirs.values():
            assert_taxii_error(
                h.post(f"collections/{cid}/objects/", content=orjson.dumps({"objects": s.feedback}), **post), 404
            )
    with s.taxii("consumer") as (server, root, cols):
        assert server.title and root.max_content_length
        inbox, outbox = cols["inbox"], cols["outbox"]
        for page in as_pages(inbox.get_manifest, per_request=3):
            assert page["objects"]
        for copy_ in s.copies.values():
            inbox.get_object(copy_["id"])
            inbox.object_versions(copy_["id"])
        outbox.get_objects()
        root.get_status(s.consumer_status).refresh()


def test_nothing_of_the_provider_reaches_the_consumer(scene: Scene) -> None:
    _consumer_walks_every_endpoint(scene)
    assert len(scene.consumer_rx) > 100
    assert scene.consumer_rx.find(PROVIDER_CANARIES) == []
    # the transcript does hold headers and bodies: the consumer's own outbox shows its own canaries
    assert scene.consumer_rx.find(["x-taxii-date-added-last", "www-authenticate", *CONSUMER_CANARIES[:3]]) == [
        "x-taxii-date-added-last",
        "www-authenticate",
        *CONSUMER_CANARIES[:3],
    ]


def test_feedback_is_stripped_of_the_consumer(scene: Scene) -> None:
    s = scene
    with s.taxii("provider") as (_, _, cols):
        back = [o for page in as_pages(cols["inbox"].get_objects, per_request=2) for o in page["objects"]]
    by_type = {o["type"]: o for o in back}
    assert sorted(by_type) == ["note", "opinion", "sighting"]
    assert sorted(by_type["opinion"]["object_refs"]) == sorted([ACTOR, LOCATION])
    assert by_type["sighting"]["sighting_of_ref"] == INDICATOR
    assert by_type["note"]["object_refs"] == [REPORT]
    for o in back:
        assert o["id"] not in C_IDS
        assert o["created_by_ref"] == s.broker.identity["id"]
        assert not {*DENIED_KEYS, "where_sighted_refs", "observed_data_refs", "external_references"} & o.keys()
        assert not [k for k in o if k.startswith(("x_", "hgcnry"))]
        assert o["object_marking_refs"] == [TLP["amber"]]
        assert o.get("confidence") in (None, 50)
        assert o["created"].endswith(":00.000Z") and o["modified"].endswith(":00.000Z")
    assert by_type["sighting"]["count"] == 10
    assert (by_type["sighting"]["first_seen"], by_type["sighting"]["last_seen"]) == (
        "2025-07-08T23:51:00.000Z",
        "2025-07-09T01:18:00.000Z",
    )
    assert "[REDACTED]" in by_type["opinion"]["explanation"]


def _provider_walks_every_endpoint(s: Scene) -> None:
    b, p = s.broker, s.provider
    with s.http("provider") as h:
        for path in (b.discovery, "", "collections/", f"status/{s.provider_status}/"):
            assert h.get(path).status_code == 200
        for title in ("inbox", "outbox"):
            assert h.get(coll_path(b, p, title, "")).status_code == 200
            for params in ({}, {"match[version]": "all"}, {"limit": 1}):
                assert h.get(coll_path(b, p, title), params=params).status_code == 200
                assert h.get(coll_path(b, p, title, "manifest/"), params=params).status_code == 200
        back = h.get(coll_path(b, p, "inbox")).json()["objects"]
        for o in back:
            assert h.get(coll_path(b, p, "inbox", f"objects/{o['id']}/")).status_code == 200
            assert h.get(coll_path(b, p, "inbox", f"objects/{o['id']}/versions/")).status_code == 200
        for cid in b.collection_ids(s.consumer).values():
            assert_taxii_error(h.get(f"collections/{cid}/objects/"), 404)
        assert_taxii_error(h.get(f"status/{s.consumer_status}/"), 404)
        assert_taxii_error(h.get(coll_path(b, p, "inbox", f"objects/{C_OPINION}/")), 404)
        assert_taxii_error(h.get(coll_path(b, p, "inbox"), params={"next": "x"}), 400)
        resend = orjson.dumps({"objects": provider_objects()[3:4]})
        assert_taxii_error(h.post(coll_path(b, p, "inbox"), content=resend, headers={"Content-Type": TAXII}), 403)
    with s.taxii("provider") as (_, root, cols):
        for page in as_pages(cols["inbox"].get_manifest, per_request=1):
            for entry in page["objects"]:
                cols["inbox"].object_versions(entry["id"])
        root.get_status(s.provider_status)


def test_nothing_of_the_consumer_reaches_the_provider(scene: Scene) -> None:
    _provider_walks_every_endpoint(scene)
    assert len(scene.provider_rx) > 20
    assert scene.provider_rx.find(CONSUMER_CANARIES) == []
    assert scene.provider_rx.find(["x-taxii-date-added-last", P_NAME]) == ["x-taxii-date-added-last", P_NAME]


def test_phase_names_of_public_kill_chains_are_not_a_free_channel(broker: Broker) -> None:
    provider, consumer = broker.pair("Phase")
    phases = [
        {"kill_chain_name": "mitre-attack", "phase_name": "qfcnry-desk-7-phase"},
        {"kill_chain_name": "lockheed-martin-cyber-kill-chain", "phase_name": "quillfeather-stage"},
        {"kill_chain_name": "mitre-attack", "phase_name": "initial-access"},
        {"kill_chain_name": "lockheed-martin-cyber-kill-chain", "phase_name": "delivery"},
    ]
    send(broker, provider, [indicator(1, tlp="amber", kill_chain_phases=phases)])
    (got,) = read_all(broker, consumer)
    assert got["kill_chain_phases"] == phases[2:]


def test_a_party_without_agreement_gets_nothing(scene: Scene) -> None:
    s, b, o = scene, scene.broker, scene.outsider
    others = [*b.collection_ids(s.provider).values(), *b.collection_ids(s.consumer).values()]
    unknown = str(uuid.uuid4())
    with s.http("outsider") as h:
        cols = h.get("collections/").json()["collections"]
        assert sorted(c["title"] for c in cols) == ["inbox", "outbox"]
        assert not {c["id"] for c in cols} & set(others)
        for title in ("inbox", "outbox"):
            doc = h.get(coll_path(b, o, title)).json()
            assert doc == {"more": False, "objects": []}  # both always present, even when empty
            assert h.get(coll_path(b, o, title, "manifest/")).json() == {"more": False, "objects": []}
        fb = {
            "type": "opinion",
            "spec_version": "2.1",
            "id": f"opinion--{uuid.uuid4()}",
            "created": "2026-01-02T03:04:05.000Z",
            "modified": "2026-01-02T03:04:05.000Z",
            "opinion": "agree",
            "object_refs": [s.copies[ACTOR]["id"]],
        }
        post = {"headers": {"Content-Type": TAXII}}
        nothing = assert_taxii_error(h.get(f"collections/{unknown}/"), 404)
        for cid in others:
            for rest in (
                "",
                "objects/",
                "manifest/",
                f"objects/{s.copies[ACTOR]['id']}/",
                f"objects/{ACTOR}/versions/",
            ):
                doc = assert_taxii_error(h.get(f"collections/{cid}/{rest}"), 404)
                if rest == "":  # the same answer as for a collection that does not exist: no oracle
                    assert doc == nothing
            assert_taxii_error(
                h.post(f"collections/{cid}/objects/", content=orjson.dumps({"objects": [fb]}), **post),
                404,
            )
        for sid in (s.provider_status, s.consumer_status):
            assert_taxii_error(h.get(f"status/{sid}/"), 404)
        # feedback about someone else's copy is refused like feedback about nothing
        assert_taxii_error(
            h.post(coll_path(b, o, "outbox"), content=orjson.dumps({"objects": [fb]}), headers={"Content-Type": TAXII}),
            422,
        )
    assert s.outsider_rx.find(PROVIDER_CANARIES + CONSUMER_CANARIES) == []


def test_the_signing_identity_is_redacted_when_sent_in_an_earlier_post(broker: Broker) -> None:
    """stix2's TAXIICollectionSink.add(list) posts one object per request, and many tools send their
    identity once: the identity's name must still be redacted from the objects signed with it."""
    provider, consumer = broker.pair("Signer")
    identity = {
        "type": "identity",
        "spec_version": "2.1",
        "id": f"identity--{uuid.uuid4()}",
        "created": "2026-01-02T03:04:05.000Z",
        "modified": "2026-01-02T03:04:05.000Z",
        "name": "Zephyrine Analysis Office",
        "identity_class": "organization",
    }
    send(broker, provider, [identity])
    text = "Seen by the Zephyrine Analysis Office night shift."
    send(broker, provider, [indicator(1, tlp="amber", created_by_ref=identity["id"], description=text)])
    (got,) = read_all(broker, consumer)
    assert got["description"] == "Seen by the [REDACTED] night shift."
