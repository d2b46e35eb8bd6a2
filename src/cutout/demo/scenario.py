"""The demo's fictional cast and what each of them sends. Every name, place and group here is invented.

The provider, a state service called "Northern Watch", reports on an armed group, the "Ashen Vale Brigade":
a convoy on the move, a meeting of its leaders and an arms depot. Its objects carry everything a real tool
would leak: its own identity, a statement marking naming it, a custom property with a source handle, an
extension, internal labels, a link to its case portal, exact timestamps. The consumer, "Harbor Command",
strikes and reports back "struck; precise hit" on two of them, with its own identity and analysts' names.
"""

from __future__ import annotations

from typing import Any

from cutout.extensions import OUTCOME_EXT, REQUEST_EXT, REQUEST_TYPE, opinion_for

__all__ = [
    "CANARIES",
    "CONSUMER",
    "OUTSIDER",
    "PROVIDER",
    "REQUEST_TYPE",
    "answer",
    "feedback",
    "outcomes",
    "provider_objects",
    "requests",
]

PROVIDER = "Northern Watch"
CONSUMER = "Harbor Command"
OUTSIDER = "Eastern Desk"

# the area the agreement covers (min lon, min lat, max lon, max lat)
AREA = "30.0,44.0,36.0,48.0"

_ID = "identity--7f3c2a8e-4b1d-4c55-9e0a-5d2b9c1e6a01"
_MARK = "marking-definition--c4f1d1b0-3b6e-4d7a-9a41-2f7b8e5d9c11"
_EXT = "extension-definition--1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
_ACTOR = "threat-actor--0b5e9f2a-6c1d-4e7b-a3f8-9d2c4b6a8e10"
_CONVOY_AT = "location--5a1e7c3b-9d2f-4b6a-8e0c-1f3a5b7d9c21"
_MEETING_AT = "location--6b2f8d4c-0e3a-4c7b-9f1d-2a4b6c8e0d32"
_DEPOT_AT = "location--7c3a9e5d-1f4b-4d8c-a02e-3b5c7d9f1e43"
_CONVOY = "sighting--8d4b0f6e-2a5c-4e9d-b13f-4c6d8e0a2f54"
_MEETING = "note--9e5c1a7f-3b6d-4fae-824a-5d7e9f1b3a65"
_DEPOT = "infrastructure--af6d2b8a-4c7e-4b0f-9d5b-6e8f0a2c4b76"
_DEPOT_LOC_REL = "relationship--b07e3c9b-5d8f-4c1a-8e6c-7f9a1b3d5c87"

_T1 = "2026-11-20T05:41:17.382Z"  # provider's own publishing times: exact, a fingerprint
_T2 = "2026-11-20T05:41:17.389Z"

_COMMON: dict[str, Any] = {
    "spec_version": "2.1",
    "created_by_ref": _ID,
    "created": _T1,
    "modified": _T2,
    "object_marking_refs": ["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421", _MARK],
    "labels": ["nw-desk-7-internal"],
    "lang": "en",
    "confidence": 83,
    "x_nw_source_handle": "ASSET-LIMA-7",
    "external_references": [
        {"source_name": "northern-watch-case", "url": "https://portal.northern-watch.example/case/4471"}
    ],
}


