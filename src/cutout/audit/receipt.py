"""Receipts: proof, checkable offline, that an event is in the broker's signed log.

A receipt is one JSON object (written as RFC 8785 canonical JSON)::

    {
      "format": "cutout-receipt/1",         the receipt format and its version
      "origin": "exchange.example/audit",   the log's origin (the checkpoint's first line)
      "event": "{\\"at\\":…,\\"kind\\":…}",     the audit event, as its exact RFC 8785 canonical JSON text
      "salt": "base64…",                    the event's 16-byte salt, base64
      "leaf_index": 17,                     the event's position in the log (0-based)
      "tree_size": 40,                      the size of the tree the proof and checkpoint are for
      "inclusion_proof": ["base64…", …],    the RFC 9162 audit path of the leaf, leaf side first
      "checkpoint": "exchange.example/…"    the signed checkpoint note (C2SP tlog-checkpoint + signed-note)
    }

Anyone holding the receipt and the broker's verifier key can check it without asking the broker:
commitment = SHA-256(salt ‖ event) → leaf hash = SHA-256(0x00 ‖ commitment) → root through the inclusion proof
→ equal to the checkpoint's root → the checkpoint is signed by the verifier key, for this origin and tree size.
Later checkpoints extend this one (consistency proofs), so the receipt stays good as the log grows.

The receipt shows its holder the event and salt; give it only to a party the event is about.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785

from cutout.audit import commitment
from cutout.audit.checkpoint import Checkpoint, VerifierKey, parse_and_verify, parse_unverified
from cutout.audit.errors import AuditError, ProofError, ReceiptError
from cutout.audit.merkle import HASH_SIZE, leaf_hash, root_from_inclusion_proof

__all__ = ["RECEIPT_FORMAT", "SALT_SIZE", "VerifiedReceipt", "make_receipt", "verify_receipt"]

RECEIPT_FORMAT = "cutout-receipt/1"
SALT_SIZE = 16
#: a receipt larger than this is refused before parsing (a real one is a few KB)
MAX_RECEIPT_BYTES = 1024 * 1024
_FIELDS = ("format", "origin", "event", "salt", "leaf_index", "tree_size", "inclusion_proof", "checkpoint")


@dataclass(frozen=True)
class VerifiedReceipt:
    """What a receipt proves, once verified."""

    origin: str
    #: the event's canonical JSON bytes, and the same parsed
    event: bytes
    event_data: dict[str, Any]
    salt: bytes
    commitment: bytes
    leaf_index: int
    tree_size: int
    root: bytes
    checkpoint: Checkpoint


def make_receipt(
    *, event: bytes, salt: bytes, leaf_index: int, inclusion_proof: Sequence[bytes], checkpoint: str
) -> str:
    """The receipt (canonical JSON text) for the audit event at ``leaf_index``, proven against ``checkpoint``.

    ``checkpoint`` is the signed note of the tree the proof is for; its origin and size go into the receipt.
    The proof is checked against the checkpoint's root before anything is issued (:class:`ReceiptError`)."""
    cp = parse_unverified(checkpoint)
    if len(salt) != SALT_SIZE:
        raise ReceiptError(f"the salt is {SALT_SIZE} bytes", "salt")
    leaf = leaf_hash(commitment(salt, event))
    try:
        ok = root_from_inclusion_proof(leaf, leaf_index, cp.size, inclusion_proof) == cp.root
    except ProofError as exc:
        raise ReceiptError(f"cannot issue a receipt: {exc}", "inclusion_proof") from exc
    if not ok:
        raise ReceiptError(
            "cannot issue a receipt: the proof does not lead to the checkpoint's root", "inclusion_proof"
        )
    receipt: dict[str, Any] = {
        "format": RECEIPT_FORMAT,
        "origin": cp.origin,
        "event": event.decode("utf-8"),
        "salt": base64.b64encode(salt).decode(),
        "leaf_index": leaf_index,
        "tree_size": cp.size,
        "inclusion_proof": [base64.b64encode(p).decode() for p in inclusion_proof],
        "checkpoint": checkpoint,
    }
    return rfc8785.dumps(receipt).decode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ReceiptError(f"receipt field {key!r} appears twice", key)
        out[key] = value
    return out


