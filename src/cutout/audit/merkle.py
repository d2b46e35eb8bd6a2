"""RFC 9162 (RFC 6962) Merkle tree hashing, inclusion and consistency proofs. Pure functions, no I/O.

* leaf hash ``SHA-256(0x00 ‖ data)`` — in cutout the leaf data is an audit row's 32-byte commitment;
* node hash ``SHA-256(0x01 ‖ left ‖ right)``;
* the tree of ``n`` leaves splits at the largest power of two below ``n`` (RFC 9162 §2.1.1); the empty tree's
  root is ``SHA-256("")``.

Three ways in, for three uses:

``root``, ``inclusion_proof``, ``consistency_proof``
    stateless functions over a list of leaf hashes (O(n) time each, nothing kept);
:class:`MerkleTree`
    every perfect subtree hash of a log, packed per level (64 bytes a leaf): O(n) once, then any root or proof
    at any size in O(log² n) — for verifying a whole log against many checkpoints;
:class:`CompactRange`
    the O(log n) state of an append-only log: one hash per set bit of its size. Append a batch, get the new
    root — and, with :meth:`CompactRange.extend_with_proofs`, the inclusion proof of every new leaf in the new
    tree — without reloading the leaves already in the tree.

Verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency); the trivial cases it leaves out
(sizes equal, old size 0) behave like the transparency-dev/merkle Go implementation.

Internally the tree is built bottom-up, pairing neighbours and carrying an odd last node up unchanged; this
gives exactly the RFC's hashes (the split at the largest power of two below ``n`` is the same tree).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

from cutout.audit.errors import ProofError, TreeError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "TILE_LEVEL",
    "CompactRange",
    "MerkleTree",
    "Node",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_inclusion_proof",
    "tiled_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
#: the root of the empty tree: SHA-256 of the empty string
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 ‖ data)``: the hash of one log entry."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 ‖ left ‖ right)``: the hash of an interior node."""
    return _sha256(b"\x01" + left + right).digest()


# -- internals --------------------------------------------------------------------------------------------------


def _hashes(leaf_hashes: Sequence[bytes], what: str = "leaf hash") -> list[bytes]:
    """The hashes as a list, each checked to be 32 bytes (cheaply: one join for the common all-good case)."""
    hashes = list(leaf_hashes)
    try:
        ok = len(b"".join(hashes)) == HASH_SIZE * len(hashes)
    except TypeError:
        ok = False
    if not ok:
        for i, h in enumerate(hashes):
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise TreeError(f"{what} {i} is not {HASH_SIZE} bytes")
    return hashes


#: a batch this small is appended leaf by leaf by ``CompactRange.extend``
_FEW = 8


def _is_hash(h: object) -> bool:
    return isinstance(h, bytes) and len(h) == HASH_SIZE


def _pairs(nodes: list[bytes]) -> list[bytes]:
    """Hash neighbours pairwise (0‖1, 2‖3, …); an odd last node is left out (the caller decides what to do)."""
    it = iter(nodes)
    sha = _sha256
    return [sha(b"\x01" + a + b).digest() for a, b in zip(it, it, strict=False)]


def _root_of(hashes: list[bytes]) -> bytes:
    """The root over already-checked leaf hashes, one level at a time, carrying an odd last node up."""
    if not hashes:
        return EMPTY_ROOT
    level = hashes
    while len(level) > 1:
        up = _pairs(level)
        if len(level) & 1:
            up.append(level[-1])
        level = up
    return level[0]


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n`` ≥ 2): where RFC 9162 splits a tree of ``n`` leaves."""
    return 1 << ((n - 1).bit_length() - 1)


_SubtreeHash = Callable[[int, int], bytes]


def _inclusion_path(index: int, size: int, mth: _SubtreeHash) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]), leaf side first; ``mth(lo, hi)`` is MTH(D[lo:hi])."""
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(mth(lo + k, hi))
            hi = lo + k
        else:
            path.append(mth(lo, lo + k))
            lo += k
    path.reverse()
    return path


