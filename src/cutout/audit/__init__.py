"""The audit record: every acceptance, release and party or agreement change, as salted commitments.

Each event is stored as RFC 8785 canonical JSON beside a random salt and the commitment
SHA-256(salt ‖ event); publishing commitments reveals nothing about who dealt with whom. (The Merkle tree,
signed checkpoints and receipts over these leaves are built on top of this table.)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from cutout.audit._jcs import dumps as canonical_json

__all__ = ["audit_row", "commitment"]


def commitment(salt: bytes, event: bytes) -> bytes:
    return hashlib.sha256(salt + event).digest()


def audit_row(kind: str, event: Mapping[str, Any], now: int) -> dict[str, Any]:
    """A row for the audit table: the event as canonical JSON, a fresh salt and its commitment."""
    body = canonical_json({"kind": kind, "at": now, **event})
    salt = os.urandom(16)
    return {"at": now, "kind": kind, "salt": salt, "commitment": commitment(salt, body), "event": body}