def _base64(value: object, field: str, size: int) -> bytes:
    if isinstance(value, str) and value.isascii():
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = None
        if raw is not None and len(raw) == size and base64.b64encode(raw).decode() == value:
            return raw
    raise ReceiptError(f"receipt field {field!r} is not base64 of {size} bytes", field.split("[")[0])


def _int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReceiptError(f"receipt field {field!r} is not a non-negative integer", field)
    return value


def _string(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ReceiptError(f"receipt field {field!r} is not a non-empty string", field)
    return value


def verify_receipt(receipt_json: bytes | str, verifier_key: str | VerifierKey) -> VerifiedReceipt:
    """Check a receipt with nothing but the broker's verifier key; :class:`ReceiptError` says what failed."""
    if len(receipt_json) > MAX_RECEIPT_BYTES:
        raise ReceiptError(f"the receipt is larger than {MAX_RECEIPT_BYTES} bytes")
    try:
        data = json.loads(receipt_json, object_pairs_hook=_no_duplicates)
    except ValueError as exc:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
        raise ReceiptError(f"the receipt is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReceiptError("the receipt is not a JSON object")
    if data.get("format") != RECEIPT_FORMAT:
        raise ReceiptError(f"unknown receipt format {data.get('format')!r} (expected {RECEIPT_FORMAT!r})", "format")
    for name in _FIELDS:
        if name not in data:
            raise ReceiptError(f"the receipt has no {name!r} field", name)
    for name in data:
        if name not in _FIELDS:
            raise ReceiptError(f"the receipt has an unknown field {name!r}", name)

    origin = _string(data["origin"], "origin")
    event_text = _string(data["event"], "event")
    salt = _base64(data["salt"], "salt", SALT_SIZE)
    leaf_index = _int(data["leaf_index"], "leaf_index")
    tree_size = _int(data["tree_size"], "tree_size")
    if leaf_index >= tree_size:
        raise ReceiptError(f"leaf_index {leaf_index} is not below tree_size {tree_size}", "leaf_index")
    raw_proof = data["inclusion_proof"]
    if not isinstance(raw_proof, list):
        raise ReceiptError("receipt field 'inclusion_proof' is not a list", "inclusion_proof")
    proof = [_base64(p, f"inclusion_proof[{i}]", HASH_SIZE) for i, p in enumerate(raw_proof)]
    note = _string(data["checkpoint"], "checkpoint")

    event = event_text.encode("utf-8")
    try:
        event_data = json.loads(event)
        canonical = rfc8785.dumps(event_data) == event
    except (ValueError, TypeError, rfc8785.CanonicalizationError):
        canonical = False
    if not canonical or not isinstance(event_data, dict):
        raise ReceiptError("receipt field 'event' is not an RFC 8785 canonical JSON object", "event")

    # the checkpoint: signed by the broker's key, for this origin and tree size
    try:
        cp = parse_and_verify(note, verifier_key)
    except AuditError as exc:
        raise ReceiptError(f"the receipt's checkpoint does not verify: {exc}", "checkpoint") from exc
    if cp.origin != origin:
        raise ReceiptError(f"the checkpoint is for origin {cp.origin!r}, the receipt says {origin!r}", "origin")
    if cp.size != tree_size:
        raise ReceiptError(f"the checkpoint is for tree size {cp.size}, the receipt says {tree_size}", "tree_size")

    # the event: committed, hashed into a leaf, and through the proof to the signed root
    digest = commitment(salt, event)
    try:
        computed = root_from_inclusion_proof(leaf_hash(digest), leaf_index, tree_size, proof)
    except ProofError as exc:
        raise ReceiptError(f"the inclusion proof is malformed: {exc}", "inclusion_proof") from exc
    if computed != cp.root:
        raise ReceiptError(
            f"the inclusion proof does not lead from the event to the checkpoint's root: the event, salt, "
            f"leaf index or proof was altered (leaf {leaf_index} of {tree_size})",
            "inclusion_proof",
        )
    return VerifiedReceipt(
        origin=origin,
        event=event,
        event_data=event_data,
        salt=salt,
        commitment=digest,
        leaf_index=leaf_index,
        tree_size=tree_size,
        root=cp.root,
        checkpoint=cp,
    )
