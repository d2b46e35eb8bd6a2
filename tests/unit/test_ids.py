from __future__ import annotations

import uuid

import stix2

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


def test_keyed_ids_are_the_uuid_module_s_v4_of_the_hmac() -> None:
    import hashlib
    import hmac
    import os

    for _ in range(200):
        key = os.urandom(32)
        parts = ("intel", str(int.from_bytes(os.urandom(2))), "7", f"indicator--{uuid.uuid4()}")
        digest = hmac.new(key, "\x1f".join(("indicator", *parts)).encode(), hashlib.sha256).digest()
        assert keyed_id(key, "indicator", *parts) == f"indicator--{uuid.UUID(bytes=digest[:16], version=4)}"
