"""C2SP signed notes and tlog checkpoints, against published vectors.

Vectors (copied verbatim):

* ``PETER_*``, ``ENOCH_*``, ``TEXT``: golang/mod ``sumdb/note/note_test.go`` (commit
  02c991387e35f9e4c0a9b7ce137717055f8d716d) — Go's reference signed-note implementation: a signer key, its
  verifier key, and the exact note it produces (Ed25519 is deterministic, so signing must reproduce it byte
  for byte); also its malformed-note and mangled-key cases.
* ``SUMDB_KEY``: the Go checksum database's verifier key, golang/go ``src/cmd/go/internal/modfetch/key.go``
  (commit c674ce87c2e47699bb51e02885fb80519ecbfb27).
* ``SUMDB_CHECKPOINT``: a real checkpoint signed by sum.golang.org, from FiloSottile/litetlog
  ``cmd/litewitness/testdata/sumdb.txt`` (commit b7f81a1bc8094dbec15cbfb10ce69330c68cc52c).
* ``SPEC_CHECKPOINT``, ``SPEC_NOTE``: the examples of C2SP ``tlog-checkpoint.md`` (commit
  2793893976c835db049c194d8f2c4f946dcb70ba) and ``signed-note.md`` (commit
  055287621bf3cd13ff4394418a3e8efc2d5e8ed7); their keys are not published, so only their syntax is checked.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from cutout.audit.checkpoint import (
    format_checkpoint,
    key_id,
    open_note,
    parse_and_verify,
    parse_signer_key,
    parse_unverified,
    parse_verifier_key,
    public_key_of,
    sign_checkpoint,
    sign_note,
    signer_key,
    verifier_key,
)
from cutout.audit.errors import (
    AuditError,
    CheckpointFormatError,
    KeyFormatError,
    NoteFormatError,
    SignatureError,
)

PETER_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_KEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"

SUMDB_KEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINT = (
    "go.sum database tree\n"
    "35225469\n"
    "vt5T6GaLCXvyHFl9VUvvItR43XZxfLgftEcTyO3eJCQ=\n"
    "\n"
    "— sum.golang.org Az3grpukl5AXaVfYkLiDGORx/DN2nlcS5kZHR5uYOBV2KA2HgXpD+gu9HHONebHLAyaKbbTM75QTtPydhKCExixSfwQ=\n"
)

SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
SPEC_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)


def new_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


# -- Go's signed-note vectors ----------------------------------------------------------------------------------------


def test_go_signer_key_reproduces_the_go_note_byte_for_byte() -> None:
    name, seed = parse_signer_key(PETER_SIGNER)
    assert name == "PeterNeumann"
    assert sign_note(TEXT, seed, name) == TEXT + "\n" + PETER_SIG
    assert verifier_key(name, public_key_of(seed)) == PETER_KEY
    assert signer_key(name, seed) == PETER_SIGNER
    assert key_id(name, public_key_of(seed)).hex() == "c74f20a3"


def test_go_note_opens_with_either_key_and_ignores_the_other() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, PETER_KEY) == TEXT
    assert open_note(note, ENOCH_KEY) == TEXT
    assert open_note(note.encode(), PETER_KEY) == TEXT
    # duplicated signatures, and an unknown key's garbled one, are fine when one by the key verifies
    b = ENOCH_SIG.encode()
    garbled_enoch = (b[:60] + b"ABCD" + b[60:]).decode()
    assert open_note(TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + garbled_enoch, PETER_KEY) == TEXT


def test_go_note_with_a_bad_signature_by_the_key_is_rejected() -> None:
    b = PETER_SIG.encode()  # Go's peterSig[:60]+"ABCD"+peterSig[60:] counts bytes
    garbled = (b[:60] + b"ABCD" + b[60:]).decode()
    with pytest.raises(SignatureError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        open_note(TEXT + "\n" + garbled, PETER_KEY)


def test_go_note_without_the_keys_signature_is_rejected() -> None:
    with pytest.raises(SignatureError, match=r"no signature by key PeterNeumann\+c74f20a3"):
        open_note(TEXT + "\n" + ENOCH_SIG, PETER_KEY)
    with pytest.raises(SignatureError):  # Go: a misnamed signature is not the key's
        open_note(TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "CarmenSandiego"), PETER_KEY)
    with pytest.raises(SignatureError):  # and neither is one with another key id
        open_note(TEXT + "\n" + PETER_SIG.replace("x08g", "xxxx"), PETER_KEY)


@pytest.mark.parametrize(
    "note",
    [
        TEXT.encode(),
        (TEXT + "\n").encode(),
        (TEXT + "\n" + PETER_SIG[:-1]).encode(),
        ("\x01" + TEXT + "\n" + PETER_SIG).encode(),
        b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
        (TEXT + "\n" + "— Bad Name " + PETER_SIG.split(" ")[-1].rstrip("\n")).encode(),
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n").encode(),
        (TEXT + "\n" + PETER_SIG * 101).encode(),
    ],
)
def test_go_malformed_notes_are_rejected(note: bytes) -> None:
    with pytest.raises(NoteFormatError, match="malformed note"):
        open_note(note, PETER_KEY)


def test_go_mangled_verifier_keys_are_rejected() -> None:
    """TestNewVerifier: every proper substring and every one-byte change of the key must be refused."""
    assert parse_verifier_key(PETER_KEY).name == "PeterNeumann"
    b = PETER_KEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(KeyFormatError):
                    parse_verifier_key(b[i:j].decode())
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(KeyFormatError):
            parse_verifier_key(mangled.decode())
    # wrong key length and unknown algorithm, each with the key id adjusted to match
    with pytest.raises(KeyFormatError):
        parse_verifier_key("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    with pytest.raises(KeyFormatError):
        parse_verifier_key("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_go_mangled_signer_keys_are_rejected() -> None:
    b = PETER_SIGNER.encode()
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(KeyFormatError):
            parse_signer_key(mangled.decode())


# -- real and spec checkpoints ---------------------------------------------------------------------------------------


def test_real_sum_golang_org_checkpoint_verifies() -> None:
    cp = parse_and_verify(SUMDB_CHECKPOINT, SUMDB_KEY)
    assert cp.origin == "go.sum database tree"  # the key name (sum.golang.org) need not be the origin
    assert cp.size == 35225469
    assert cp.root == base64.b64decode("vt5T6GaLCXvyHFl9VUvvItR43XZxfLgftEcTyO3eJCQ=")
    assert cp.extensions == ()
    assert cp.text == SUMDB_CHECKPOINT
    assert parse_and_verify(SUMDB_CHECKPOINT, SUMDB_KEY, origin="go.sum database tree") == cp
    with pytest.raises(CheckpointFormatError, match=r"not 'example\.com/log'"):
        parse_and_verify(SUMDB_CHECKPOINT, SUMDB_KEY, origin="example.com/log")
    for forged in [
        SUMDB_CHECKPOINT.replace("35225469", "35225470"),
        SUMDB_CHECKPOINT.replace("vt5T6", "vt5T7"),
        SUMDB_CHECKPOINT.replace("go.sum database tree", "go.sum database tre3"),
    ]:
        with pytest.raises(SignatureError):
            parse_and_verify(forged, SUMDB_KEY)
    with pytest.raises(SignatureError):
        parse_and_verify(SUMDB_CHECKPOINT, PETER_KEY)


def test_spec_examples_parse() -> None:
    cp = parse_unverified(SPEC_CHECKPOINT)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    assert cp.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    # the signed-note example has an empty line inside its text: the last blank line separates the signatures
    with pytest.raises(SignatureError, match="no signature by key"):
        open_note(SPEC_NOTE, PETER_KEY)


# -- our own checkpoints ---------------------------------------------------------------------------------------------


def test_sign_and_verify_round_trip() -> None:
    key = new_key()
    root = hashlib.sha256(b"root").digest()
    note = sign_checkpoint("exchange.example/audit", 42, root, key, "exchange.example/audit")
    vkey = verifier_key("exchange.example/audit", public_key_of(key))
    cp = parse_and_verify(note, vkey, origin="exchange.example/audit")
    assert (cp.origin, cp.size, cp.root, cp.text) == ("exchange.example/audit", 42, root, note)
    assert cp.body == f"exchange.example/audit\n42\n{base64.b64encode(root).decode()}\n"
    assert note.startswith(cp.body + "\n— exchange.example/audit ")
    # with extension lines, and with a witness's cosignature appended (ignored)
    note = sign_checkpoint("o", 0, root, key, "k", extensions=["ext one", "ext two"])
    witness = sign_note(parse_unverified(note).body, new_key(), "witness.example")
    cosigned = note + witness.split("\n\n")[-1]
    cp = parse_and_verify(cosigned, verifier_key("k", public_key_of(key)))
    assert cp.extensions == ("ext one", "ext two")


def test_a_different_key_with_the_same_name_does_not_verify() -> None:
    key, other = new_key(), new_key()
    note = sign_checkpoint("o", 1, bytes(32), key, "k")
    with pytest.raises(SignatureError, match="no signature by key"):
        parse_and_verify(note, verifier_key("k", public_key_of(other)))


def test_a_key_id_collision_with_a_wrong_key_fails_as_invalid_signature() -> None:
    """A note whose line names our key and id but was signed by another key must be rejected, not ignored."""
    key, other = new_key(), new_key()
    good = sign_checkpoint("o", 1, bytes(32), key, "k")
    body = parse_unverified(good).body
    kid = key_id("k", public_key_of(key))
    forged_sig = Ed25519PrivateKey.from_private_bytes(other).sign(body.encode())
    forged = body + "\n— k " + base64.b64encode(kid + forged_sig).decode() + "\n"
    with pytest.raises(SignatureError, match="invalid signature"):
        parse_and_verify(forged, verifier_key("k", public_key_of(key)))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("o\n5\n", "at least three lines"),
        ("\n5\n" + base64.b64encode(bytes(32)).decode() + "\n", "origin line is empty"),
        ("o\n05\n" + base64.b64encode(bytes(32)).decode() + "\n", "not a decimal"),
        ("o\n-5\n" + base64.b64encode(bytes(32)).decode() + "\n", "not a decimal"),
        ("o\n0x5\n" + base64.b64encode(bytes(32)).decode() + "\n", "not a decimal"),
        ("o\n99999999999999999999\n" + base64.b64encode(bytes(32)).decode() + "\n", "not a decimal"),
        ("o\n5\n" + base64.b64encode(bytes(31)).decode() + "\n", "not base64 of 32 bytes"),
        ("o\n5\nnot base64!\n", "not base64 of 32 bytes"),
    ],
)
def test_malformed_checkpoint_bodies_are_rejected_even_when_signed(body: str, message: str) -> None:
    key = new_key()
    note = sign_note(body, key, "k")
    with pytest.raises(CheckpointFormatError, match=message):
        parse_and_verify(note, verifier_key("k", public_key_of(key)))


def test_bad_inputs_to_signing_are_refused() -> None:
    key = new_key()
    with pytest.raises(CheckpointFormatError):
        format_checkpoint("two\nlines", 1, bytes(32))
    with pytest.raises(CheckpointFormatError):
        format_checkpoint("o", -1, bytes(32))
    with pytest.raises(CheckpointFormatError):
        format_checkpoint("o", 1, bytes(31))
    with pytest.raises(CheckpointFormatError):
        format_checkpoint("o", 1, bytes(32), [""])
    with pytest.raises(KeyFormatError):
        sign_checkpoint("o", 1, bytes(32), key, "has space")
    with pytest.raises(KeyFormatError):
        sign_checkpoint("o", 1, bytes(32), key, "a+b")
    with pytest.raises(KeyFormatError):
        sign_checkpoint("o", 1, bytes(32), key[:31], "k")
    with pytest.raises(NoteFormatError):
        sign_note("no final newline", key, "k")
    with pytest.raises(KeyFormatError):
        verifier_key("k", bytes(31))


def test_every_audit_error_is_a_cutout_error() -> None:
    from cutout.errors import CutoutError

    assert issubclass(AuditError, CutoutError)
    assert AuditError.code == "audit-invalid"
