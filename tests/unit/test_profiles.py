"""The per-type allow-lists of ``cutout.sanitize.profiles`` against STIX 2.1 and the stix2 library.

Two independent references are used: the stix2 library's v21 classes (always available) and the property
tables of the STIX 2.1 specification text (``CUTOUT_STIX_SPEC``, default ``../shared/specs/stix-v2.1.md``
beside the repository; the tests that need it are skipped when it is absent).
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import stix2.v21
from stix2.properties import (
    ListProperty,
    ReferenceProperty,
    StringProperty,
    TimestampProperty,
)

from cutout.sanitize.profiles import PROFILES, T, TypeProfile

# the spec text lives in shared/ beside the repository (as on developers' machines and in CI)
_DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "stix-v2.1.md"
SPEC_PATH = Path(os.environ.get("CUTOUT_STIX_SPEC", str(_DEFAULT_SPEC)))

SDOS = (
    "attack-pattern",
    "campaign",
    "course-of-action",
    "grouping",
    "identity",
    "incident",
    "indicator",
    "infrastructure",
    "intrusion-set",
    "location",
    "malware",
    "malware-analysis",
    "note",
    "observed-data",
    "opinion",
    "report",
    "threat-actor",
    "tool",
    "vulnerability",
)
SROS = ("relationship", "sighting")
SCOS = (
    "artifact",
    "autonomous-system",
    "directory",
    "domain-name",
    "email-addr",
    "email-message",
    "file",
    "ipv4-addr",
    "ipv6-addr",
    "mac-addr",
    "mutex",
    "network-traffic",
    "process",
    "software",
    "url",
    "user-account",
    "windows-registry-key",
    "x509-certificate",
)
META = ("language-content", "marking-definition", "extension-definition")
ALL_TYPES = (*SDOS, *SROS, *SCOS, *META)
CATEGORY = {
    **dict.fromkeys(SDOS, "sdo"),
    **dict.fromkeys(SROS, "sro"),
    **dict.fromkeys(SCOS, "sco"),
    **dict.fromkeys(META, "sdo"),
}
NOT_RELEASED = {"identity", "marking-definition", "extension-definition", "language-content", "artifact"}

#: §3.2 common properties (and the SCO ones): the engine treats them, profiles must not list them
COMMON = frozenset(
    {
        "type",
        "spec_version",
        "id",
        "created",
        "modified",
        "created_by_ref",
        "revoked",
        "confidence",
        "labels",
        "lang",
        "external_references",
        "object_marking_refs",
        "granular_markings",
        "extensions",
        "defanged",
    }
)

#: where the stix2 library's v21 classes and the spec's property tables differ (type-specific properties)
LIBRARY_ONLY = {"incident": {"kill_chain_phases"}}
SPEC_ONLY = {"course-of-action": {"action"}}  # RESERVED in §4.3, not modelled by stix2

#: where ``required`` deliberately differs from the "(required)" marks of the markdown spec text, and why
REQUIRED_ADDED = {
    # STIX 2.1 §4.11, its JSON schema and stix2 require is_family; the markdown table prints "(optional)"
    "malware": {"is_family"},
    # one of objects/object_refs must be present; objects is denied, so object_refs is needed
    "observed-data": {"object_refs"},
}
REQUIRED_REMOVED = {
    # the markdown table prints "(required)"; STIX 2.1's JSON schema and stix2 make name optional
    "grouping": {"name"},
}

#: properties the brief names explicitly as denied
MUST_BE_DENIED = {
    "opinion": {"authors"},
    "note": {"authors"},
    "identity": {"contact_information", "name"},
    "artifact": {"payload_bin", "url", "decryption_key", "encryption_algorithm"},
    "user-account": {"credential"},
    "email-message": {"raw_email_ref", "body_multipart", "additional_header_fields", "received_lines"},
    "observed-data": {"objects"},
}


# --- references ---


def _library_classes() -> dict[str, Any]:
    classes: dict[str, Any] = {**stix2.v21.OBJ_MAP, **stix2.v21.OBJ_MAP_OBSERVABLE}
    classes.pop("bundle", None)
    return classes


LIBRARY = _library_classes()


def _library_specific(type_: str) -> set[str]:
    return set(LIBRARY[type_]._properties) - COMMON


@dataclass(frozen=True)
class SpecType:
    """What the spec's property table of one object type says."""

    properties: Mapping[str, bool]  # property → marked "(required)"
    id_contributing: tuple[str, ...] | None  # None: the section has no "ID Contributing Properties"


