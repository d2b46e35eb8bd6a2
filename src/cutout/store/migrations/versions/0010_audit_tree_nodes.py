"""the audit tree's subtrees of 256 entries or more, stored: a receipt reads a few, not the whole log

A receipt's inclusion proof was made from every commitment of the log up to the latest checkpoint (each
receipt read them all and hashed the whole tree: 21 ms at 3,313 entries, growing with the log). The perfect
subtrees of at least 256 leaves (``cutout.audit.merkle.TILE_LEVEL``) are now stored in ``audit_nodes`` by the
transaction whose entries complete each, and a proof reads O(log n) of them and the commitments of at most two
tiles of 256 (``cutout.audit.merkle.tiled_inclusion_proof``). The nodes of the log there is are computed here,
from its commitments (which retention keeps), with RFC 9162's hashes written out as the code has them.

Stop every node, upgrade, start them again: a node of the version before appends entries without storing the
subtrees they complete, and a receipt through one of those then computes it from the log's entries (slower,
with a warning), which `cutout audit verify` names.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TILE_LEVEL = 8  # cutout.audit.merkle.TILE_LEVEL when this was written
_BATCH = 10_000


def _leaf(commitment: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + commitment).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def upgrade() -> None:
    nodes = op.create_table(
        "audit_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "position"),
    )
    conn = op.get_bind()
    stack: list[bytes] = []  # the compact range: a perfect subtree per set bit of size, largest first
    size = 0
    last = 0
    while True:
        rows = conn.execute(
            sa.text("SELECT seq, commitment FROM audit WHERE seq > :last ORDER BY seq LIMIT :n"),
            {"last": last, "n": _BATCH},
        ).fetchall()
        done: list[dict[str, object]] = []
        for seq, commitment in rows:
            stack.append(_leaf(bytes(commitment)))
            s, level = size, 0
            while s & 1:
                right = stack.pop()
                stack[-1] = _node(stack[-1], right)
                s >>= 1
                level += 1
                if level >= TILE_LEVEL:
                    done.append({"level": level, "position": ((size + 1) >> level) - 1, "hash": stack[-1]})
            size += 1
            last = seq
        if done:
            conn.execute(nodes.insert(), done)
        if len(rows) < _BATCH:
            return


def downgrade() -> None:
    op.drop_table("audit_nodes")
