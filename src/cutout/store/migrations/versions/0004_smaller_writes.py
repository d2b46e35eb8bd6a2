"""smaller writes per object: receipts through audit_seq columns, objects by id hash, released copies' index

Receipts: the audit entry of an acceptance is kept on its status row (``statuses.audit_seq``), that of a
delivery on the delivered row in the reader's inbox (``objects.audit_seq``), instead of in ``audit_refs``,
one more row (and index entry) per delivered object. The seqs are carried over from ``audit_refs``: a
party's latest entry for a status id or an inbox object's id stays the one a receipt is made for.

``ix_copies_out`` leaves out held copies (``out_id`` NULL), which are never looked up by ``out_id``.

Objects are looked up by ``(coll, id_hash)`` (``ix_objects_id``, with ``date_added``; not unique), a signed
64-bit BLAKE2b of the STIX id computed here for the rows there are, instead of by the unique index
``uq_objects_version`` on the long ids; ``Tx.add_objects`` keeps (coll, id, version) unique under the writer
lock.

Not compatible with the version before (it writes to ``audit_refs``, and no ``id_hash``): stop every node,
upgrade, start them again.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cutout.store.sql import id_hash

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_RELEASED = sa.text("out_id IS NOT NULL")
_BATCH = 10_000


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

    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id_hash", sa.BigInteger(), nullable=True))
    conn = op.get_bind()
    after = -1
    while True:
        rows = conn.execute(
            sa.text("SELECT pk, stix_id FROM objects WHERE pk > :after ORDER BY pk LIMIT :n"),
            {"after": after, "n": _BATCH},
        ).fetchall()
        if not rows:
            break
        conn.execute(
            sa.text("UPDATE objects SET id_hash = :h WHERE pk = :pk"),
            [{"h": id_hash(stix_id), "pk": pk} for pk, stix_id in rows],
        )
        after = rows[-1][0]
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.alter_column("id_hash", existing_type=sa.BigInteger(), nullable=False)
        batch_op.drop_constraint("uq_objects_version", type_="unique")
    op.create_index("ix_objects_id", "objects", ["coll", "id_hash", "date_added"], unique=False)

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
    op.drop_index("ix_objects_id", table_name="objects")
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_column("id_hash")
        batch_op.create_unique_constraint("uq_objects_version", ["coll", "stix_id", "version_us"])
        batch_op.drop_column("audit_seq")
    with op.batch_alter_table("statuses", schema=None) as batch_op:
        batch_op.drop_column("audit_seq")
