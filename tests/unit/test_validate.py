"""cutout.model.validate: the same verdict as stix2-validator, specific messages.

The differential tests compare ``Validator().check(obj) == []`` with
``stix2validator.validate_instance(obj, ValidationOptions(version="2.1")).is_valid`` over the examples
shipped with stix2-validator, objects generated with the ``stix2`` library for every SDO, SRO and SCO
type, systematic mutations of them, targeted odd cases, and random (hypothesis) mutations. When
stix2-validator raises instead of answering, the object counts as refused.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stix2validator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stix2 import v21 as stix
from stix2patterns.v21.pattern import Pattern
from stix2patterns.validator import run_validator
from stix2validator import ValidationOptions, validate_instance

from cutout.errors import Problem
from cutout.model import validate as validate_module
from cutout.model.validate import Validator, default_validator

# --------------------------------------------------------------------------------------------------
# the reference verdict
# --------------------------------------------------------------------------------------------------

_OPTIONS = ValidationOptions(version="2.1")


def reference_accepts(obj: Any) -> bool:
    """stix2-validator's verdict with its default options; raising counts as refusing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(validate_instance(obj, _OPTIONS).is_valid)
        except Exception:
            return False


@pytest.fixture(scope="module")
def validator() -> Validator:
    return default_validator()


def assert_same_verdicts(validator: Validator, objs: list[Any]) -> tuple[int, int]:
    """Compare verdicts; return (accepted, refused) counts."""
    mismatches: list[str] = []
    accepted = 0
    for obj in objs:
        expected = reference_accepts(obj)
        got = validator.check(obj)
        accepted += expected
        if expected != (got == []):
            verdict = "accepts" if expected else "refuses"
            mismatches.append(f"stix2-validator {verdict}, cutout: {got[:3]}: {json.dumps(obj, default=str)[:300]}")
    assert not mismatches, f"{len(mismatches)} of {len(objs)} verdicts differ:\n" + "\n".join(mismatches[:15])
    return accepted, len(objs) - accepted


# --------------------------------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------------------------------

_RNG = random.Random(20240601)
TS = "2020-01-01T00:00:00.000Z"
TLP = {
    "white": ("613f2e26-407d-48c7-9eca-b8e91df99dc9", "TLP:WHITE"),
    "green": ("34098fce-860f-48ae-8e50-ebd3cc5e41da", "TLP:GREEN"),
    "amber": ("f88d31f6-486f-44da-b317-01333bde0b82", "TLP:AMBER"),
    "red": ("5e57c739-391a-4eb3-b6be-7d15ca92d5ed", "TLP:RED"),
}
TLP_WHITE = "marking-definition--" + TLP["white"][0]
EXAMPLES = Path(stix2validator.__file__).parent / "schemas-2.1" / "examples"


def u4() -> str:
    return str(uuid.UUID(int=_RNG.getrandbits(128), version=4))


