"""The sanitizer on its own: what survives, what is rebuilt, what is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cutout.model.timestamps import parse_us
from cutout.model.tlp import TLP2_IDS
from cutout.model.validate import default_validator
from cutout.sanitize.engine import FEEDBACK_PROFILES, Sanitizer, bucket_count, quantise_confidence
from cutout.sanitize.redact import Redactor

BROKER = "identity--00000000-0000-4000-8000-000000000001"
T0 = parse_us("2026-11-26T10:00:00Z")


def sanitizer(**kw: Any) -> Sanitizer:
    return Sanitizer(
        broker_identity=BROKER,
        time_granularity=60,
        validator=default_validator(),
        redactor=Redactor(["Northern Watch"]),
        **kw,
    )


def run(obj: dict[str, Any], refs: dict[str, str] | None = None, **kw: Any) -> tuple[dict[str, Any] | None, str]:
    table = refs or {}
    return sanitizer(**kw).sanitize(
        obj,
        keyed=f"{obj['type']}--11111111-1111-4111-8111-111111111111",
        created_us=T0,
        modified_us=T0,
        tlp=2,
        resolve=table.get,
    )


INDICATOR: dict[str, Any] = {
    "type": "indicator",
    "spec_version": "2.1",
    "id": "indicator--4f6a1e52-0a2c-4a53-9a3b-0e6a2b5c9d11",
    "created_by_ref": "identity--9c2b3a44-6f1e-4d4a-8b2c-7e1f0a3b5c66",
    "created": "2026-11-20T05:41:17.382Z",
    "modified": "2026-11-20T05:41:17.389Z",
    "name": "C2 of Northern Watch's target",
    "pattern": "[ipv4-addr:value = '198.51.100.7']",
    "pattern_type": "stix",
    "valid_from": "2026-11-20T05:41:17.382Z",
    "valid_until": "2026-11-20T05:41:19.001Z",
    "labels": ["nw-internal"],
    "lang": "uk",
    "confidence": 83,
    "x_nw_handle": "ASSET-7",
    "extensions": {"extension-definition--1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d": {"extension_type": "toplevel"}},
    "object_marking_refs": ["marking-definition--c4f1d1b0-3b6e-4d7a-9a41-2f7b8e5d9c11"],
    "granular_markings": [{"marking_ref": TLP2_IDS[1], "selectors": ["name"]}],
    "external_references": [
        {"source_name": "nw-portal", "url": "https://portal.example/4471"},
        {"source_name": "cve", "external_id": "CVE-2024-12345", "url": "https://nvd.example"},
        {"source_name": "cve", "external_id": "NW-SECRET-1"},
        {"source_name": "mitre-attack", "external_id": "T1071.001", "description": "provider note"},
    ],
    "kill_chain_phases": [
        {"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"},
        {"kill_chain_name": "nw-chain", "phase_name": "stage-3"},
    ],
}


def test_indicator_default_deny() -> None:
    out, reason = run(INDICATOR)
    assert out is not None, reason
    assert out["id"] == "indicator--11111111-1111-4111-8111-111111111111"
    assert out["created_by_ref"] == BROKER
    assert out["created"] == out["modified"] == "2026-11-26T10:00:00.000Z"
    assert out["object_marking_refs"] == [TLP2_IDS[2]]
    assert out["confidence"] == 90
    assert out["name"] == "C2 of [REDACTED]'s target"
    assert out["valid_from"] == "2026-11-20T05:41:00.000Z"
    assert out["valid_until"] == "2026-11-20T05:42:00.000Z"
    assert out["external_references"] == [
        {"source_name": "cve", "external_id": "CVE-2024-12345"},
        {"source_name": "mitre-attack", "external_id": "T1071.001"},
    ]
    assert out["kill_chain_phases"] == [{"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"}]
    for gone in ("labels", "lang", "x_nw_handle", "extensions", "granular_markings"):
        assert gone not in out
    assert default_validator().check(out) == []


def test_references_are_rewritten_sorted_or_dropped() -> None:
    report = {
        "type": "report",
        "spec_version": "2.1",
        "id": "report--4f6a1e52-0a2c-4a53-9a3b-0e6a2b5c9d12",
        "created": "2026-11-20T05:41:17.382Z",
        "modified": "2026-11-20T05:41:17.382Z",
        "name": "r",
        "published": "2026-11-20T05:41:17.382Z",
        "object_refs": ["indicator--b", "indicator--a", "identity--c"],
    }
    table = {
        "indicator--a": "indicator--22222222-2222-4222-8222-222222222222",
        "indicator--b": "indicator--11111111-1111-4111-8111-111111111112",
    }
    out, _ = run(report, table)
    assert out is not None
    assert out["object_refs"] == sorted(table.values())


def test_losing_a_required_reference_withholds_the_object() -> None:
    rel = {
        "type": "relationship",
        "spec_version": "2.1",
        "id": "relationship--4f6a1e52-0a2c-4a53-9a3b-0e6a2b5c9d13",
        "created": "2026-11-20T05:41:17.382Z",
        "modified": "2026-11-20T05:41:17.382Z",
        "relationship_type": "uses",
        "source_ref": "malware--a",
        "target_ref": "identity--b",
    }
    out, reason = run(rel, {"malware--a": "malware--33333333-3333-4333-8333-333333333333"})
    assert out is None
    assert "target_ref" in reason


@pytest.mark.parametrize("kind", ["identity", "marking-definition", "language-content", "x-custom-thing"])
def test_types_never_released(kind: str) -> None:
    out, reason = run({"type": kind, "id": f"{kind}--x"})
    assert out is None
    assert "not released" in reason


def test_sco_id_is_recomputed_from_content() -> None:
    sco = {
        "type": "domain-name",
        "spec_version": "2.1",
        "id": "domain-name--00000000-0000-4000-8000-00000000dead",
        "value": "example.org",
        "x_seen_by": "Northern Watch",
    }
    out, _ = run(sco)
    assert out is not None
    assert out["id"] == "domain-name--3500c14b-9bde-5393-b4e5-b260aea7e058"
    assert "x_seen_by" not in out and "created_by_ref" not in out


def test_feedback_profile_strips_the_consumer() -> None:
    sighting = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": "sighting--4f6a1e52-0a2c-4a53-9a3b-0e6a2b5c9d14",
        "created": "2026-11-20T05:41:17.382Z",
        "modified": "2026-11-20T05:41:17.382Z",
        "sighting_of_ref": "indicator--mine",
        "where_sighted_refs": ["identity--consumer"],
        "observed_data_refs": ["observed-data--consumer"],
        "count": 37,
        "first_seen": "2026-11-20T05:41:17.382Z",
    }
    out, _ = run(
        sighting,
        {"indicator--mine": "indicator--44444444-4444-4444-8444-444444444444"},
        profiles=FEEDBACK_PROFILES,
        bucket_counts=True,
    )
    assert out is not None
    assert out["sighting_of_ref"] == "indicator--44444444-4444-4444-8444-444444444444"
    assert "where_sighted_refs" not in out and "observed_data_refs" not in out
    assert out["count"] == 20


def test_quantise_and_bucket() -> None:
    assert [quantise_confidence(v) for v in (0, 19, 20, 59, 60, 79, 80, 100)] == [10, 10, 30, 50, 70, 70, 90, 90]
    assert [bucket_count(v) for v in (0, 1, 3, 7, 120, 5000)] == [0, 1, 2, 5, 100, 1000]


def test_custom_vocabulary_values_and_hash_names_do_not_leave() -> None:
    ind = {
        **INDICATOR,
        "indicator_types": ["malicious-activity", "acme-desk-7"],
        "kill_chain_phases": [
            {"kill_chain_name": "mitre-attack", "phase_name": "acme-phase"},
            {"kill_chain_name": "lockheed-martin-cyber-kill-chain", "phase_name": "delivery"},
        ],
    }
    out, _ = run(ind)
    assert out is not None
    assert out["indicator_types"] == ["malicious-activity"]
    assert out["kill_chain_phases"] == [
        {"kill_chain_name": "lockheed-martin-cyber-kill-chain", "phase_name": "delivery"}
    ]
    rel = {
        "type": "relationship",
        "spec_version": "2.1",
        "id": "relationship--4f6a1e52-0a2c-4a53-9a3b-0e6a2b5c9d15",
        "created": "2026-11-20T05:41:17.382Z",
        "modified": "2026-11-20T05:41:17.382Z",
        "relationship_type": "acme-handled-by",
        "source_ref": "malware--a",
        "target_ref": "malware--b",
    }
    table = {
        "malware--a": "malware--33333333-3333-4333-8333-333333333333",
        "malware--b": "malware--33333333-3333-4333-8333-333333333334",
    }
    out, _ = run(rel, table)
    assert out is not None
    assert out["relationship_type"] == "related-to"
    f = {
        "type": "file",
        "spec_version": "2.1",
        "id": "file--00000000-0000-4000-8000-000000000001",
        "name": "a.exe",
        "hashes": {"SHA-256": "a" * 64, "ACME-FINGERPRINT": "zz"},
    }
    out, _ = run(f)
    assert out is not None
    assert out["hashes"] == {"SHA-256": "a" * 64}


# -- one copy shared by every reader of an object: the same copies as made one by one ------------------------
def _uuid4(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def _shared_cases() -> list[dict[str, Any]]:
    from bench.workload import Workload

    report = {
        "type": "report",
        "spec_version": "2.1",
        "id": "report--4f6a1e52-0a2c-4a53-9a3b-0e6a2b5c9d12",
        "created": "2026-11-20T05:41:17.382Z",
        "modified": "2026-11-20T05:41:17.382Z",
        "name": "Northern Watch weekly",
        "published": "2026-11-20T05:41:17.382Z",
        "object_refs": [f"indicator--{_uuid4(2)}", f"indicator--{_uuid4(1)}", f"ipv4-addr--{_uuid4(3)}"],
    }
    rel = {
        "type": "relationship",
        "spec_version": "2.1",
        "id": f"relationship--{_uuid4(9)}",
        "created": "2026-11-20T05:41:17.382Z",
        "modified": "2026-11-20T05:41:17.382Z",
        "relationship_type": "uses",
        "source_ref": f"malware--{_uuid4(4)}",
        "target_ref": f"indicator--{_uuid4(1)}",
    }
    sighting = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": f"sighting--{_uuid4(10)}",
        "created": "2026-11-20T05:41:17.382Z",
        "modified": "2026-11-20T05:41:17.382Z",
        "sighting_of_ref": f"indicator--{_uuid4(1)}",
        "where_sighted_refs": [f"location--{_uuid4(5)}"],
        "first_seen": "2026-11-20T05:41:00.000Z",
        "last_seen": "2026-11-20T05:41:00.000Z",
        "description": "seen by Northern Watch at +44 20 7946 0958",
    }
    return [INDICATOR, report, rel, sighting, *Workload().objects(40)]


def _readers() -> list[Callable[[str], str | None]]:
    ids = [f"indicator--{_uuid4(1)}", f"indicator--{_uuid4(2)}", f"ipv4-addr--{_uuid4(3)}"]
    ids += [f"malware--{_uuid4(4)}", f"location--{_uuid4(5)}"]
    full = {i: f"{i.partition('--')[0]}--{_uuid4(100 + n)}" for n, i in enumerate(ids)}
    other = {i: f"{i.partition('--')[0]}--{_uuid4(200 + n)}" for n, i in enumerate(ids)}
    missing = {i: v for i, v in other.items() if "location" not in i and "indicator--0000000" not in i}
    merged = dict(full) | {ids[1]: full[ids[0]]}  # two references that become one for this reader
    retyped = dict(full) | {ids[4]: f"identity--{_uuid4(300)}"}

    def anything(ref: str) -> str | None:  # any reference, e.g. the workload's: keyed like the service does
        return full.get(ref) or f"{ref.partition('--')[0]}--{_uuid4(abs(hash(ref)) % 10**9)}"

    return [full.get, other.get, missing.get, merged.get, retyped.get, anything, full.get]


def test_a_list_of_references_of_several_types_is_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    report = _shared_cases()[1]  # object_refs: two indicators and an ipv4-addr
    full, other = _readers()[:2]
    retyped = {r: other(r) for r in report["object_refs"]} | {f"indicator--{_uuid4(1)}": f"malware--{_uuid4(400)}"}
    made: list[str] = []
    sanitize = Sanitizer._sanitize

    def counted(self: Sanitizer, obj: Any, *args: Any) -> Any:
        made.append(obj["id"])
        return sanitize(self, obj, *args)

    monkeypatch.setattr(Sanitizer, "_sanitize", counted)
    s, shared = sanitizer(), dict[Any, Any]()
    copies: list[dict[str, Any]] = []
    for n, resolve in enumerate([full, other, full, retyped.get]):
        args: dict[str, Any] = {"keyed": f"report--{_uuid4(500 + n)}", "created_us": T0, "modified_us": T0, "tlp": 2}
        out, _ = s.sanitize(report, shared=shared, resolve=resolve, **args)
        assert out is not None
        assert (out, "") == sanitize(sanitizer(), report, *args.values(), resolve)
        copies.append(out)
    # made once with stand-ins and shared by the first three readers; the fourth's ids change type, so its
    # copy is made from scratch
    assert made == [report["id"], report["id"]]
    assert [sorted(r.partition("--")[0] for r in c["object_refs"]) for c in copies] == [
        ["indicator", "indicator", "ipv4-addr"]
    ] * 3 + [["indicator", "ipv4-addr", "malware"]]


@pytest.mark.parametrize("feedback", [False, True])
def test_shared_copies_are_the_copies_made_one_by_one(feedback: bool) -> None:
    kw: dict[str, Any] = {"profiles": FEEDBACK_PROFILES, "bucket_counts": True} if feedback else {}
    shared_s, alone_s = sanitizer(**kw), sanitizer(**kw)
    shared: dict[Any, Any] = {}
    for obj in _shared_cases():
        for n, resolve in enumerate(_readers()):
            for stamp in (T0, T0 + 60_000_000):
                args: dict[str, Any] = {
                    "keyed": f"{obj['type']}--{_uuid4(1000 + n)}",
                    "created_us": T0,
                    "modified_us": stamp,
                    "tlp": 1 + n % 2,
                    "resolve": resolve,
                }
                shared_s.redact.count = alone_s.redact.count = 0
                assert shared_s.sanitize(obj, shared=shared, **args) == alone_s.sanitize(obj, **args)
                assert shared_s.redact.count == alone_s.redact.count
    assert shared  # the shared path was taken
