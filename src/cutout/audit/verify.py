"""Verify a whole audit log against its signed checkpoints, and say where it is wrong. No I/O.

:func:`verify_log` takes the audit rows in ``seq`` order and the stored checkpoints, and checks that

* the ``seq`` numbers run without gaps, repeats or reordering (from ``first_seq``);
* every commitment whose salt and event still exist equals SHA-256(salt ‖ event) — after retention destroys a
  salt (and maybe the event) only the commitment is left; the tree is built over commitments, so it still
  verifies, and those rows are counted as ``retired``;
* every checkpoint is signed by the broker's key and its root is the root of the log's first ``size`` entries;
* each checkpoint is consistent with the next one (an RFC 9162 consistency proof built from the log);
* given the tree's stored subtrees (``nodes``: what receipts' proofs are read from), that each within the log
  has the hash the log gives it, and that none is missing;

and returns a :class:`Report` whose ``problems`` name the entry (by ``seq``) or the checkpoint (by size).
It raises only for a malformed verifier key (a caller mistake, not a finding).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import NamedTuple, Protocol

from cutout.audit.checkpoint import Checkpoint, VerifierKey, parse_and_verify, parse_verifier_key
from cutout.audit.errors import AuditError
from cutout.audit.merkle import HASH_SIZE, TILE_LEVEL, MerkleTree, leaf_hash, verify_consistency

__all__ = ["CheckpointLike", "LogEntry", "Problem", "Report", "verify_log"]


class LogEntry(NamedTuple):
    """One audit row as the verifier needs it; ``salt`` and ``event`` are None once retention destroyed them."""

    seq: int
    salt: bytes | None
    event: bytes | None
    commitment: bytes


class CheckpointLike(Protocol):
    """A stored checkpoint: its size and root as stored beside it, and the signed note text."""

    @property
    def size(self) -> int: ...

    @property
    def root(self) -> bytes: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class Problem:
    """One thing found wrong. ``kind`` is one of:

    ``order``       entries out of order, or one ``seq`` more than once
    ``gap``         ``seq`` numbers missing
    ``commitment``  a commitment does not match its salt and event, or is not 32 bytes
    ``signature``   a checkpoint is malformed or not signed by the key (or for another origin)
    ``stored``      a checkpoint's stored size or root differ from its signed text
    ``size``        a checkpoint covers more entries than the log holds
    ``root``        a checkpoint's root is not the root of the log at its size
    ``fork``        two signed checkpoints cannot both be prefixes of one log
    ``node``        a stored subtree of the tree (which receipts are proven from) is wrong or missing
    ``truncated``   more problems than ``max_problems``; the rest were counted, not listed
    """

    kind: str
    message: str
    #: the entry it is about, if one
    seq: int | None = None
    #: the checkpoint size it is about, if one (for ``fork``: the smaller one)
    size: int | None = None
    #: for ``fork``: the larger checkpoint size
    other_size: int | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Report:
    """The outcome of :func:`verify_log`."""

    #: number of entries (the tree size of the log as stored)
    entries: int
    #: entries whose commitment was recomputed from salt and event
    commitments_checked: int
    #: entries whose salt or event retention destroyed: only the commitment is left
    retired: int
    #: checkpoints given, and those with a valid signature whose root matches the log
    checkpoints: int
    checkpoints_verified: int
    #: the largest checkpoint size that verified (entries past it are not yet signed for)
    covered: int
    #: the root of the whole log as stored
    root: bytes
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = (
            f"{self.entries} entries ({self.commitments_checked} commitments checked, {self.retired} retired), "
            f"{self.checkpoints_verified}/{self.checkpoints} checkpoints verified, signed up to size {self.covered}"
        )
        if self.ok:
            return f"OK: {head}"
        return "\n".join([f"FAILED: {head}", *(f"  {p.message}" for p in self.problems)])


def _span(seqs: Sequence[int], lo: int, hi: int) -> str:
    """Leaves [lo, hi) named by their seq numbers."""
    if hi - lo == 1:
        return f"entry {seqs[lo]}"
    return f"entries {seqs[lo]}–{seqs[hi - 1]}"


def _seq_problems(seqs: Sequence[int], first_seq: int | None, allow_gaps: bool) -> list[Problem]:
    problems: list[Problem] = []
    for prev, seq in pairwise(seqs):
        if seq < prev:
            problems.append(Problem("order", f"entries out of order at seq {seq}: it comes after seq {prev}", seq=seq))
    for seq, count in sorted(Counter(seqs).items()):
        if count > 1:
            problems.append(Problem("order", f"entry {seq} appears {count} times", seq=seq))
    if allow_gaps or not seqs:
        return problems
    present = sorted(set(seqs))
    if first_seq is not None and present[0] > first_seq:
        missing = f"seq {first_seq}" if present[0] - 1 == first_seq else f"seqs {first_seq}–{present[0] - 1}"
        problems.append(Problem("gap", f"gap at {missing}: the log starts at seq {present[0]}", seq=first_seq))
    for prev, seq in pairwise(present):
        if seq > prev + 1:
            missing = f"seq {prev + 1}" if seq - 1 == prev + 1 else f"seqs {prev + 1}–{seq - 1}"
            problems.append(
                Problem("gap", f"gap at {missing}: no entry between seq {prev} and seq {seq}", seq=prev + 1)
            )
    return problems


def verify_log(
    entries: Iterable[tuple[int, bytes | None, bytes | None, bytes]],
    checkpoints: Sequence[CheckpointLike],
    verifier_key: str | VerifierKey,
    *,
    origin: str | None = None,
    first_seq: int | None = 1,
    allow_gaps: bool = False,
    max_problems: int = 1000,
    nodes: Iterable[tuple[int, int, bytes]] | None = None,
) -> Report:
    """Check the audit log ``entries`` — ``(seq, salt | None, event | None, commitment)`` in stored ``seq``
    order — against the signed ``checkpoints``; see the module docstring. ``origin``, if given, must be every
    checkpoint's origin. ``first_seq`` is the seq the log starts at (None: any); ``allow_gaps`` accepts holes
    in the seq numbering (the leaf index is the position in ``entries`` either way). ``nodes``, if given, are
    the stored subtrees ``(level, position, hash)`` of ``TILE_LEVEL`` or above, iterated after ``entries``; those
    past the log's end (appended since it was read) are not judged."""
    vk = verifier_key if isinstance(verifier_key, VerifierKey) else parse_verifier_key(verifier_key)
    sha256 = hashlib.sha256
    problems: list[Problem] = []
    seqs: list[int] = []
    leaves: list[bytes] = []
    checked = retired = 0
    for seq, salt, event, digest in entries:
        seqs.append(seq)
        if not isinstance(digest, bytes) or len(digest) != HASH_SIZE:
            problems.append(Problem("commitment", f"entry {seq}: the commitment is not {HASH_SIZE} bytes", seq=seq))
            digest = bytes(digest) if isinstance(digest, bytes | bytearray | memoryview) else b""
        elif salt is not None and event is not None:
            checked += 1
            if sha256(salt + event).digest() != digest:
                problems.append(Problem("commitment", f"entry {seq}: commitment does not match its event", seq=seq))
        else:
            retired += 1
        leaves.append(leaf_hash(digest))
    problems[:0] = _seq_problems(seqs, first_seq, allow_gaps)

    tree = MerkleTree(leaves)
    n = tree.size
    signed: list[Checkpoint] = []
    for stored in checkpoints:
        try:
            cp = parse_and_verify(stored.text, vk, origin=origin)
        except AuditError as exc:
            problems.append(Problem("signature", f"checkpoint at size {stored.size}: {exc}", size=stored.size))
            continue
        if cp.size != stored.size or cp.root != stored.root:
            problems.append(
                Problem(
                    "stored",
                    f"checkpoint at size {stored.size}: the stored size and root differ from its signed text "
                    f"(which says size {cp.size})",
                    size=stored.size,
                )
            )
        signed.append(cp)

    # each checkpoint against the log; where one fails, the change lies after the last one that matched
    signed.sort(key=lambda c: (c.size, c.root))
    matches: dict[tuple[int, bytes], bool] = {}
    last_good = 0
    for cp in signed:
        if (cp.size, cp.root) in matches:
            continue
        if cp.size > n:
            tail = f"after seq {seqs[-1]} " if seqs else ""
            problems.append(
                Problem(
                    "size",
                    f"checkpoint at size {cp.size}: the log has only {n} entries; entries {tail}are missing",
                    size=cp.size,
                )
            )
            matches[cp.size, cp.root] = False
        elif tree.root(cp.size) != cp.root:
            where = f"; the log differs within {_span(seqs, last_good, cp.size)}" if cp.size > last_good else ""
            problems.append(
                Problem("root", f"checkpoint at size {cp.size}: root differs from the log{where}", size=cp.size)
            )
            matches[cp.size, cp.root] = False
        else:
            matches[cp.size, cp.root] = True
            last_good = cp.size

    # each checkpoint against the next: a consistency proof from the log, when the log matches the later one
    distinct = [
        cp for i, cp in enumerate(signed) if i == 0 or (cp.size, cp.root) != (signed[i - 1].size, signed[i - 1].root)
    ]
    for a, b in pairwise(distinct):
        if a.size == b.size:
            problems.append(
                Problem(
                    "fork",
                    f"checkpoints at sizes {a.size} and {b.size} fork: the same size with different roots",
                    size=a.size,
                    other_size=b.size,
                )
            )
        elif matches[b.size, b.root]:
            proof = tree.consistency_proof(a.size, b.size)
            if not verify_consistency(a.size, b.size, a.root, b.root, proof):
                problems.append(
                    Problem(
                        "fork",
                        f"checkpoints at sizes {a.size} and {b.size} fork: the log matches size {b.size}, "
                        f"and the tree signed at size {a.size} is not a prefix of it",
                        size=a.size,
                        other_size=b.size,
                    )
                )

    if nodes is not None:
        problems.extend(_node_problems(tree, nodes, seqs))

    if len(problems) > max_problems:
        extra = len(problems) - max_problems
        problems = [*problems[:max_problems], Problem("truncated", f"… and {extra} more problems")]
    return Report(
        entries=n,
        commitments_checked=checked,
        retired=retired,
        checkpoints=len(checkpoints),
        checkpoints_verified=sum(1 for cp in signed if matches.get((cp.size, cp.root))),
        covered=last_good,
        root=tree.root(),
        problems=tuple(problems),
    )


def _node_problems(tree: MerkleTree, nodes: Iterable[tuple[int, int, bytes]], seqs: Sequence[int]) -> list[Problem]:
    """The stored subtrees within the log that differ from it, and those missing."""
    n = tree.size
    problems: list[Problem] = []
    seen: set[tuple[int, int]] = set()
    for level, position, h in nodes:
        lo, hi = position << level, (position + 1) << level
        if level < TILE_LEVEL or hi > n:
            continue
        seen.add((level, position))
        if h != tree.subtree(level, position):
            problems.append(
                Problem(
                    "node",
                    f"the stored tree node over {_span(seqs, lo, hi)} is not the log's: receipts proven through "
                    "it would not verify",
                    seq=seqs[lo],
                )
            )
    missing = [(lv, p) for lv in range(TILE_LEVEL, n.bit_length()) for p in range(n >> lv) if (lv, p) not in seen]
    if missing:
        lv, p = missing[0]
        problems.append(
            Problem(
                "node",
                f"{len(missing)} stored tree nodes are missing, the first over {_span(seqs, p << lv, (p + 1) << lv)}:"
                " receipts of those entries cannot be proven",
                seq=seqs[p << lv],
            )
        )
    return problems