def u5(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def sdo(kind: str, **props: Any) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{u4()}", "created": TS, "modified": TS, **props}


def sco(kind: str, **props: Any) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{u5(kind + repr(sorted(props.items())))}", **props}


def indicator(pattern: Any, **props: Any) -> dict[str, Any]:
    return sdo("indicator", **{"pattern": pattern, "pattern_type": "stix", "valid_from": TS, **props})


def shipped_examples() -> list[Any]:
    """Every example bundle shipped with stix2-validator, and every object in them."""
    out: list[Any] = []
    for path in sorted(EXAMPLES.rglob("*.json")):
        bundle = json.loads(path.read_text("utf-8"))
        out.append(bundle)
        out.extend(bundle.get("objects", []))
    return out


def generated_objects() -> list[dict[str, Any]]:
    """One object of every SDO, SRO and SCO type (plus meta objects), made with the stix2 library."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ident = stix.Identity(name="ACME", identity_class="organization")
        mal = stix.Malware(name="Evil", is_family=True, malware_types=["trojan"])
        ind = stix.Indicator(
            name="x",
            pattern="[ipv4-addr:value = '10.0.0.1']",
            pattern_type="stix",
            valid_from=TS,
            indicator_types=["malicious-activity"],
            kill_chain_phases=[{"kill_chain_name": "lockheed", "phase_name": "recon"}],
        )
        file = stix.File(
            name="a.exe", hashes={"SHA-256": "4bac27393bdd9777ce02453256c5577cd02275510b2227f473d03f533924f877"}
        )
        ip = stix.IPv4Address(value="10.0.0.1")
        objs = [
            ident,
            mal,
            ind,
            file,
            ip,
            stix.AttackPattern(name="ap", external_references=[{"source_name": "capec", "external_id": "CAPEC-1"}]),
            stix.Campaign(name="c", first_seen=TS, last_seen="2021-01-01T00:00:00Z"),
            stix.CourseOfAction(name="coa"),
            stix.Grouping(context="suspicious-activity", object_refs=[ind.id]),
            stix.Incident(name="inc"),
            stix.Infrastructure(name="inf", infrastructure_types=["botnet"]),
            stix.IntrusionSet(name="is", resource_level="team"),
            stix.Location(latitude=1.0, longitude=2.0, country="DE", region="europe"),
            stix.MalwareAnalysis(product="av", result="malicious", analysis_sco_refs=[file.id]),
            stix.Note(content="n", object_refs=[ind.id], lang="en"),
            stix.ObservedData(first_observed=TS, last_observed=TS, number_observed=1, object_refs=[ip.id]),
            stix.Opinion(opinion="agree", object_refs=[ind.id]),
            stix.Report(name="r", published=TS, object_refs=[ind.id], report_types=["threat-report"]),
            stix.ThreatActor(
                name="ta",
                threat_actor_types=["crime-syndicate"],
                roles=["agent"],
                sophistication="expert",
                primary_motivation="personal-gain",
            ),
            stix.Tool(name="t", tool_types=["remote-access"]),
            stix.Vulnerability(
                name="CVE-2020-1234", external_references=[{"source_name": "cve", "external_id": "CVE-2020-1234"}]
            ),
            stix.Relationship(ind, "indicates", mal),
            stix.Sighting(sighting_of_ref=ind.id, where_sighted_refs=[ident.id], first_seen=TS, last_seen=TS, count=3),
            stix.MarkingDefinition(definition_type="statement", definition={"statement": "c"}),
            stix.LanguageContent(object_ref=ind.id, object_modified=ind.modified, contents={"de": {"name": "x"}}),
            stix.ExtensionDefinition(
                created_by_ref=ident.id,
                name="e",
                schema="https://example.com/schema",
                version="1.0",
                extension_types=["property-extension"],
            ),
            stix.Artifact(url="https://example.com/a", hashes={"MD5": "d41d8cd98f00b204e9800998ecf8427e"}),
            stix.Artifact(payload_bin="aGVsbG8=", mime_type="text/plain"),
            stix.AutonomousSystem(number=15139),
            stix.Directory(path="/tmp", path_enc="UTF-8"),
            stix.DomainName(value="example.com"),
            stix.EmailAddress(value="a@example.com"),
            stix.EmailMessage(is_multipart=False, subject="hi", body="b", date=TS),
            stix.IPv6Address(value="::1"),
            stix.MACAddress(value="00:11:22:33:44:55"),
            stix.Mutex(name="m"),
            stix.NetworkTraffic(
                src_ref=ip.id,
                protocols=["tcp"],
                src_port=1,
                dst_port=2,
                start=TS,
                end="2021-01-01T00:00:00Z",
                is_active=False,
            ),
            stix.Process(pid=1, command_line="x"),
            stix.Software(name="w", cpe="cpe:2.3:a:microsoft:word:2000:*:*:*:*:*:*:*", languages=["en"], vendor="ms"),
            stix.URL(value="https://example.com/"),
            stix.UserAccount(user_id="1", account_login="root", account_type="unix"),
            stix.WindowsRegistryKey(key="HKEY_LOCAL_MACHINE\\System"),
            stix.X509Certificate(serial_number="01", validity_not_before=TS, validity_not_after="2030-01-01T00:00:00Z"),
        ]
        return [json.loads(obj.serialize()) for obj in objs]


WRONG: list[Any] = [5, "x", [], {}, None, True, [5], "", 1.5, [{}]]
BAD_TIMESTAMPS: list[Any] = [
    "2020-02-30T00:00:00.000Z",
    "2020-01-01T00:00:60.000Z",
    "2020-01-01T00:00:00.000Z\n",
    "2020-01-01",
    "0000-01-01T00:00:00.000Z",
    "2020-01-01T00:00:00.1234567Z",
    "2020-01-01T00:00:00Z",
    "1999-01-01T00:00:00.000Z",
    "2999-01-01T00:00:00.000Z",
]
EXTRAS: list[tuple[str, Any]] = [
    ("x_acme_thing", 1),
    ("acme_thing", "a"),
    ("Foo", 1),
    ("ab", 1),
    ("x" * 251, 1),
    ("severity", 1),
    ("foo_bin", "!!"),
    ("foo_hex", "zz"),
    ("x_list", []),
    ("x_null", None),
    ("lang", "en"),
    ("lang", "xx"),
    ("confidence", 101),
    ("labels", []),
    ("revoked", "yes"),
    ("created_by_ref", "indicator--" + str(uuid.UUID(int=1, version=4))),
    ("object_marking_refs", [TLP_WHITE]),
    ("object_marking_refs", ["indicator--" + str(uuid.UUID(int=2, version=4))]),
    ("cpe", "cpe:2.3:a:b"),
    ("cpe", 5),
    ("external_references", [{"source_name": "cve", "external_id": "CVE-20-1"}]),
    ("external_references", [{"source_name": "x", "url": "not a url"}]),
    ("external_references", [{"source_name": "x", "url": "https://example.com", "hashes": {"sha256": "x"}}]),
    ("external_references", [{"source_name": "x"}]),
    ("granular_markings", [{"marking_ref": TLP_WHITE, "selectors": ["type"]}]),
    ("granular_markings", [{"marking_ref": TLP_WHITE, "selectors": ["nonexistent"]}]),
    ("granular_markings", [{"marking_ref": TLP_WHITE, "selectors": ["id.[40]"]}]),
    ("extensions", {"x-foo-ext": {"a": 1}}),
    ("extensions", {"foo": {"a": 1}}),
    (
        "extensions",
        {"extension-definition--" + str(uuid.UUID(int=3, version=4)): {"extension_type": "property-extension"}},
    ),
    ("extensions", {"extension-definition--" + str(uuid.UUID(int=4, version=4)): {"extension_type": "bogus"}}),
    ("x_nested", [{"id": "a", "type": "b"}]),
    ("x_nested", [{"id": 5, "type": "b"}]),
    ("spec_version", "2.0"),
    ("spec_version", "2.2"),
    ("objects", {"0": {"type": "file", "name": "x"}}),
    ("defanged", "no"),
]


def mutations(base: dict[str, Any]) -> Iterator[Any]:
    """Systematic mutations of one valid object."""

    def variant(change: Callable[[dict[str, Any]], Any]) -> Any:
        obj = copy.deepcopy(base)
        result = change(obj)
        return obj if result is None else result

    for key, value in base.items():
        yield variant(lambda o, k=key: o.pop(k))
        for wrong in WRONG:
            yield variant(lambda o, k=key, w=wrong: o.__setitem__(k, copy.deepcopy(w)))
        if isinstance(value, str) and "T" in value and value.endswith("Z"):
            for bad in BAD_TIMESTAMPS:
                yield variant(lambda o, k=key, b=bad: o.__setitem__(k, b))
        if isinstance(value, str) and "--" in value:
            prefix, _, tail = value.partition("--")
            for bad in (
                f"{prefix}--{tail.upper()}",
                f"{prefix}--{tail}\n",
                f"identity--{tail}",
                f"{prefix}-{tail}",
                f"{prefix}--{uuid.UUID(int=0)}",
                f"{prefix.upper()}--{tail}",
                f"{prefix}--{{{tail}}}",
            ):
                yield variant(lambda o, k=key, b=bad: o.__setitem__(k, b))
        if isinstance(value, list) and value:
            yield variant(lambda o, k=key: o[k].append(o[k][0]))
            if isinstance(value[0], dict):
                for sub in list(value[0]):
                    yield variant(lambda o, k=key, s=sub: o[k][0].pop(s))
                    for wrong in WRONG[:5]:
                        yield variant(lambda o, k=key, s=sub, w=wrong: o[k][0].__setitem__(s, copy.deepcopy(w)))
        if isinstance(value, dict) and value:
            for sub in list(value):
                yield variant(lambda o, k=key, s=sub: o[k].pop(s))
                for wrong in WRONG[:5]:
                    yield variant(lambda o, k=key, s=sub, w=wrong: o[k].__setitem__(s, copy.deepcopy(w)))
            yield variant(lambda o, k=key: o[k].__setitem__("Bad Key", 1))
    for name, extra in EXTRAS:
        yield variant(lambda o, n=name, e=extra: o.__setitem__(n, copy.deepcopy(e)))
    for kind in ("x-custom", "custom", "core", "bundle", "timestamp", "properties", "Bad", "ab", "action", 5, ["x"]):
        yield variant(lambda o, t=kind: o.__setitem__("type", t))


PATTERNS = [
    "[file:hashes.'SHA-256' = 'abc']",
    "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
    "[file:hashes.md5 = 'x']",
    "[x-foo:bar = 'a']",
    "[ab:bar = 'c']",
    "[file:Name = 'x']",
    "[file:name = 'x'] AND [file:size = 5]",
    "[file:name = 'x' OR file:name = 'y']",
    "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '1.2.3.5'] WITHIN 5 SECONDS",
    "[file:name = 'a\\'b']",
    "[file:name MATCHES '^a']",
    "[file:x = 'a']",
    "[network-traffic:extensions.'http-request-ext'.request_method = 'get']",
    "[email-message:from_ref.value = 'a@b.c']",
    "[file:hashes[0] = 'x']",
    "[file:hashes[*] = 'x']",
    "[ipv4-addr:value = '1.2.3.4'",
    "ipv4-addr:value = '1.2.3.4'",
    "",
    "[file:and = 'x']",
    " [domain-name:value = 'x']",
    "[domain-name:value = 'x'] and [url:value = 'y']",
    "[x-acme-widget:p = 'x']",
    "[file:name = 'x'] WITHIN 5 SECONDS WITHIN 6 SECONDS",
    "[file:name = 'a\nb']",
    "[file:hashes.WHIRLPOOL = 'x']",
    "[mutex:name = 'x'] AND [mutex:name = 'y'] OR [mutex:name = 'z']",
]


def targeted_scenarios() -> list[Any]:
    """Odd corners: embedded observables, selectors, patterns, CPEs, TLP, bundles, nested objects, UUIDs."""
    out: list[Any] = []
    file_id, ip_id = f"file--{u5('f')}", f"ipv4-addr--{u5('ip')}"

    def observed(objects: Any) -> dict[str, Any]:
        return sdo("observed-data", first_observed=TS, last_observed=TS, number_observed=1, objects=objects)

    out += [
        observed({"0": {"type": "file", "id": file_id, "name": "x"}}),
        observed({"0": {"type": "file", "name": "x"}}),
        observed({}),
        observed({"0": 5}),
        observed({"0": {"name": "x"}}),
        observed({"0": {"type": "x-foo", "id": "x-foo--" + u4()}}),
        observed(
            {
                "0": {"type": "ipv4-addr", "id": ip_id, "value": "1.2.3.4"},
                "1": {
                    "type": "domain-name",
                    "id": f"domain-name--{u4()}",
                    "value": "x.com",
                    "resolves_to_refs": [ip_id],
                },
            }
        ),
        observed(
            {
                ip_id: {"type": "ipv4-addr", "id": ip_id, "value": "1.2.3.5"},
                "2": {
                    "type": "domain-name",
                    "id": f"domain-name--{u4()}",
                    "value": "x.com",
                    "resolves_to_refs": [ip_id],
                },
            }
        ),
        observed(
            {
                "0": {
                    "type": "network-traffic",
                    "id": f"network-traffic--{u4()}",
                    "src_ref": ip_id,
                    "protocols": ["tcp"],
                    "start": "2021-01-01T00:00:00Z",
                    "end": "2020-01-01T00:00:00Z",
                }
            }
        ),
        observed({"0": {"type": "file", "id": 5, "name": "x"}}),
        observed({"0": {"type": "indicator", "id": file_id}}),
        sco("file", name="x", objects={"a": {"id": "x", "type": "y"}}),
        sco("file", name="x", objects=[1]),
        sco("file", name="x", objects={"a": {"id": None, "type": "network-traffic"}}),
        sco("file", name="x", objects={"a": {"type": "y"}}),
    ]

    def language_content(contents: Any) -> dict[str, Any]:
        return sdo("language-content", object_ref=f"indicator--{u4()}", contents=contents)

    out += [
        language_content({"de": "x"}),
        language_content({"xx": {"name": "y"}}),
        language_content({"de": {"Bad": "y"}}),
        language_content({"de": {"name": "y"}, "en-US": {"description": "z"}}),
    ]
    marked = sdo(
        "malware",
        name="m",
        is_family=False,
        labels=["a", "b"],
        confidence=5,
        external_references=[{"source_name": "x", "external_id": "1"}],
        kill_chain_phases=[{"kill_chain_name": "k", "phase_name": "p"}],
    )
    for selector in (
        "external_references.[0].source_name",
        "external_references.[5]",
        "name.[0]",
        "confidence.[0]",
        "labels.[9]",
        "[0]",
        "kill_chain_phases.[0].phase_name",
        "name.x",
        "is_family.[0]",
        "labels.x",
    ):
        out.append(dict(marked, granular_markings=[{"marking_ref": TLP_WHITE, "selectors": [selector]}]))
    out += [indicator(p) for p in PATTERNS]
    out += [indicator(p, pattern_version="2.0") for p in PATTERNS[:8]]
    out += [indicator("junk", pattern_type="snort"), indicator(5)]
    for cpe in ("cpe:2.3:a:microsoft:word:2000:*:*:*:*:*:*:*", "cpe:/a:microsoft:word:2000", "foo", ""):
        out += [sco("software", name="w", cpe=cpe), sdo("identity", name="i", cpe=cpe)]
    for color, (tail, name) in TLP.items():
        tlp = {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": "marking-definition--" + tail,
            "created": "2017-01-20T00:00:00.000Z",
            "definition_type": "tlp",
            "name": name,
            "definition": {"tlp": color},
        }
        out += [tlp, dict(tlp, name="TLP:X"), dict(tlp, created=TS), dict(tlp, id="marking-definition--" + u4())]
    marking_id = "marking-definition--" + u4()
    statement = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": marking_id,
        "created": TS,
        "definition_type": "statement",
        "definition": {"statement": "s"},
    }
    out += [
        dict(statement, object_marking_refs=[marking_id]),
        dict(statement, granular_markings=[{"marking_ref": marking_id, "selectors": ["definition"]}]),
        {
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": marking_id,
            "created": TS,
            "extensions": {"extension-definition--" + u4(): {"extension_type": "property-extension", "rank": 5}},
        },
    ]
    plain = indicator("[file:name = 'x']")
    legacy = {k: v for k, v in plain.items() if k != "spec_version"}

    def bundle(objects: Any, **props: Any) -> dict[str, Any]:
        return {"type": "bundle", "id": "bundle--" + u4(), "objects": objects, **props}

    out += [
        bundle([plain]),
        bundle([legacy]),
        bundle([dict(legacy, labels=["malicious-activity"])]),
        bundle([plain], spec_version="2.0"),
        bundle({}),
        bundle(""),
        bundle("abc"),
        bundle(5),
        bundle([{"type": "indicator"}]),
        bundle([sco("ipv4-addr", value="1.2.3.4"), dict(plain, modified="2019-01-01T00:00:00.000Z")]),
        bundle([bundle([plain])]),
    ]
    out += [
        dict(plain, x_nested=[dict(plain, created="2020-02-30T00:00:00Z")]),
        dict(plain, x_nested=[{"id": "process--x", "type": "process"}]),
        dict(plain, x_nested=[{"id": "a", "type": ["x"]}]),
        dict(plain, x_nested=[{"id": "a", "type": "location", "country": 5}]),
        dict(plain, x_nested=[{"id": "a", "type": "x", "lang": "zz"}]),
    ]

    def traffic(**props: Any) -> dict[str, Any]:
        return sco("network-traffic", **{"protocols": ["tcp"], "src_ref": ip_id, **props})

    out += [
        traffic(start="2021-01-01T00:00:00Z", end="2020-01-01T00:00:00Z"),
        traffic(start="2021-01-01T00:00:00Z", end="2021-01-01T00:00:00.000Z"),
        traffic(start="2021-01-01T00:00:00.0000001Z", end="2021-01-01T00:00:00Z"),
        traffic(extensions={"socket-ext": {"address_family": "AF_INET", "options": {"SO_X": 1}}}),
        sco("artifact", url="https://x.com/a", hashes={"MD5": "d41d8cd98f00b204e9800998ecf8427e"}, mime_type="bogus/x"),
        sco("directory", path="/x", path_enc="bogus"),
        sco("file", name="x", name_enc="latin1"),
        sco("software", name="s", languages=["xx"]),
        sco("software", name="s", languages=["eng"]),
        {"type": "artifact", "spec_version": "2.1", "id": "artifact--" + u5("a"), "url": "https://x.com"},
        {"type": "process", "spec_version": "2.1", "id": "process--" + u5("p"), "pid": 1},
        {"type": "process", "spec_version": "2.1", "id": "process--" + u4() + "\n", "pid": 1},
        {"type": "user-account", "spec_version": "2.1", "id": "user-account--" + u5("u"), "display_name": "d"},
        sco(
            "file",
            name="x",
            extensions={"windows-pebinary-ext": {"pe_type": "exe", "time_date_stamp": "2020-02-30T00:00:00Z"}},
        ),
        sco("file", name="x", extensions={"x-foo-ext": {"time_date_stamp": 5}}),
        sco("file", name="x", hashes={"x" * 40: "a"}),
        sco(
            "x509-certificate",
            serial_number="1",
            x509_v3_extensions={"private_key_usage_period_not_before": "2020-02-30T00:00:00Z"},
        ),
        sco("process", pid=1, extensions={"windows-process-ext": {"priority": 5}}),
        sco("domain-name", value="EXAMPLE.com"),
        sco("email-addr", value="a@b"),
        sco("ipv4-addr", value="1.2.3.4\n"),
        sdo("relationship", relationship_type=["x"], source_ref=f"indicator--{u4()}", target_ref=f"malware--{u4()}"),
        sdo(
            "sighting",
            sighting_of_ref=f"indicator--{u4()}",
            first_seen="2021-01-01T00:00:00Z",
            last_seen="2020-01-01T00:00:00Z",
        ),
        sdo("extension-definition", name="e", schema="s", version="1", extension_types=5),
        sdo("location", country="de"),
        sdo("identity", name="i", sectors=[["x"]]),
        sdo("x-acme-widget", foo=1, extensions={"extension-definition--" + u4(): {"extension_type": "new-sdo"}}),
        sdo("x-acme-widget", extensions={"extension-definition--" + u4(): 5}),
        {"type": "x-acme-thing", "id": "x-acme-thing--" + u4(), "name": "n"},
        indicator("[file:name = 'x']", valid_from="2021-01-01T00:00:00Z", valid_until="2021-01-01T00:00:00Z"),
        sdo("note", content="c", object_refs=[f"indicator--{u4()}"], created="2020-01-01T00:00:00.0001Z", modified=TS),
        sdo("note", content="c", object_refs=[f"indicator--{u4()}"], created=TS, modified=TS + "\n"),
        sdo("vulnerability", name="v", external_references=[{"source_name": "cve", "external_id": "CVE-٢٠٢٠-1234"}]),
    ]
    return out


def base_corpus() -> list[Any]:
    return shipped_examples() + generated_objects()


# --------------------------------------------------------------------------------------------------
# differential tests
# --------------------------------------------------------------------------------------------------


def test_shipped_and_generated_objects_agree(validator: Validator) -> None:
    corpus = base_corpus()
    types = {obj["type"] for obj in corpus}
    assert {"indicator", "relationship", "sighting", "x509-certificate", "marking-definition", "bundle"} <= types
    accepted, _ = assert_same_verdicts(validator, corpus)
    assert accepted > 250


def test_systematic_mutations_agree(validator: Validator) -> None:
    bases: dict[str, dict[str, Any]] = {}
    for obj in base_corpus():
        bases.setdefault(obj["type"], obj)
    corpus = [mutated for base in bases.values() for mutated in mutations(base)]
    accepted, refused = assert_same_verdicts(validator, corpus)
    assert len(corpus) > 3000
    assert accepted > 300 and refused > 2000


def test_a_lazy_validator_says_what_the_eager_one_says(validator: Validator) -> None:
    """The checking process compiles each type's schema when it first sees the type (``lazy=True``): its
    messages must be the eager validator's, word for word, including for 2.0 bundles and unknown types."""
    bases: dict[str, dict[str, Any]] = {}
    corpus = base_corpus()
    for obj in corpus:
        bases.setdefault(obj["type"], obj)
    objs = [*corpus, *(m for base in bases.values() for m in itertools.islice(mutations(base), 40))]
    lazy = Validator(lazy=True)
    assert len(lazy._v21.validators._done) == 0  # type: ignore[attr-defined]  # nothing compiled yet
    assert [lazy.check(o) for o in objs] == [validator.check(o) for o in objs]
    assert 0 < len(lazy._v21.validators._done) < len(lazy._v21.validators)  # type: ignore[attr-defined]


def test_targeted_scenarios_agree(validator: Validator) -> None:
    accepted, refused = assert_same_verdicts(validator, targeted_scenarios())
    assert accepted > 40 and refused > 80


_ATOMS = st.sampled_from(
    [
        "2020-01-01T00:00:00.000Z",
        "2020-02-30T00:00:00Z",
        "indicator--" + str(uuid.UUID(int=7, version=4)),
        TLP_WHITE,
        "en",
        "xx",
        "0",
        "[file:name = 'x']",
        "stix",
        "2.1",
        "type",
        "id",
        "hashes",
        "objects",
        "SHA-256",
        "toplevel-property-extension",
        "x_custom",
        "",
        "A",
        "https://example.com",
    ]
)
_VALUES = _ATOMS | st.sampled_from([[], {}, None, 0, True, 1.5, ["en"], {"a": "b"}, [{"id": "a", "type": "b"}]])


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def randomly_mutated(draw: st.DrawFn) -> Any:
    obj = copy.deepcopy(draw(st.sampled_from(_HYPOTHESIS_BASES)))
    path = draw(st.sampled_from(list(_paths(obj))))
    if not path:
        obj[draw(_ATOMS)] = draw(_VALUES)
        return obj
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    action = draw(st.integers(0, 2))
    if action == 0 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == 1 and isinstance(parent[path[-1]], dict):
        parent[path[-1]][draw(_ATOMS)] = draw(_VALUES)
    else:
        parent[path[-1]] = draw(_VALUES)
    return obj


_HYPOTHESIS_BASES = generated_objects() + targeted_scenarios()[:40]


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(randomly_mutated())
def test_random_mutations_agree(obj: Any) -> None:
    validator = default_validator()
    assert reference_accepts(obj) == (validator.check(obj) == []), (
        json.dumps(obj, default=str)[:400],
        validator.check(obj),
    )


_P_TYPES = st.sampled_from(["file", "ipv4-addr", "x-foo", "x-foo-bar", "ab", "network-traffic", "a1-b2"])
_P_IDENTS = st.sampled_from(["name", "value", "hashes", "size", "_x", "x", "id", "x_custom", "extensions", "_"])
_P_KEYS = st.sampled_from(
    ["'SHA-256'", "'MD5'", "'md5'", "'sha-1'", "SSDEEP", "'x y'", "''", "'ntfs-ext'", "name", "whirlpool"]
)
_P_STRINGS = ["x", "", "d41d8cd98f00b204e9800998ecf8427e", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", "ü", "a\nb", "]"]
_P_VALUES = st.sampled_from(
    [f"'{s}'" for s in _P_STRINGS] + ["0", "5", "1024", "007", "-1", "+1", "1.5", "99999999999999999999"]
)


@st.composite
def near_simple_patterns(draw: st.DrawFn) -> str:
    observations = []
    for _ in range(draw(st.integers(1, 3))):
        comparisons = [
            f"{draw(_P_TYPES)}:{draw(_P_IDENTS)}{''.join('.' + k for k in draw(st.lists(_P_KEYS, max_size=2)))}"
            f"{draw(st.sampled_from(['=', ' = ', ' != ']))}{draw(_P_VALUES)}"
            for _ in range(draw(st.integers(1, 2)))
        ]
        observations.append("[" + draw(st.sampled_from([" AND ", " OR "])).join(comparisons) + "]")
    pattern = draw(st.sampled_from([" AND ", " OR "])).join(observations)
    if draw(st.booleans()):  # one small perturbation
        at = draw(st.integers(0, len(pattern)))
        noise = draw(st.sampled_from(["", " ", "'", "\\", "[", "]", "(", ".", ":", "A", "1", "\n"]))
        pattern = pattern[:at] + noise + pattern[at + draw(st.integers(0, 2)) :]
    return pattern


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(near_simple_patterns())
def test_fast_pattern_path_agrees_with_stix2patterns(pattern: str) -> None:
    """Patterns the ANTLR-free fast path accepts get exactly stix2patterns' verdict and inspection."""
    fast = validate_module._fast_pattern(pattern)
    if fast is None:
        return
    grammar_errors = run_validator(pattern, "2.1")
    fast_messages = validate_module._fast_pattern_messages(fast)
    assert bool(fast_messages) == bool(validate_module._slow_pattern_messages(pattern, True))
    if not grammar_errors:
        comparisons = Pattern(pattern).inspect().comparisons
        grouped: dict[str, list[tuple[list[Any], str]]] = {}
        for kind, path, literal in fast:
            grouped.setdefault(kind, []).append((path, literal))
        assert {k: [(list(p), v) for p, _op, v in items] for k, items in comparisons.items()} == grouped


# --------------------------------------------------------------------------------------------------
# messages and API
# --------------------------------------------------------------------------------------------------


def test_valid_objects_have_no_messages(validator: Validator) -> None:
    assert validator.check(indicator("[ipv4-addr:value = '10.0.0.1']")) == []
    assert validator.check({"type": "x-acme-thing", "id": "x-acme-thing--" + u4(), "name": "custom SCO"}) == []


def test_not_an_object(validator: Validator) -> None:
    assert validator.check([1, 2]) == ["an object must be a JSON object"]
    assert validator.check("indicator") == ["an object must be a JSON object"]
    assert validator.check({"type": "indicator"}) == ["the object has no 'id' property"]


def test_modified_before_created(validator: Validator) -> None:
    obj = indicator("[file:name = 'x']", created="2021-01-01T00:00:00.000Z", modified="2020-01-01T00:00:00.000Z")
    assert validator.check(obj) == ["'modified' must not be earlier than 'created'"]


def test_valid_until_not_after_valid_from(validator: Validator) -> None:
    obj = indicator("[file:name = 'x']", valid_from="2021-01-01T00:00:00Z", valid_until="2021-01-01T00:00:00Z")
    assert validator.check(obj) == ["'valid_until' must be later than 'valid_from'"]


def test_impossible_calendar_date(validator: Validator) -> None:
    messages = validator.check(indicator("[file:name = 'x']", valid_from="2021-02-30T00:00:00Z"))
    assert messages == ["'valid_from' '2021-02-30T00:00:00Z' is not a valid timestamp: day is out of range for month"]


def test_timestamp_format_and_precision(validator: Validator) -> None:
    messages = validator.check(indicator("[file:name = 'x']", created="2020-01-01", modified="2020-01-01T00:00:00Z"))
    assert any(m.startswith("'created' '2020-01-01' must be a timestamp") for m in messages)
    assert any("'modified'" in m and "millisecond precision" in m for m in messages)


def test_missing_required_property(validator: Validator) -> None:
    obj = indicator("[file:name = 'x']")
    del obj["valid_from"]
    assert validator.check(obj) == ["the object: required property 'valid_from' is missing"]


def test_wrong_type_names_property(validator: Validator) -> None:
    assert validator.check(indicator("[file:name = 'x']", name=5)) == ["'name' must be of type string, not an integer"]


def test_bad_pattern(validator: Validator) -> None:
    messages = validator.check(indicator("[file:name = "))
    assert len(messages) == 1
    assert messages[0].startswith("'pattern' is not a valid STIX pattern:")


def test_bad_hash_in_pattern(validator: Validator) -> None:
    messages = validator.check(indicator("[file:hashes.'SHA-256' = 'abc']"))
    assert messages == ["'pattern' is not a valid STIX pattern: 'abc' is not a valid SHA-256 hash"]


def test_pattern_object_type(validator: Validator) -> None:
    assert validator.check(indicator("[ab:value = 'x']")) == ["'pattern': 'ab' is not a valid observable type name"]


def test_custom_property_names(validator: Validator) -> None:
    obj = indicator("[file:name = 'x']", x_acme_score=3, acme_note="ok")
    assert validator.check(obj) == []  # custom properties need no x_ prefix, just a valid name
    messages = validator.check(indicator("[file:name = 'x']", BadName=1))
    assert messages == [
        "property 'BadName' is not allowed: custom property names must be 3-250 lowercase ASCII letters, digits "
        "or underscores"
    ]


def test_reserved_property(validator: Validator) -> None:
    messages = validator.check(indicator("[file:name = 'x']", severity="high"))
    assert messages == ["the object uses a reserved property ('severity', 'action', 'username' or 'phone_numbers')"]


def test_identifier_messages(validator: Validator) -> None:
    obj = indicator("[file:name = 'x']", created_by_ref="identity-1234")
    assert validator.check(obj) == [
        "'created_by_ref' 'identity-1234' must be an identifier of the form <object-type>--<UUID>"
    ]
    obj = indicator("[file:name = 'x']")
    obj["id"] = "malware--" + u4()
    assert validator.check(obj) == [f"'id' {obj['id']!r} must be an identifier starting with 'indicator--'"]


def test_language_code(validator: Validator) -> None:
    obj = sdo("note", content="c", object_refs=["indicator--" + u4()], lang="klingon")
    assert validator.check(obj) == ["'lang' 'klingon' is not a valid RFC 5646 language code"]


def test_tlp_marking_must_match_the_spec(validator: Validator) -> None:
    tail, name = TLP["green"]
    tlp = {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": "marking-definition--" + tail,
        "created": "2017-01-20T00:00:00.000Z",
        "definition_type": "tlp",
        "name": name,
        "definition": {"tlp": "green"},
    }
    assert validator.check(tlp) == []
    messages = validator.check(dict(tlp, name="TLP:GRÜN"))
    assert len(messages) == 1
    assert messages[0].startswith("the object does not match any of the allowed forms")


def test_selector_must_point_into_the_object(validator: Validator) -> None:
    obj = indicator("[file:name = 'x']", granular_markings=[{"marking_ref": TLP_WHITE, "selectors": ["nope"]}])
    assert validator.check(obj) == ["granular marking selector 'nope' is invalid: 'nope' is not a property"]


def test_observed_data_embedded_observables_need_ids(validator: Validator) -> None:
    obj = sdo(
        "observed-data",
        first_observed=TS,
        last_observed=TS,
        number_observed=1,
        objects={"0": {"type": "file", "name": "x"}},
    )
    messages = validator.check(obj)
    assert "'objects.0': required property 'id' is missing" in messages


def test_uuid_version_for_processes(validator: Validator) -> None:
    obj = {"type": "process", "spec_version": "2.1", "id": "process--" + u5("p"), "pid": 1}
    assert validator.check(obj) == ["the 'id' of a process must use a UUIDv4"]


def test_messages_never_echo_huge_values(validator: Validator) -> None:
    huge = "A" * 100_000
    obj = indicator("[file:name = " + huge, created_by_ref=huge, lang=huge, name=[huge], x_custom=[huge, 1])
    obj["x" * 300] = huge
    messages = validator.check(obj)
    assert messages
    for message in messages:
        assert len(message) < 400, message
        assert "A" * 80 not in message


def test_nested_objects_are_checked_with_a_location(validator: Validator) -> None:
    inner = indicator("[file:name = 'x']", created="2021-01-01T00:00:00.000Z", modified="2020-01-01T00:00:00.000Z")
    obj = indicator("[file:name = 'x']", x_related=[inner])
    assert validator.check(obj) == ["x_related[0]: 'modified' must not be earlier than 'created'"]


def test_check_all_reports_one_problem_per_invalid_object(validator: Validator) -> None:
    good = indicator("[file:name = 'x']")
    bad = indicator("[file:name = 'x']", created="2021-01-01T00:00:00.000Z", lang="xx")
    no_id = {"type": "indicator", "id": 7}
    problems = validator.check_all([good, bad, "text", no_id])
    assert [p.index for p in problems] == [1, 2, 3]
    assert problems[0] == Problem(
        1, bad["id"], "'modified' must not be earlier than 'created'; 'lang' 'xx' is not a valid RFC 5646 language code"
    )
    assert problems[1] == Problem(2, None, "an object must be a JSON object")
    assert problems[2].object_id is None
    assert validator.check_all([good, good]) == []


def test_default_validator_is_shared() -> None:
    assert default_validator() is default_validator()


def test_hot_path_never_calls_stix2validator(validator: Validator, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("stix2validator was called")

    monkeypatch.setattr(stix2validator, "validate_instance", forbidden)
    monkeypatch.setattr(stix2validator.validator, "validate_instance", forbidden)
    typical = [*generated_objects(), indicator("[file:name = 'x']", created="2021-01-01T00:00:00.000Z")]
    problems = validator.check_all(typical)
    assert [p.index for p in problems] == [len(typical) - 1]
