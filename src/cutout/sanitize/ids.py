"""Identifiers of released objects: keyed per reader for SDOs/SROs, content-derived for SCOs (§3.4)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

__all__ = ["SCO_NAMESPACE", "keyed_id", "sco_id"]

SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
_HASH_PREFERENCE = ("MD5", "SHA-1", "SHA-256", "SHA-512")


def keyed_id(key: bytes, stix_type: str, *parts: str) -> str:
    """A UUIDv4-shaped id that only the broker's key links to ``parts``.

    Versions of one object keep one id for one reader; two readers' ids for the same object share nothing.
    The first 16 bytes of HMAC-SHA256(key, type ␟ parts), with the version and variant bits of a UUIDv4
    (what ``uuid.UUID(bytes=..., version=4)`` sets).
    """
    mac = _keyed(key).copy()
    mac.update("\x1f".join((stix_type, *parts)).encode())
    d = bytearray(mac.digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x40
    d[8] = (d[8] & 0x3F) | 0x80
    h = d.hex()
    return f"{stix_type}--{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    """The HMAC state after the key (copied for each id: the key's two hashing passes are done once)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _one_hash(hashes: Mapping[str, Any]) -> dict[str, Any]:
    for name in _HASH_PREFERENCE:
        if name in hashes:
            return {name: hashes[name]}
    first = next(iter(hashes))
    return {first: hashes[first]}


def sco_id(stix_type: str, obj: Mapping[str, Any], contributing: Sequence[str]) -> str | None:
    """The deterministic id of an SCO from its ID contributing properties (§3.4), or None if it has none."""
    values: dict[str, Any] = {}
    for key in contributing:
        if key in obj:
            value = obj[key]
            if key == "hashes" and isinstance(value, Mapping) and value:
                value = _one_hash(value)
            values[key] = value
    if not values:
        return None
    name = rfc8785.dumps(values).decode("utf-8")
    return f"{stix_type}--{uuid.uuid5(SCO_NAMESPACE, name)}"