_TABLE = re.compile(r"<table\b.*?</table>", re.S)
_ROW = re.compile(
    r"<td><strong>([a-z0-9_]+)</strong>\s*\(([^)]*)\)\s*</td>\s*<td>.*?</td>\s*<td>(.*?)</td>",
    re.S,
)
_IDC = re.compile(r"ID Contributing Properties</span></th>\s*</tr>\s*<tr>\s*<td>(.*?)</td>", re.S)
_TAGS = re.compile(r"<[^>]+>")


@cache
def _parse_spec(path: Path) -> dict[str, SpecType]:
    """Property tables of every top-level object type in the STIX 2.1 markdown (HTML tables)."""
    text = path.read_text(encoding="utf-8")
    found: dict[str, SpecType] = {}
    pending_idc: tuple[str, ...] | None = None
    for table in _TABLE.findall(text):
        idc = _IDC.search(table)
        if idc is not None:
            # the summary table comes just before the property table of the same object
            listed = re.split(r"<br>|<em>", idc.group(1))[0]
            pending_idc = tuple(re.findall(r"<strong>([a-z0-9_]+)</strong>", listed))
            continue
        rows = _ROW.findall(table)
        if not rows or rows[0][0] != "type":
            continue  # a nested type (extension, MIME part, ...) or another table
        described = html.unescape(_TAGS.sub("", rows[0][2]))
        m = re.search(r"MUST be ([a-z][a-z0-9-]*)", described)
        assert m is not None, described
        found[m.group(1)] = SpecType(
            properties={name: mark.strip().startswith("required") for name, mark, _ in rows},
            id_contributing=pending_idc,
        )
        pending_idc = None
    return found


@pytest.fixture(scope="module")
def spec() -> dict[str, SpecType]:
    if not SPEC_PATH.is_file():
        pytest.skip(f"STIX 2.1 specification text not found at {SPEC_PATH} (set CUTOUT_STIX_SPEC)")
    return _parse_spec(SPEC_PATH)


def _spec_specific(spec: Mapping[str, SpecType], type_: str) -> set[str]:
    return set(spec[type_].properties) - COMMON


def _all_listed(p: TypeProfile) -> set[str]:
    return set(p.properties) | set(p.extra)


# --- 1. every type has a profile ---


def test_every_stix_type_has_a_profile() -> None:
    assert set(PROFILES) == set(ALL_TYPES)
    assert len(ALL_TYPES) == 19 + 2 + 18 + 3


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_profile_identity_and_category(type_: str) -> None:
    p = PROFILES[type_]
    assert p.type == type_
    assert p.category == CATEGORY[type_]


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        PROFILES["x-custom"] = PROFILES["indicator"]  # type: ignore[index]
    for p in PROFILES.values():
        with pytest.raises(TypeError):
            p.properties["x_leak"] = T.KEEP  # type: ignore[index]
        with pytest.raises(TypeError):
            p.extra["x_leak"] = "no"  # type: ignore[index]
    assert isinstance(PROFILES, MappingProxyType)


def test_library_knows_the_same_types() -> None:
    assert set(LIBRARY) == set(ALL_TYPES)


def test_spec_knows_the_same_types(spec: dict[str, SpecType]) -> None:
    assert set(ALL_TYPES) <= set(spec)
    assert set(spec) - set(ALL_TYPES) <= {"bundle"}


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_released_flags(type_: str) -> None:
    p = PROFILES[type_]
    assert p.released is (type_ not in NOT_RELEASED)
    if not p.released:
        assert p.note, f"{type_}: an unreleased type must say why"


