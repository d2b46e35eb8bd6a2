"""Signed tree heads: C2SP ``tlog-checkpoint`` bodies signed as C2SP ``signed-note`` s with Ed25519.

A checkpoint is the note text ::

    <origin>\\n<tree size, decimal>\\n<base64 root hash>\\n[extension lines\\n…]

followed by a blank line and one signature line per signer, ``— <key name> base64(key id ‖ signature)``
(em dash U+2014, space). The key id is the first four bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key);
a verifier key is written ``<name>+<hex key id>+base64(0x01 ‖ public key)``, as Go's
``golang.org/x/mod/sumdb/note`` writes it, so the broker's checkpoints can be checked with the Go tools and its
witnesses. Signature lines from other keys are ignored (a witness may cosign); a signature line from the
expected key that does not verify rejects the note.

Specs: https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cutout.audit.errors import CheckpointFormatError, KeyFormatError, NoteFormatError, SignatureError
from cutout.audit.merkle import HASH_SIZE

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "VerifierKey",
    "format_checkpoint",
    "key_id",
    "open_note",
    "parse_and_verify",
    "parse_signer_key",
    "parse_unverified",
    "parse_verifier_key",
    "public_key_of",
    "sign_checkpoint",
    "sign_note",
    "signer_key",
    "verifier_key",
]

#: the signature type byte of Ed25519 in C2SP signed-note
ALG_ED25519 = 0x01
EM_DASH = "\u2014"
#: signature lines are ``— name base64`` (em dash, space)
SIG_PREFIX = EM_DASH + " "
#: notes longer than this are refused before parsing (a checkpoint is a few hundred bytes)
MAX_NOTE_BYTES = 64 * 1024
#: at most this many signature lines (Go's note package allows 100; the spec asks for at least 16)
MAX_SIGNATURES = 100
_MAX_SIZE = (1 << 63) - 1
_HEX8 = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 note verifier: key name, 4-byte key id and 32-byte public key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()}"


@dataclass(frozen=True)
class Checkpoint:
    """A parsed checkpoint: what the note text says, and the note itself."""

    origin: str
    size: int
    root: bytes
    #: extension lines (after the root), without their newlines
    extensions: tuple[str, ...]
    #: the signed note text (the checkpoint body, ending in a newline)
    body: str
    #: the whole signed note, signature lines included
    text: str


# -- keys ---------------------------------------------------------------------------------------------------------


def _check_name(name: str, what: str = "key name") -> None:
    if not name or any(ch.isspace() for ch in name) or "+" in name or any(ord(ch) < 0x20 for ch in name):
        raise KeyFormatError(f"{what} {name!r} must be non-empty, without spaces or '+'")


def key_id(key_name: str, public_key_bytes: bytes) -> bytes:
    """The 4-byte key id: SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]."""
    return hashlib.sha256(key_name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key_bytes).digest()[:4]


def public_key_of(private_key_bytes: bytes) -> bytes:
    """The raw 32-byte Ed25519 public key of a raw 32-byte private key (seed)."""
    return _private(private_key_bytes).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def verifier_key(key_name: str, public_key_bytes: bytes) -> str:
    """The verifier key string ``name+hex(key id)+base64(0x01 ‖ public key)`` to hand to relying parties."""
    _check_name(key_name)
    if len(public_key_bytes) != 32:
        raise KeyFormatError("an Ed25519 public key is 32 bytes")
    return str(VerifierKey(key_name, key_id(key_name, public_key_bytes), bytes(public_key_bytes)))


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse and check a verifier key string (name, hex key id matching the key, Ed25519 type, 32-byte key)."""
    name, _, rest = text.partition("+")
    hex_id, _, material = rest.partition("+")
    try:
        _check_name(name)
    except KeyFormatError as exc:
        raise KeyFormatError(f"malformed verifier key: {exc}") from None
    if not _HEX8.fullmatch(hex_id):
        raise KeyFormatError(f"malformed verifier key {name!r}: the key id must be 8 lowercase hex digits")
    raw = _b64(material)
    if raw is None or not raw:
        raise KeyFormatError(f"malformed verifier key {name!r}: the key is not base64")
    if raw[0] != ALG_ED25519:
        raise KeyFormatError(f"verifier key {name!r} is not an Ed25519 key (type byte {raw[0]:#04x})")
    if len(raw) != 33:
        raise KeyFormatError(f"verifier key {name!r}: an Ed25519 public key is 32 bytes, not {len(raw) - 1}")
    kid = bytes.fromhex(hex_id)
    if key_id(name, raw[1:]) != kid:
        raise KeyFormatError(f"verifier key {name!r}: key id {hex_id} does not match the key")
    return VerifierKey(name, kid, raw[1:])


