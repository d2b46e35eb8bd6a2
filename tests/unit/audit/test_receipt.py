"""Receipts verify offline with only the receipt and the verifier key, and fail when anything is altered."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from cutout.audit.checkpoint import public_key_of, sign_checkpoint, verifier_key
from cutout.audit.errors import ReceiptError
from cutout.audit.receipt import RECEIPT_FORMAT, make_receipt, verify_receipt
from tests.unit.audit._log import ORIGIN, Log

LOG = Log(23)
TREE = LOG.tree()
CHECKPOINT = LOG.checkpoint(23).text
INDEX = 16  # seq 17


def receipt_for(index: int = INDEX, log: Log = LOG, checkpoint: str = CHECKPOINT) -> str:
    entry = log.entries[index]
    assert entry.salt is not None and entry.event is not None
    return make_receipt(
        event=entry.event,
        salt=entry.salt,
        leaf_index=index,
        inclusion_proof=log.tree().inclusion_proof(index, len(log.entries)),
        checkpoint=checkpoint,
    )


def altered(receipt: str, **changes: Any) -> str:
    data = json.loads(receipt)
    data.update(changes)
    return json.dumps(data)


def flip_b64(value: str, byte: int = 0) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[byte % len(raw)] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_a_receipt_verifies_with_only_itself_and_the_verifier_key() -> None:
    receipt = receipt_for()
    verified = verify_receipt(receipt, LOG.vkey)
    entry = LOG.entries[INDEX]
    assert verified.origin == ORIGIN
    assert verified.leaf_index == INDEX and verified.tree_size == 23
    assert verified.event == entry.event
    assert verified.event_data["object"] == "indicator--0017"
    assert verified.salt == entry.salt and verified.commitment == entry.commitment
    assert verified.root == TREE.root() == verified.checkpoint.root
    assert verify_receipt(receipt.encode(), LOG.vkey) == verified


def test_the_receipt_is_canonical_json_with_the_documented_fields() -> None:
    receipt = receipt_for()
    data = json.loads(receipt)
    assert rfc8785.dumps(data).decode() == receipt
    assert sorted(data) == sorted(
        ["format", "origin", "event", "salt", "leaf_index", "tree_size", "inclusion_proof", "checkpoint"]
    )
    assert data["format"] == RECEIPT_FORMAT
    assert data["event"] == LOG.entries[INDEX].event.decode()  # type: ignore[union-attr]
    assert data["checkpoint"] == CHECKPOINT


def test_every_leaf_of_several_tree_sizes_gets_a_verifying_receipt() -> None:
    for size in (1, 2, 5, 8, 13, 23):
        checkpoint = LOG.checkpoint(size).text
        for index in range(size):
            entry = LOG.entries[index]
            assert entry.salt is not None and entry.event is not None
            receipt = make_receipt(
                event=entry.event,
                salt=entry.salt,
                leaf_index=index,
                inclusion_proof=TREE.inclusion_proof(index, size),
                checkpoint=checkpoint,
            )
            assert verify_receipt(receipt, LOG.vkey).leaf_index == index


def test_a_receipt_cannot_be_issued_for_a_proof_that_does_not_match() -> None:
    entry = LOG.entries[INDEX]
    assert entry.salt is not None and entry.event is not None
    with pytest.raises(ReceiptError, match="does not lead"):
        make_receipt(
            event=entry.event,
            salt=entry.salt,
            leaf_index=INDEX + 1,
            inclusion_proof=TREE.inclusion_proof(INDEX),
            checkpoint=CHECKPOINT,
        )


RECEIPT = receipt_for()
DATA = json.loads(RECEIPT)
EVENT: str = DATA["event"]
PROOF: list[str] = DATA["inclusion_proof"]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"format": "cutout-receipt/2"}, "format", "unknown receipt format"),
        ({"origin": "other.example/audit"}, "origin", "the checkpoint is for origin"),
        ({"event": EVENT.replace("indicator--0017", "indicator--0018")}, "inclusion_proof", "does not lead"),
        ({"event": EVENT.replace("party-2", "party-1")}, "inclusion_proof", "does not lead"),
        ({"event": EVENT.replace(":", ": ", 1)}, "event", "not an RFC 8785 canonical JSON object"),
        ({"event": "[1,2]"}, "event", "canonical JSON object"),
        ({"salt": flip_b64(DATA["salt"])}, "inclusion_proof", "does not lead"),
        ({"salt": base64.b64encode(b"x" * 15).decode()}, "salt", "not base64 of 16 bytes"),
        ({"salt": DATA["salt"].rstrip("=")}, "salt", "not base64 of 16 bytes"),
        ({"leaf_index": INDEX + 1}, "inclusion_proof", "does not lead"),
        ({"leaf_index": INDEX - 1}, "inclusion_proof", "too short for leaf 15 of a tree of 23"),
        ({"leaf_index": INDEX + 2}, "inclusion_proof", "does not lead"),
        ({"leaf_index": 23}, "leaf_index", "not below tree_size"),
        ({"leaf_index": -1}, "leaf_index", "not a non-negative integer"),
        ({"leaf_index": 16.0}, "leaf_index", "not a non-negative integer"),
        ({"leaf_index": True}, "leaf_index", "not a non-negative integer"),
        ({"tree_size": 24}, "tree_size", "the checkpoint is for tree size 23"),
        ({"inclusion_proof": [flip_b64(PROOF[0]), *PROOF[1:]]}, "inclusion_proof", "does not lead"),
        ({"inclusion_proof": [*PROOF[:-1], flip_b64(PROOF[-1], 31)]}, "inclusion_proof", "does not lead"),
        ({"inclusion_proof": PROOF[:-1]}, "inclusion_proof", "too short"),
        ({"inclusion_proof": [*PROOF, PROOF[0]]}, "inclusion_proof", "too long"),
        ({"inclusion_proof": list(reversed(PROOF))}, "inclusion_proof", "does not lead"),
        ({"inclusion_proof": [PROOF[0][:-4], *PROOF[1:]]}, "inclusion_proof", "not base64 of 32 bytes"),
        ({"inclusion_proof": "nope"}, "inclusion_proof", "not a list"),
        ({"checkpoint": CHECKPOINT.replace("\n23\n", "\n24\n")}, "checkpoint", "does not verify"),
        (
            {
                "checkpoint": CHECKPOINT.replace(
                    base64.b64encode(TREE.root()).decode(), flip_b64(base64.b64encode(TREE.root()).decode())
                )
            },
            "checkpoint",
            "does not verify",
        ),
        (
            {"checkpoint": CHECKPOINT.replace(ORIGIN + "\n", "other.example/audit\n", 1)},
            "checkpoint",
            "does not verify",
        ),
        ({"checkpoint": CHECKPOINT[:-10] + "AAAAAAAAA\n"}, "checkpoint", "does not verify"),
        ({"checkpoint": ""}, "checkpoint", "not a non-empty string"),
        ({"extra": 1}, "extra", "unknown field 'extra'"),
    ],
)
def test_any_altered_field_fails_and_says_which(changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ReceiptError, match=message) as info:
        verify_receipt(altered(RECEIPT, **changes), LOG.vkey)
    assert info.value.field == field


def test_a_checkpoint_resigned_by_another_key_fails() -> None:
    other = Log(0)
    forged = sign_checkpoint(ORIGIN, 23, TREE.root(), other.key, ORIGIN)
    with pytest.raises(ReceiptError, match="no signature by key") as info:
        verify_receipt(altered(RECEIPT, checkpoint=forged), LOG.vkey)
    assert info.value.field == "checkpoint"
    with pytest.raises(ReceiptError, match="does not verify"):
        verify_receipt(RECEIPT, other.vkey)
    assert verify_receipt(altered(RECEIPT, checkpoint=forged), verifier_key(ORIGIN, public_key_of(other.key)))


def test_a_whole_second_log_cannot_vouch_for_the_first() -> None:
    """An attacker with another key builds a receipt from another log: the broker's key rejects it."""
    fake = Log(23)
    with pytest.raises(ReceiptError, match="does not verify"):
        verify_receipt(receipt_for(log=fake, checkpoint=fake.checkpoint(23).text), LOG.vkey)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1]", "not a JSON object"),
        (RECEIPT[:-1] + ',"salt":"AAAA"}', "appears twice"),
        ("{" + RECEIPT[1:].replace('"salt":', '"pepper":', 1), "unknown receipt format|has no 'salt'"),
    ],
)
def test_garbage_is_refused_with_a_reason(text: str | bytes, message: str) -> None:
    with pytest.raises(ReceiptError, match=message):
        verify_receipt(text, LOG.vkey)