def provider_objects() -> list[dict[str, Any]]:
    """What the provider submits: its identity, a marking, and the report itself."""
    return [
        {
            "type": "identity",
            "spec_version": "2.1",
            "id": _ID,
            "created": _T1,
            "modified": _T1,
            "name": "Northern Watch Directorate",
            "identity_class": "organization",
            "contact_information": "duty-officer@northern-watch.example, +99 555 0147",
        },
        {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": _MARK,
            "created": _T1,
            "name": "Northern Watch handling caveat",
            "definition_type": "statement",
            "definition": {"statement": "Property of Northern Watch Directorate. Do not disclose the source."},
        },
        {
            **_COMMON,
            "type": "threat-actor",
            "id": _ACTOR,
            "name": "Ashen Vale Brigade",
            "description": "Armed group operating along the river valley. Tracked by Northern Watch since 2024.",
            "threat_actor_types": ["criminal"],
            "aliases": ["AVB", "The Ash"],
            "first_seen": "2024-03-02T09:12:44.120Z",
            "extensions": {_EXT: {"extension_type": "property-extension", "nw_case": "NW-4471"}},
        },
        {
            **_COMMON,
            "type": "location",
            "id": _CONVOY_AT,
            "name": "Convoy position, river road north of Kalvo",
            "latitude": 46.4821,
            "longitude": 33.1207,
        },
        {
            **_COMMON,
            "type": "location",
            "id": _MEETING_AT,
            "name": "Farmstead east of Dremor",
            "latitude": 45.9164,
            "longitude": 34.0551,
        },
        {
            **_COMMON,
            "type": "location",
            "id": _DEPOT_AT,
            "name": "Grain silo complex, Oskol junction",
            "latitude": 46.1032,
            "longitude": 32.7718,
        },
        {
            **_COMMON,
            "type": "sighting",
            "id": _CONVOY,
            "sighting_of_ref": _ACTOR,
            "where_sighted_refs": [_CONVOY_AT, _ID],
            "first_seen": "2026-11-20T04:58:09.513Z",
            "last_seen": "2026-11-20T05:26:51.004Z",
            "count": 6,
            "description": "Convoy of six trucks with mounted weapons moving north on the river road. "
            "Source: Northern Watch field team, contact duty-officer@northern-watch.example.",
        },
        {
            **_COMMON,
            "type": "note",
            "id": _MEETING,
            "abstract": "Leadership meeting",
            "content": "The brigade's three commanders meet at the farmstead east of Dremor tonight, 22:00 local.",
            "authors": ["Analyst K. Varo (Northern Watch)"],
            "object_refs": [_ACTOR, _MEETING_AT],
        },
        {
            **_COMMON,
            "type": "infrastructure",
            "id": _DEPOT,
            "name": "Ashen Vale arms depot",
            "description": "Weapons and ammunition stored in the grain silos at Oskol junction.",
            "infrastructure_types": ["staging"],
        },
        {
            **_COMMON,
            "type": "relationship",
            "id": _DEPOT_LOC_REL,
            "relationship_type": "located-at",
            "source_ref": _DEPOT,
            "target_ref": _DEPOT_AT,
        },
    ]


_CONSUMER_ID = "identity--3e1d5c7b-9a2f-4e6d-8c0b-1a3e5f7d9b62"


def feedback(depot_id: str, meeting_id: str) -> list[dict[str, Any]]:
    """What the consumer sends back: "struck; precise hit", about the ids it was given."""
    base: dict[str, Any] = {
        "type": "opinion",
        "spec_version": "2.1",
        "created_by_ref": _CONSUMER_ID,
        "created": "2026-11-21T02:13:45.771Z",
        "modified": "2026-11-21T02:13:45.771Z",
        "opinion": "strongly-agree",
        "authors": ["Maj. T. Selen, Harbor Command J2"],
        "x_hc_strike_ref": "HC-STRIKE-0931",
    }
    return [
        {
            **base,
            "id": "opinion--4f2e6d8c-0b3a-4f7e-9d1c-2b4f6a8e0c73",
            "explanation": "Struck; precise hit. Depot destroyed. Harbor Command battle damage assessment to follow.",
            "object_refs": [depot_id],
        },
        {
            **base,
            "id": "opinion--5a3f7e9d-1c4b-4a8f-8e2d-3c5a7b9f1d84",
            "explanation": "Struck; precise hit on the meeting site.",
            "object_refs": [meeting_id],
        },
    ]


_ASK = f"{REQUEST_TYPE}--1c7e3a5b-8d2f-4e6a-9b0c-3d5f7a9c1e95"
_ASK_FAR = f"{REQUEST_TYPE}--2d8f4b6c-9e3a-4f7b-8c1d-4e6a8b0d2fa6"
_ANSWER = "note--3e9a5c7d-0f4b-4a8c-9d2e-5f7b9c1e3a07"
_FERRY = "location--4fab6d8e-1a5c-4b9d-8e3f-6a8c0d2f4b18"


