"""The errors of the tamper-evident log (tree, proofs, signed checkpoints, receipts).

They sit under :class:`cutout.errors.CutoutError` (code ``audit-invalid``), so the CLI and the API report them
like any other cutout error, but they live here so the audit core stays one self-contained package::

    AuditError                  something about the tamper-evident log is wrong
    ├── TreeError               a Merkle tree function was called with impossible arguments (index ≥ size, …)
    ├── ProofError              an inclusion or consistency proof does not verify
    ├── KeyFormatError          a verifier or signer key string is malformed
    ├── NoteFormatError         a signed note is malformed (C2SP signed-note syntax)
    ├── SignatureError          a note has no valid signature by the expected key, or a bad one
    ├── CheckpointFormatError   the note text is not a C2SP tlog-checkpoint (origin, size, root)
    └── ReceiptError            a receipt is malformed or does not verify (``field`` names the culprit)

Verifying a whole log (``cutout.audit.verify.verify_log``) does not raise for what it finds: problems come back
as data in its report.
"""

from __future__ import annotations

from cutout.errors import CutoutError

__all__ = [
    "AuditError",
    "CheckpointFormatError",
    "KeyFormatError",
    "NoteFormatError",
    "ProofError",
    "ReceiptError",
    "SignatureError",
    "TreeError",
]


class AuditError(CutoutError):
    """Base of every error of the tamper-evident log."""

    code = "audit-invalid"
    title = "Audit log verification failed"


class TreeError(AuditError, ValueError):
    """A tree function was asked for something impossible (an index past the end, a size larger than the tree)."""


class ProofError(AuditError):
    """An inclusion or consistency proof does not verify."""


class KeyFormatError(AuditError, ValueError):
    """A verifier key (``name+keyid+base64``) or signer key string is malformed or inconsistent."""


class NoteFormatError(AuditError):
    """A signed note does not follow the C2SP signed-note syntax."""


class SignatureError(AuditError):
    """A signed note carries no valid signature by the expected key (or carries an invalid one)."""


class CheckpointFormatError(AuditError):
    """A note's text is not a well-formed C2SP tlog-checkpoint body."""


class ReceiptError(AuditError):
    """A receipt is malformed or does not verify; ``field`` names the receipt field at fault, if one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