def test_a_missing_field_is_named() -> None:
    data = json.loads(RECEIPT)
    del data["salt"]
    with pytest.raises(ReceiptError, match="has no 'salt' field") as info:
        verify_receipt(json.dumps(data), LOG.vkey)
    assert info.value.field == "salt"


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["event", "salt", "proof", "checkpoint"]), st.integers(0, 10_000), st.integers(0, 7))
def test_any_flipped_bit_of_the_proven_material_fails(part: str, where: int, bit: int) -> None:
    data = json.loads(RECEIPT)
    if part == "event":
        raw = bytearray(data["event"].encode())
        raw[where % len(raw)] ^= 1 << bit
        data["event"] = raw.decode("utf-8", "replace")
    elif part == "salt":
        raw = bytearray(base64.b64decode(data["salt"]))
        raw[where % len(raw)] ^= 1 << bit
        data["salt"] = base64.b64encode(bytes(raw)).decode()
    elif part == "proof":
        k = where % len(data["inclusion_proof"])
        raw = bytearray(base64.b64decode(data["inclusion_proof"][k]))
        raw[where % 32] ^= 1 << bit
        data["inclusion_proof"][k] = base64.b64encode(bytes(raw)).decode()
    else:
        body_len = data["checkpoint"].index("\n\n") + 1  # the signed text
        raw = bytearray(data["checkpoint"].encode())
        raw[where % body_len] ^= 1 << bit
        data["checkpoint"] = raw.decode("utf-8", "replace")
    with pytest.raises(ReceiptError):
        verify_receipt(json.dumps(data), LOG.vkey)