def _consistency_path(old_size: int, new_size: int, mth: _SubtreeHash) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(old_size, D[0:new_size]) for 0 < old_size < new_size."""
    tail: list[bytes] = []
    lo, hi, m, whole = 0, new_size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            tail.append(mth(lo + k, hi))
            hi = lo + k
        else:
            tail.append(mth(lo, lo + k))
            lo += k
            m -= k
            whole = False
    tail.reverse()
    return tail if whole else [mth(lo, hi), *tail]


class Node(NamedTuple):
    """A perfect subtree: the ``position``-th of those of ``2**level`` leaves (leaves ``position << level`` on)."""

    level: int
    position: int
    hash: bytes


#: the leaves of a tile: a proof needs stored nodes only of subtrees of at least ``1 << TILE_LEVEL`` leaves, and
#: computes the smaller ones from the leaves of at most two tiles (as C2SP tlog-tiles, whose tiles are 256 wide)
TILE_LEVEL = 8


def tiled_inclusion_proof(
    index: int,
    size: int,
    node: Callable[[int, int], bytes],
    tile: Callable[[int], Sequence[bytes]],
    tile_level: int = TILE_LEVEL,
) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves without the tree: ``node(level, position)``
    gives a perfect subtree's hash (``level`` at least ``tile_level``: a whole tile is a node too), ``tile(t)``
    the leaf hashes of tile ``t`` (leaves ``t << tile_level`` onwards, up to ``size`` at most). O(log n) nodes
    and at most two tiles, the leaf's own and the last, partial one: every subtree RFC 9162's recursion names
    starts at a multiple of the power of two at or above its size, so one smaller than a tile lies within one."""
    if not 0 <= index < size:
        raise TreeError(f"leaf index {index} is not in a tree of {size} leaves")
    width = 1 << tile_level
    tiles: dict[int, list[bytes]] = {}

    def mth(lo: int, hi: int) -> bytes:
        n = hi - lo
        if n >= width and n & (n - 1) == 0:
            return node(n.bit_length() - 1, lo >> (n.bit_length() - 1))
        if n > width:
            k = _split(n)
            return node_hash(mth(lo, lo + k), mth(lo + k, hi))
        t = lo >> tile_level
        if t not in tiles:
            tiles[t] = _hashes(tile(t), "tile leaf hash")
        leaves = tiles[t][lo - (t << tile_level) : hi - (t << tile_level)]
        if len(leaves) != n:
            raise TreeError(f"tile {t} holds {len(tiles[t])} leaves, too few for leaves {lo} to {hi - 1}")
        return _root_of(leaves)

    return _inclusion_path(index, size, mth)