# --- 2. coverage: no spec property is silently forgotten ---


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_library_properties_are_all_decided(type_: str) -> None:
    p = PROFILES[type_]
    missing = _library_specific(type_) - _all_listed(p)
    assert not missing, f"{type_}: neither released nor denied: {sorted(missing)}"


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_spec_properties_are_all_decided(spec: dict[str, SpecType], type_: str) -> None:
    p = PROFILES[type_]
    missing = _spec_specific(spec, type_) - _all_listed(p)
    assert not missing, f"{type_}: neither released nor denied: {sorted(missing)}"


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_spec_and_library_agree(spec: dict[str, SpecType], type_: str) -> None:
    """Checks the parser and records every difference between the two references."""
    assert _spec_specific(spec, type_) - _library_specific(type_) == SPEC_ONLY.get(type_, set())
    assert _library_specific(type_) - _spec_specific(spec, type_) == LIBRARY_ONLY.get(type_, set())


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_no_invented_or_common_or_double_properties(type_: str) -> None:
    p = PROFILES[type_]
    known = _library_specific(type_) | SPEC_ONLY.get(type_, set())
    assert _all_listed(p) <= known, f"{type_}: not STIX 2.1 properties: {sorted(_all_listed(p) - known)}"
    assert not _all_listed(p) & COMMON, f"{type_}: common properties belong to the engine"
    assert not set(p.properties) & set(p.extra), f"{type_}: both released and denied"


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_every_denial_has_a_reason(type_: str) -> None:
    for name, why in PROFILES[type_].extra.items():
        assert isinstance(why, str)
        assert why.strip(), f"{type_}.{name}: denied without a reason"


@pytest.mark.parametrize(("type_", "denied"), sorted(MUST_BE_DENIED.items()))
def test_identifying_properties_are_denied(type_: str, denied: set[str]) -> None:
    p = PROFILES[type_]
    assert denied <= set(p.extra)
    assert not denied & set(p.properties)


def test_unreleased_types_release_nothing_identifying() -> None:
    assert not PROFILES["identity"].properties
    for type_ in ("marking-definition", "extension-definition", "language-content"):
        assert not PROFILES[type_].properties


# --- 3. required ---


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_required_properties_are_released(type_: str) -> None:
    p = PROFILES[type_]
    assert not p.required & COMMON
    if p.released:
        missing = p.required - set(p.properties)
        assert not missing, f"{type_}: required but not released: {sorted(missing)}"
    else:
        assert p.required <= _all_listed(p)


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_required_matches_the_spec(spec: dict[str, SpecType], type_: str) -> None:
    marked = {name for name, req in spec[type_].properties.items() if req} - COMMON
    expected = (marked | REQUIRED_ADDED.get(type_, set())) - REQUIRED_REMOVED.get(type_, set())
    assert PROFILES[type_].required == expected


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_required_covers_the_library(type_: str) -> None:
    lib_required = {n for n, prop in LIBRARY[type_]._properties.items() if prop.required} - COMMON
    assert lib_required <= PROFILES[type_].required


# --- 4. ID contributing properties ---


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_id_contributing_matches_the_library(type_: str) -> None:
    p = PROFILES[type_]
    lib = getattr(LIBRARY[type_], "_id_contributing_properties", None)
    if p.category != "sco":
        assert p.id_contributing == ()
        return
    assert lib is not None, f"{type_}: stix2 defines no ID contributing properties"
    # the order does not change the id (RFC 8785 sorts keys); stix2 orders file's differently from the spec
    assert sorted(p.id_contributing) == sorted(lib)
    assert len(set(p.id_contributing)) == len(p.id_contributing)


@pytest.mark.parametrize("type_", SCOS)
def test_id_contributing_matches_the_spec_in_order(spec: dict[str, SpecType], type_: str) -> None:
    assert spec[type_].id_contributing is not None
    assert PROFILES[type_].id_contributing == spec[type_].id_contributing


