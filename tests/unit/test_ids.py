from __future__ import annotations

import hashlib
import hmac
import uuid

import stix2
from hypothesis import given, settings
from hypothesis import strategies as st

from cutout.sanitize.ids import keyed_id, sco_id
from cutout.sanitize.profiles import PROFILES


def test_keyed_ids_are_stable_per_reader_and_unlinkable() -> None:
    key = b"k" * 32
    a = keyed_id(key, "indicator", "intel", "2", "1", "indicator--x")
    assert a == keyed_id(key, "indicator", "intel", "2", "1", "indicator--x")
    assert a != keyed_id(key, "indicator", "intel", "3", "1", "indicator--x")
    assert a != keyed_id(b"j" * 32, "indicator", "intel", "2", "1", "indicator--x")
    assert uuid.UUID(a.split("--")[1]).version == 4


def test_sco_ids_match_the_stix2_library() -> None:
    cases = [
        stix2.IPv4Address(value="198.51.100.7"),
        stix2.DomainName(value="example.org"),
        stix2.File(name="a.exe", hashes={"SHA-256": "a" * 64, "MD5": "b" * 32}),
        stix2.URL(value="http://example.org/x"),
        stix2.EmailAddress(value="a@example.org"),
    ]
    for obj in cases:
        body = dict(obj)
        profile = PROFILES[body["type"]]
        assert sco_id(body["type"], body, profile.id_contributing) == body["id"]


def test_sco_without_contributing_properties() -> None:
    assert sco_id("process", {"pid": 4}, PROFILES["process"].id_contributing) is None


@settings(max_examples=300, deadline=None)
@given(
    key=st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=200)),
    stix_type=st.sampled_from(("indicator", "threat-actor", "note", "x-custom")),
    parts=st.lists(st.text(max_size=60), min_size=1, max_size=6),
)
def test_keyed_ids_are_the_uuid_module_s_v4_of_the_hmac(key: bytes, stix_type: str, parts: list[str]) -> None:
    """A keyed id is the UUIDv4 of HMAC-SHA256 (the hmac module's), for keys shorter and longer than SHA-256's
    block and for any text: a faster way to work it out must give the same ids, or every id released so far
    would change (docs/benchmarks.md, the twenty-third round, tried one)."""
    digest = hmac.new(key, "\x1f".join((stix_type, *parts)).encode(), hashlib.sha256).digest()
    assert keyed_id(key, stix_type, *parts) == f"{stix_type}--{uuid.UUID(bytes=digest[:16], version=4)}"


def test_a_keyed_id_released_before_is_the_same_now() -> None:
    """Fixed values, worked out with the code of the twenty-second round: a copy's id must never change."""
    assert keyed_id(b"k" * 32, "indicator", "intel", "2", "1", "indicator--x") == (
        "indicator--ddac387f-cad8-490d-9df7-aa93f3376a45"
    )
    assert keyed_id(b"k" * 100, "note", "no-route", "3", "", "x|y") == "note--e14f74e0-ba24-4209-a6cf-cf3abf39abf3"