# -- stateless functions ----------------------------------------------------------------------------------------


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (RFC 9162 MTH) of these leaf hashes; ``EMPTY_ROOT`` for none."""
    return bytes(_root_of(_hashes(leaf_hashes)))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of all ``leaf_hashes`` (leaf side first). O(n)."""
    hashes = _hashes(leaf_hashes)
    if not 0 <= index < len(hashes):
        raise TreeError(f"leaf index {index} is not in a tree of {len(hashes)} leaves")
    return _inclusion_path(index, len(hashes), lambda lo, hi: _root_of(hashes[lo:hi]))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree of the first ``old_size`` leaves is a prefix of the tree of all of them. O(n).

    Empty when ``old_size`` is 0 or the whole tree (nothing to prove)."""
    hashes = _hashes(leaf_hashes)
    if not 0 <= old_size <= len(hashes):
        raise TreeError(f"old size {old_size} is not between 0 and the tree size {len(hashes)}")
    if old_size in (0, len(hashes)):
        return []
    return _consistency_path(old_size, len(hashes), lambda lo, hi: _root_of(hashes[lo:hi]))


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that this inclusion proof leads to (RFC 9162 §2.1.3.2); :class:`ProofError` if it cannot be one."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of {size} leaves")
    if not _is_hash(leaf):
        raise ProofError(f"the leaf hash is not {HASH_SIZE} bytes")
    for i, p in enumerate(proof):
        if not _is_hash(p):
            raise ProofError(f"inclusion proof element {i} is not {HASH_SIZE} bytes")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"the inclusion proof is too long for leaf {index} of a tree of {size}")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"the inclusion proof is too short for leaf {index} of a tree of {size}")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows the leaf hash ``leaf`` at ``index`` in the tree of ``size`` leaves with ``root``."""
    try:
        return root_from_inclusion_proof(leaf, index, size, proof) == root
    except ProofError:
        return False


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree (``old_size``, ``old_root``) is a prefix of (``new_size``, ``new_root``).

    RFC 9162 §2.1.4.2; equal sizes need equal roots and an empty proof; old size 0 needs an empty proof."""
    if old_size < 0 or new_size < old_size:
        return False
    if not (_is_hash(old_root) and _is_hash(new_root) and all(_is_hash(p) for p in proof)):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old tree is a node of the new one
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


# -- a whole tree, kept --------------------------------------------------------------------------------------------


class MerkleTree:
    """Every perfect subtree hash of a log, packed 32 bytes apiece per level (about 64 bytes a leaf in all).

    Build once in O(n); then the root at any size and any inclusion or consistency proof cost O(log² n)."""

    __slots__ = ("_levels", "_size")

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        level = _hashes(leaf_hashes)
        self._size = len(level)
        self._levels: list[bytes] = []
        while level:
            self._levels.append(b"".join(level))
            level = _pairs(level)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self._size

    def subtree(self, level: int, position: int) -> bytes:
        """The hash of the perfect subtree over leaves ``position << level`` to ``((position + 1) << level) - 1``."""
        if level < 0 or position < 0 or (position + 1) << level > self._size:
            raise TreeError(f"no subtree at level {level}, position {position} in a tree of {self._size} leaves")
        return self._levels[level][position * HASH_SIZE : (position + 1) * HASH_SIZE]

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise TreeError(f"leaf index {index} is not in a tree of {self._size} leaves")
        return self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE]

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n & (n - 1) == 0 and lo & (n - 1) == 0:  # a perfect, aligned subtree: stored
            level = n.bit_length() - 1
            offset = (lo >> level) * HASH_SIZE
            return self._levels[level][offset : offset + HASH_SIZE]
        k = _split(n)
        return node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def _size_arg(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not 0 <= size <= self._size:
            raise TreeError(f"size {size} is not between 0 and the tree size {self._size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: all)."""
        n = self._size_arg(size)
        return self._mth(0, n) if n else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of the first ``size`` leaves (default: all)."""
        n = self._size_arg(size)
        if not 0 <= index < n:
            raise TreeError(f"leaf index {index} is not in a tree of {n} leaves")
        return _inclusion_path(index, n, self._mth)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The proof that the first ``old_size`` leaves' tree is a prefix of the first ``new_size`` leaves' tree."""
        n = self._size_arg(new_size)
        if not 0 <= old_size <= n:
            raise TreeError(f"old size {old_size} is not between 0 and the new size {n}")
        if old_size in (0, n):
            return []
        return _consistency_path(old_size, n, self._mth)


# -- the append-only state -------------------------------------------------------------------------------------------