def test_id_contributing_examples() -> None:
    assert PROFILES["file"].id_contributing == ("hashes", "name", "extensions", "parent_directory_ref")
    assert PROFILES["process"].id_contributing == ()
    assert PROFILES["windows-registry-key"].id_contributing == ("key", "values")


# --- 5. treatments follow the kind of property ---


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_refs_are_refs(type_: str) -> None:
    for name, how in PROFILES[type_].properties.items():
        if name.endswith("_ref"):
            assert how is T.REF, f"{type_}.{name}"
        elif name.endswith("_refs"):
            assert how is T.REFS, f"{type_}.{name}"
        else:
            assert how not in (T.REF, T.REFS), f"{type_}.{name}"


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_treatments_fit_the_library_property_kinds(type_: str) -> None:
    props = LIBRARY[type_]._properties
    for name, how in PROFILES[type_].properties.items():
        prop = props[name]
        inner = prop.contained if isinstance(prop, ListProperty) else None
        is_timestamp = isinstance(prop, TimestampProperty)
        assert (how in (T.START, T.END)) == is_timestamp, f"{type_}.{name}: timestamps are START or END"
        assert (how is T.REF) == isinstance(prop, ReferenceProperty), f"{type_}.{name}"
        assert (how is T.REFS) == isinstance(inner, ReferenceProperty), f"{type_}.{name}"
        assert (how is T.KILL_CHAIN) == (name == "kill_chain_phases"), f"{type_}.{name}"
        if how is T.TEXT:
            assert type(prop) is StringProperty, f"{type_}.{name}: TEXT on a non-string"
        if how is T.TEXT_LIST:
            assert type(inner) is StringProperty, f"{type_}.{name}: TEXT_LIST on a non-string list"


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_every_timestamp_is_decided(type_: str) -> None:
    p = PROFILES[type_]
    for name, prop in LIBRARY[type_]._properties.items():
        if name in COMMON or not isinstance(prop, TimestampProperty):
            continue
        assert name in p.extra or p.properties[name] in (T.START, T.END), f"{type_}.{name}"


RANGES = {
    "campaign": ("first_seen", "last_seen"),
    "indicator": ("valid_from", "valid_until"),
    "infrastructure": ("first_seen", "last_seen"),
    "intrusion-set": ("first_seen", "last_seen"),
    "malware": ("first_seen", "last_seen"),
    "malware-analysis": ("analysis_started", "analysis_ended"),
    "observed-data": ("first_observed", "last_observed"),
    "threat-actor": ("first_seen", "last_seen"),
    "relationship": ("start_time", "stop_time"),
    "sighting": ("first_seen", "last_seen"),
    "network-traffic": ("start", "end"),
    "user-account": ("account_first_login", "account_last_login"),
    "x509-certificate": ("validity_not_before", "validity_not_after"),
}


@pytest.mark.parametrize(("type_", "bounds"), sorted(RANGES.items()))
def test_ranges_open_downwards_and_close_upwards(type_: str, bounds: tuple[str, str]) -> None:
    start, end = bounds
    assert PROFILES[type_].properties[start] is T.START
    assert PROFILES[type_].properties[end] is T.END


def test_a_few_treatments() -> None:
    indicator = PROFILES["indicator"].properties
    assert indicator["pattern"] is T.KEEP
    assert indicator["kill_chain_phases"] is T.KILL_CHAIN
    assert PROFILES["report"].properties["published"] is T.START
    assert PROFILES["process"].properties["created_time"] is T.START
    assert PROFILES["threat-actor"].properties["goals"] is T.TEXT_LIST
    assert PROFILES["sighting"].properties["summary"] is T.KEEP  # a boolean, not a summary text
    assert PROFILES["sighting"].properties["where_sighted_refs"] is T.REFS
    assert PROFILES["sighting"].properties["count"] is T.KEEP