def signer_key(key_name: str, private_key_bytes: bytes) -> str:
    """Go's signer key string ``PRIVATE+KEY+name+hex(key id)+base64(0x01 ‖ seed)`` (keep it secret)."""
    _check_name(key_name)
    pub = public_key_of(private_key_bytes)
    return (
        f"PRIVATE+KEY+{key_name}+{key_id(key_name, pub).hex()}+"
        + base64.b64encode(bytes([ALG_ED25519]) + private_key_bytes).decode()
    )


def parse_signer_key(text: str) -> tuple[str, bytes]:
    """``(key name, raw 32-byte private key)`` from a ``PRIVATE+KEY+…`` string, checking its key id."""
    prefix = "PRIVATE+KEY+"
    if not text.startswith(prefix):
        raise KeyFormatError("a signer key starts with PRIVATE+KEY+")
    name, _, rest = text[len(prefix) :].partition("+")
    hex_id, _, material = rest.partition("+")
    _check_name(name)
    raw = _b64(material)
    if not _HEX8.fullmatch(hex_id) or raw is None or len(raw) != 33 or raw[0] != ALG_ED25519:
        raise KeyFormatError(f"malformed signer key for {name!r}")
    if key_id(name, public_key_of(raw[1:])) != bytes.fromhex(hex_id):
        raise KeyFormatError(f"signer key {name!r}: key id {hex_id} does not match the key")
    return name, raw[1:]


