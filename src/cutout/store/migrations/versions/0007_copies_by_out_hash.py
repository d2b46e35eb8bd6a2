"""copies found by a hash of the reader's id: ``ix_copies_out`` on ``(recipient_id, out_hash)``

A released copy is found by the id its reader knows it by (feedback, answers to requests, the provider's own
copies of requests) through ``ix_copies_out``, which held the whole id (``recipient_id, out_id``). Those ids
are random, so the entries of a large release land on every leaf of that index, and the commit writes each
leaf it changed: at 30,000 objects it had 118 leaves of 16 KiB against 38 for ``ix_copies_orig``, which
holds a hash of the original's id instead (issue #7). ``out_hash`` is the same hash of ``out_id``
(``cutout.store.sql.id_hash``, a signed 64-bit BLAKE2b), computed here for every released copy there is
(in batches of 10,000); the index leaves held copies out, as before.

Not compatible with the version before (it does not write ``out_hash``, so the copies it releases would not
be found by their reader's id): stop every node, upgrade, start them again.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BATCH = 10_000


def id_hash(stix_id: str) -> int:
    """``cutout.store.sql.id_hash`` as it was at this revision (a migration does not follow later code)."""
    return int.from_bytes(hashlib.blake2b(stix_id.encode(), digest_size=8).digest(), "big", signed=True)


def upgrade() -> None:
    op.drop_index("ix_copies_out", table_name="copies")
    with op.batch_alter_table("copies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("out_hash", sa.BigInteger(), nullable=True))
    conn = op.get_bind()
    after = -1
    while True:
        rows = conn.execute(
            sa.text("SELECT pk, out_id FROM copies WHERE pk > :after AND out_id IS NOT NULL ORDER BY pk LIMIT :n"),
            {"after": after, "n": _BATCH},
        ).fetchall()
        if not rows:
            break
        conn.execute(
            sa.text("UPDATE copies SET out_hash = :h WHERE pk = :pk"),
            [{"h": id_hash(out_id), "pk": pk} for pk, out_id in rows],
        )
        after = rows[-1][0]
    op.create_index(
        "ix_copies_out",
        "copies",
        ["recipient_id", "out_hash"],
        unique=False,
        sqlite_where=sa.text("out_hash IS NOT NULL"),
        postgresql_where=sa.text("out_hash IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_copies_out", table_name="copies")
    with op.batch_alter_table("copies", schema=None) as batch_op:
        batch_op.drop_column("out_hash")
    op.create_index(
        "ix_copies_out",
        "copies",
        ["recipient_id", "out_id"],
        unique=False,
        sqlite_where=sa.text("out_id IS NOT NULL"),
        postgresql_where=sa.text("out_id IS NOT NULL"),
    )