def requests(expires: str) -> list[dict[str, Any]]:
    """What the consumer asks: one request its agreement covers, and one far outside any agreement."""
    base: dict[str, Any] = {
        "type": REQUEST_TYPE,
        "spec_version": "2.1",
        "created": "2026-11-21T03:02:11.219Z",
        "modified": "2026-11-21T03:02:11.219Z",
        "priority": "high",
        "expires": expires,
        "extensions": {REQUEST_EXT: {"extension_type": "new-sdo"}},
        "object_marking_refs": ["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"],
        "x_hc_tasking": "HC-TASK-2207",
    }
    return [
        {
            **base,
            "id": _ASK,
            "question": "Where is the Ashen Vale Brigade convoy now? Harbor Command J2 needs positions near Kalvo.",
            "area": [32.5, 46.0, 33.8, 46.9],
            "window_start": "2026-11-20T00:00:00.000Z",
            "window_end": "2026-11-27T00:00:00.000Z",
            "object_types": ["sighting", "location", "note"],
        },
        {
            **base,
            "id": _ASK_FAR,
            "question": "Any shipments through the southern ports?",
            "area": [100.0, -10.0, 110.0, 0.0],
        },
    ]


def answer(request_copy_id: str) -> list[dict[str, Any]]:
    """The provider's answer: a note about the request it was given, and the position it reports."""
    return [
        {
            **_COMMON,
            "type": "location",
            "id": _FERRY,
            "name": "Ferry crossing south of Kalvo",
            "latitude": 46.3312,
            "longitude": 33.0871,
        },
        {
            **_COMMON,
            "type": "note",
            "id": _ANSWER,
            "abstract": "Convoy position",
            "content": "The convoy crossed the river at the ferry south of Kalvo at 03:40 and is laagered there. "
            "Northern Watch observers remain in place.",
            "object_refs": [request_copy_id, _FERRY],
        },
    ]


def outcomes(copy_ids: list[str]) -> list[dict[str, Any]]:
    """After the strikes: one confirmed hit per object acted on, as opinions carrying the outcome."""
    return [
        {
            "type": "opinion",
            "spec_version": "2.1",
            "id": f"opinion--6b4a8f0e-2d5c-4b9a-9f3e-{i:012d}",
            "created_by_ref": _CONSUMER_ID,
            "created": "2026-11-21T06:20:02.118Z",
            "modified": "2026-11-21T06:20:02.118Z",
            "opinion": opinion_for("confirmed-hit"),
            "explanation": "Confirmed on the ground by Harbor Command.",
            "object_refs": [ref],
            "extensions": {OUTCOME_EXT: {"extension_type": "property-extension", "outcome": "confirmed-hit"}},
        }
        for i, ref in enumerate(copy_ids)
    ]


#: strings of the provider that must never reach a consumer, and of the consumer that must never reach the
#: provider. Ids, names, handles, markings, extensions, labels, links and exact timestamps.
CANARIES: dict[str, list[str]] = {
    "provider": [
        PROVIDER,
        "Northern Watch Directorate",
        "northern-watch",
        "duty-officer",
        _ID,
        _MARK,
        _EXT,
        "Property of Northern Watch",
        "ASSET-LIMA-7",
        "x_nw_source_handle",
        "NW-4471",
        "nw-desk-7-internal",
        "K. Varo",
        _T1,
        _T2,
        "09:12:44.120",
        "04:58:09.513",
        "05:26:51.004",
        _ACTOR,
        _CONVOY_AT,
        _MEETING_AT,
        _DEPOT_AT,
        _CONVOY,
        _MEETING,
        _DEPOT,
        _DEPOT_LOC_REL,
        _ANSWER,
        _FERRY,
    ],
    "consumer": [
        CONSUMER,
        _CONSUMER_ID,
        "T. Selen",
        "HC-STRIKE-0931",
        "x_hc_strike_ref",
        "02:13:45.771",
        "opinion--4f2e6d8c-0b3a-4f7e-9d1c-2b4f6a8e0c73",
        "opinion--5a3f7e9d-1c4b-4a8f-8e2d-3c5a7b9f1d84",
        "HC-TASK-2207",
        "x_hc_tasking",
        "03:02:11.219",
        "06:20:02.118",
        _ASK,
        _ASK_FAR,
        "Harbor Command J2",
    ],
}