def _private(private_key_bytes: bytes) -> Ed25519PrivateKey:
    if len(private_key_bytes) != 32:
        raise KeyFormatError("an Ed25519 private key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(private_key_bytes)


def _b64(text: str) -> bytes | None:
    """Strict standard base64 (RFC 4648 §4, padded); None if it is not."""
    if not text.isascii():
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


# -- signed notes ---------------------------------------------------------------------------------------------------


def _check_note_chars(text: str) -> None:
    for ch in text:
        if ch < " " and ch != "\n":
            raise NoteFormatError(f"malformed note: control character {ord(ch):#04x}")


def sign_note(text: str, private_key_bytes: bytes, key_name: str) -> str:
    """The signed note: ``text`` (which must end in a newline), a blank line, and one Ed25519 signature line."""
    _check_name(key_name)
    if not text.endswith("\n"):
        raise NoteFormatError("malformed note: the text must end in a newline")
    _check_note_chars(text)
    key = _private(private_key_bytes)
    kid = key_id(key_name, public_key_of(private_key_bytes))
    signature = key.sign(text.encode())
    return f"{text}\n{SIG_PREFIX}{key_name} {base64.b64encode(kid + signature).decode()}\n"


def _split_note(note: str | bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """The note text and its ``(key name, key id ‖ signature)`` lines; :class:`NoteFormatError` if malformed."""
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise NoteFormatError(f"malformed note: longer than {MAX_NOTE_BYTES} bytes")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteFormatError("malformed note: not UTF-8") from None
    elif len(note) > MAX_NOTE_BYTES:
        raise NoteFormatError(f"malformed note: longer than {MAX_NOTE_BYTES} characters")
    _check_note_chars(note)
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteFormatError("malformed note: no blank line between the text and the signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    if not block.endswith("\n"):
        raise NoteFormatError("malformed note: no signature lines, or the last one does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteFormatError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    sigs: list[tuple[str, bytes]] = []
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise NoteFormatError(f"malformed note: {line[:40]!r} is not a signature line")
        name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
        raw = _b64(b64)
        try:
            _check_name(name)
        except KeyFormatError:
            raise NoteFormatError(f"malformed note: bad key name {name!r} in a signature line") from None
        if raw is None or len(raw) < 5:
            raise NoteFormatError(f"malformed note: the signature of {name!r} is not base64 of a key id and signature")
        sigs.append((name, raw))
    return text, sigs


def open_note(note: str | bytes, key: str | VerifierKey) -> str:
    """The text of a signed note that carries a valid signature by ``key``.

    :class:`NoteFormatError` if the note is malformed; :class:`SignatureError` if no signature line is by this
    key (name and key id) or one that is does not verify. Lines by other keys are ignored."""
    vk = key if isinstance(key, VerifierKey) else parse_verifier_key(key)
    text, sigs = _split_note(note)
    public = Ed25519PublicKey.from_public_bytes(vk.public_key)
    verified = False
    for name, raw in sigs:
        if name != vk.name or raw[:4] != vk.key_id:
            continue
        try:
            public.verify(raw[4:], text.encode())
        except InvalidSignature:
            raise SignatureError(f"invalid signature for key {vk.name}+{vk.key_id.hex()}") from None
        verified = True
    if not verified:
        raise SignatureError(f"the note has no signature by key {vk.name}+{vk.key_id.hex()}")
    return text


# -- checkpoints --------------------------------------------------------------------------------------------------


def format_checkpoint(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    """The checkpoint body ``origin\\nsize\\nbase64(root)\\n`` plus extension lines."""
    if not origin or "\n" in origin:
        raise CheckpointFormatError("the checkpoint origin must be one non-empty line")
    _check_note_chars(origin)
    if not 0 <= size <= _MAX_SIZE:
        raise CheckpointFormatError(f"the tree size {size} is out of range")
    if len(root) != HASH_SIZE:
        raise CheckpointFormatError(f"the root hash is {HASH_SIZE} bytes")
    for ext in extensions:
        if not ext or "\n" in ext:
            raise CheckpointFormatError("extension lines must be non-empty single lines")
        _check_note_chars(ext)
    lines = [origin, str(size), base64.b64encode(root).decode(), *extensions]
    return "".join(line + "\n" for line in lines)


def sign_checkpoint(
    origin: str, size: int, root: bytes, private_key_bytes: bytes, key_name: str, extensions: Sequence[str] = ()
) -> str:
    """A signed checkpoint note for the tree of ``size`` leaves with ``root``, signed by ``key_name``'s key.

    The spec recommends the key name be the origin; both are given so a witness-style name can differ."""
    return sign_note(format_checkpoint(origin, size, root, extensions), private_key_bytes, key_name)


def _parse_body(body: str, note: str) -> Checkpoint:
    lines = body[:-1].split("\n") if body.endswith("\n") else []
    if len(lines) < 3:
        raise CheckpointFormatError("a checkpoint has at least three lines: origin, tree size, root hash")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise CheckpointFormatError("the checkpoint origin line is empty")
    if not _DECIMAL.fullmatch(size_text) or int(size_text) > _MAX_SIZE:
        raise CheckpointFormatError(f"the checkpoint tree size {size_text[:30]!r} is not a decimal number")
    root = _b64(root_text)
    if root is None or len(root) != HASH_SIZE or base64.b64encode(root).decode() != root_text:
        raise CheckpointFormatError(f"the checkpoint root {root_text[:60]!r} is not base64 of {HASH_SIZE} bytes")
    if any(not ext for ext in extensions):
        raise CheckpointFormatError("a checkpoint extension line is empty")
    return Checkpoint(origin, int(size_text), root, tuple(extensions), body, note)


def parse_unverified(note: str | bytes) -> Checkpoint:
    """Parse a signed checkpoint WITHOUT checking any signature (to read what it claims; never to trust it)."""
    body, _ = _split_note(note)
    text = note if isinstance(note, str) else note.decode("utf-8")
    return _parse_body(body, text)


def parse_and_verify(
    note_text: str | bytes, verifier_key: str | VerifierKey, *, origin: str | None = None
) -> Checkpoint:
    """The checkpoint in a signed note, after checking its signature by ``verifier_key`` (and its ``origin``).

    Raises :class:`KeyFormatError`, :class:`NoteFormatError`, :class:`SignatureError` or
    :class:`CheckpointFormatError` saying what is wrong."""
    body = open_note(note_text, verifier_key)
    text = note_text if isinstance(note_text, str) else note_text.decode("utf-8")
    checkpoint = _parse_body(body, text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointFormatError(f"the checkpoint is for origin {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
