"""smaller writes per object: receipts found through audit_seq columns, a partial index of released copies

Receipts: the audit entry of an acceptance is kept on its status row (``statuses.audit_seq``), that of a
delivery on the delivered row in the reader's inbox (``objects.audit_seq``), instead of in ``audit_refs``,
one more row (and index entry) per delivered object. The seqs are carried over from ``audit_refs``: a
party's latest entry for a status id or an inbox object's id stays the one a receipt is made for.

``ix_copies_out`` leaves out held copies (``out_id`` NULL), which are never looked up by ``out_id``.

Not compatible with the version before (it writes to ``audit_refs``): stop every node, upgrade, start them
again.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_RELEASED = sa.text("out_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("statuses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audit_seq", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audit_seq", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE statuses SET audit_seq = (SELECT max(r.seq) FROM audit_refs r"
        " WHERE r.party_id = statuses.party_id AND r.ref = statuses.uuid)"
    )
    # audit_refs named an object by id, not version: every version in the inbox takes the id's latest entry
    # (what a receipt was made for before, and still is: the largest seq among the rows)
    op.execute(
        "UPDATE objects SET audit_seq = (SELECT max(r.seq) FROM audit_refs r JOIN collections c"
        " ON c.party_id = r.party_id WHERE c.id = objects.coll AND r.ref = objects.stix_id)"
        " WHERE coll IN (SELECT id FROM collections WHERE kind = 'inbox')"
    )
    op.drop_index("ix_audit_refs", table_name="audit_refs")
    op.drop_table("audit_refs")

    op.drop_index("ix_copies_out", table_name="copies")
    op.create_index(
        "ix_copies_out",
        "copies",
        ["recipient_id", "out_id"],
        unique=False,
        sqlite_where=_RELEASED,
        postgresql_where=_RELEASED,
    )


def downgrade() -> None:
    op.drop_index("ix_copies_out", table_name="copies")
    op.create_index("ix_copies_out", "copies", ["recipient_id", "out_id"], unique=False)

    op.create_table(
        "audit_refs",
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=160), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_audit_refs", "audit_refs", ["party_id", "ref"], unique=False)
    op.execute(
        "INSERT INTO audit_refs (party_id, ref, seq)"
        " SELECT party_id, uuid, audit_seq FROM statuses WHERE audit_seq IS NOT NULL"
    )
    op.execute(
        "INSERT INTO audit_refs (party_id, ref, seq)"
        " SELECT DISTINCT c.party_id, o.stix_id, o.audit_seq FROM objects o JOIN collections c ON c.id = o.coll"
        " WHERE c.kind = 'inbox' AND o.audit_seq IS NOT NULL"
    )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_column("audit_seq")
    with op.batch_alter_table("statuses", schema=None) as batch_op:
        batch_op.drop_column("audit_seq")
