"""smaller writes per object: receipts through audit_seq columns, objects and copies by id hash

Receipts: the audit entry of an acceptance is kept on its status row (``statuses.audit_seq``), that of a
delivery on the delivered row in the reader's inbox (``objects.audit_seq``), instead of in ``audit_refs``,
one more row (and index entry) per delivered object. The seqs are carried over from ``audit_refs``: a
party's latest entry for a status id or an inbox object's id stays the one a receipt is made for.

``ix_copies_out`` leaves out held copies (``out_id`` NULL), which are never looked up by ``out_id``.

Objects are looked up by ``(coll, id_hash)`` (``ix_objects_id``, with ``date_added``; not unique), a signed
64-bit BLAKE2b of the STIX id computed here for the rows there are, instead of by the unique index
``uq_objects_version`` on the long ids; ``Tx.add_objects`` keeps (coll, id, version) unique under the writer
lock. Copies likewise: a surrogate key and ``ix_copies_orig`` on ``(recipient_id, sender_id, orig_hash)``
instead of the primary key (recipient_id, sender_id, orig_id), ``Tx.plan_copies`` keeping that unique (the
table is made anew and its rows copied).

Not compatible with the version before (it writes to ``audit_refs``, and no ``id_hash``): stop every node,
upgrade, start them again.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_RELEASED = sa.text("out_id IS NOT NULL")
_BATCH = 10_000


def id_hash(stix_id: str) -> int:
    """``cutout.store.sql.id_hash`` as it was at this revision (a migration does not follow later code)."""
    return int.from_bytes(hashlib.blake2b(stix_id.encode(), digest_size=8).digest(), "big", signed=True)


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
    _fill_hashes("objects", "stix_id", "id_hash")
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.alter_column("id_hash", existing_type=sa.BigInteger(), nullable=False)
        batch_op.drop_constraint("uq_objects_version", type_="unique")
    op.create_index("ix_objects_id", "objects", ["coll", "id_hash", "date_added"], unique=False)

    op.drop_index("ix_copies_out", table_name="copies")
    _copy_copies(
        [
            sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
            *_copies_columns(),
            sa.Column("orig_hash", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("pk"),
        ],
        orig_hash="0",  # for now: the hashes are computed in Python, below
    )
    _fill_hashes("copies", "orig_id", "orig_hash")
    op.create_index("ix_copies_orig", "copies", ["recipient_id", "sender_id", "orig_hash"], unique=False)
    op.create_index(
        "ix_copies_out",
        "copies",
        ["recipient_id", "out_id"],
        unique=False,
        sqlite_where=_RELEASED,
        postgresql_where=_RELEASED,
    )


def _fill_hashes(table: str, id_column: str, hash_column: str) -> None:
    conn = op.get_bind()
    after = -1
    while True:
        rows = conn.execute(
            sa.text(f"SELECT pk, {id_column} FROM {table} WHERE pk > :after ORDER BY pk LIMIT :n"),
            {"after": after, "n": _BATCH},
        ).fetchall()
        if not rows:
            break
        conn.execute(
            sa.text(f"UPDATE {table} SET {hash_column} = :h WHERE pk = :pk"),
            [{"h": id_hash(stix_id), "pk": pk} for pk, stix_id in rows],
        )
        after = rows[-1][0]


def _copies_columns() -> list[sa.Column[object]]:
    """The columns copies has in both revisions, in 0003's form (its primary key columns are not null)."""
    return [
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("orig_id", sa.String(length=120), nullable=False),
        sa.Column("out_id", sa.String(length=120), nullable=True),
        sa.Column("created_out", sa.BigInteger(), nullable=True),
        sa.Column("modified_out", sa.BigInteger(), nullable=True),
        sa.Column("origin_version_us", sa.BigInteger(), nullable=True),
    ]


def _copy_copies(new_table: list[sa.schema.SchemaItem], **values: str) -> None:
    """Make copies anew as ``new_table`` (a primary key cannot be changed in place on SQLite) and move the
    rows of the columns both share, with ``values`` (SQL) for new columns; the caller drops and makes the
    indexes."""
    op.rename_table("copies", "copies_old")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("copies_pkey", "copies_old", type_="primary")  # its name would clash
    op.create_table("copies", *new_table)
    shared = [str(c.name) for c in _copies_columns()]
    op.execute(
        f"INSERT INTO copies ({', '.join([*shared, *values])}) SELECT {', '.join([*shared, *values.values()])}"
        " FROM copies_old ORDER BY recipient_id, sender_id, orig_id"
    )
    op.drop_table("copies_old")


def downgrade() -> None:
    op.drop_index("ix_copies_out", table_name="copies")
    op.drop_index("ix_copies_orig", table_name="copies")
    _copy_copies([*_copies_columns(), sa.PrimaryKeyConstraint("recipient_id", "sender_id", "orig_id")])
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