class CompactRange:
    """The compact range [0, size) of a log: one perfect subtree hash per set bit of ``size``, largest first.

    That is all an appender needs to keep (at most 64 hashes): :meth:`extend` a batch of leaf hashes, read the
    new :meth:`root`, store :meth:`to_bytes` beside the size. :meth:`extend_with_proofs` also returns each new
    leaf's inclusion proof in the new tree, so receipts can be issued in the same transaction."""

    __slots__ = ("_nodes", "_size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise TreeError(f"a tree size cannot be negative ({size})")
        if len(nodes) != size.bit_count():
            raise TreeError(f"a compact range of size {size} has {size.bit_count()} nodes, not {len(nodes)}")
        self._size = size
        self._nodes = _hashes(nodes, "compact range node")

    @classmethod
    def from_bytes(cls, size: int, packed: bytes) -> CompactRange:
        """The range of ``size`` leaves from its nodes as :meth:`to_bytes` packed them."""
        if len(packed) % HASH_SIZE:
            raise TreeError(f"packed compact range nodes are not a multiple of {HASH_SIZE} bytes")
        return cls(size, [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)])

    def to_bytes(self) -> bytes:
        return b"".join(self._nodes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def nodes(self) -> tuple[bytes, ...]:
        return tuple(self._nodes)

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._nodes == other._nodes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"

    def root(self) -> bytes:
        """The root of the tree of the ``size`` leaves appended so far."""
        if not self._nodes:
            return EMPTY_ROOT
        acc = self._nodes[-1]
        for node in reversed(self._nodes[:-1]):
            acc = node_hash(node, acc)
        return acc

    def append(self, leaf: bytes, done: list[Node] | None = None, from_level: int = 1) -> None:
        """Append one leaf hash (O(log n), amortised O(1)). With ``done``, each perfect subtree this completes at
        ``from_level`` or above is added to it (``Node``: the nodes :func:`tiled_inclusion_proof` reads)."""
        if not _is_hash(leaf):
            raise TreeError(f"a leaf hash is {HASH_SIZE} bytes")
        self._nodes.append(leaf)
        s = self._size
        level = 0
        while s & 1:
            right = self._nodes.pop()
            left = self._nodes.pop()
            node = node_hash(left, right)
            self._nodes.append(node)
            s >>= 1
            level += 1
            if done is not None and level >= from_level:
                done.append(Node(level, ((self._size + 1) >> level) - 1, node))
        self._size += 1

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append a batch of leaf hashes (level by level: about one hash per leaf, fast for big batches; a
        few leaves one by one, since a level-by-level pass walks every level of the tree: 25 us for one leaf
        at 50,000 against 0.4 us appended, and the log grows by one to three events per transaction)."""
        batch = _hashes(leaf_hashes)
        if len(batch) <= _FEW:
            for leaf in batch:
                self.append(leaf)
        else:
            self._grow(batch, want_proofs=False)

    def extend_with_proofs(self, leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
        """Append a batch and return, for each new leaf, its inclusion proof in the grown tree."""
        return self._grow(_hashes(leaf_hashes), want_proofs=True)

    def _grow(self, batch: list[bytes], *, want_proofs: bool) -> list[list[bytes]]:
        if not batch:
            return []
        m = self._size
        n = m + len(batch)
        # the old range's node at each set bit of m (the nodes are stored largest level first)
        left = dict(zip((h for h in range(m.bit_length() - 1, -1, -1) if m >> h & 1), self._nodes, strict=True))
        # level h holds the nodes of indices base_h … (n - 1) >> h of the grown tree, built bottom-up; a node left
        # of base_h that one of them pairs with is a node of the old range (base_h is odd exactly when bit h of m
        # is set). The grown range's node at a set bit h of n is the perfect node (n >> h) - 1 at level h.
        levels: list[tuple[int, list[bytes]]] = []
        grown: dict[int, bytes] = {}
        level, base, h = batch, m, 0
        while True:
            last = base + len(level) - 1
            if want_proofs:
                levels.append((base, level))
            if n >> h & 1:
                j = (n >> h) - 1
                grown[h] = left[h] if j < base else level[j - base]
            if last == 0:
                break
            if base & 1:
                up, body = [node_hash(left[h], level[0])], level[1:]
            else:
                up, body = [], level
            up += _pairs(body)
            if len(body) & 1:
                up.append(body[-1])
            level, base, h = up, base >> 1, h + 1
        self._size = n
        self._nodes = [grown[h] for h in sorted(grown, reverse=True)]
        if not want_proofs:
            return []
        proofs: list[list[bytes]] = []
        for i in range(m, n):
            path: list[bytes] = []
            for h, (base, level) in enumerate(levels):
                last = base + len(level) - 1
                if last == 0:
                    break
                sibling = (i >> h) ^ 1
                if sibling > last:
                    continue  # the last node of an odd level has no sibling: it is carried up
                path.append(left[h] if sibling < base else level[sibling - base])
            proofs.append(path)
        return proofs
