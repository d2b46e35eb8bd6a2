"""A small signed audit log for the tests: rows as ``cutout.audit.audit_row`` makes them, and checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from cutout.audit import audit_row
from cutout.audit.checkpoint import public_key_of, sign_checkpoint, verifier_key
from cutout.audit.merkle import MerkleTree, leaf_hash
from cutout.audit.verify import LogEntry

ORIGIN = "exchange.example/audit"


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    text: str


class Log:
    """``n`` audit rows numbered from seq 1, and the broker key that signs checkpoints over them."""

    def __init__(self, n: int, key: bytes | None = None) -> None:
        self.key = key or Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        self.vkey = verifier_key(ORIGIN, public_key_of(self.key))
        self.entries: list[LogEntry] = []
        for seq in range(1, n + 1):
            row = audit_row(
                "release", {"object": f"indicator--{seq:04d}", "reader": f"party-{seq % 3}"}, 1_700_000_000 + seq
            )
            self.entries.append(LogEntry(seq, row["salt"], row["event"], row["commitment"]))

    def tree(self) -> MerkleTree:
        return MerkleTree([leaf_hash(e.commitment) for e in self.entries])

    def checkpoint(self, size: int, key: bytes | None = None) -> StoredCheckpoint:
        root = self.tree().root(size)
        return StoredCheckpoint(size, root, sign_checkpoint(ORIGIN, size, root, key or self.key, ORIGIN))

    def rewrite(self, seq: int, event: bytes) -> None:
        """Change an event AND its commitment consistently, as someone with database access could."""
        from cutout.audit import commitment

        i = next(i for i, e in enumerate(self.entries) if e.seq == seq)
        salt = self.entries[i].salt
        assert salt is not None
        self.entries[i] = self.entries[i]._replace(event=event, commitment=commitment(salt, event))
