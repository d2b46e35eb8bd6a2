"""the types each collection has held, from when: a filter by type reads a collection from there on

A request with ``match[type]`` or ``match[spec_version]`` (and no ``added_after`` past the matching objects) read its
collection's every row through ``ix_objects_coll_added``, since nothing else says where the matching objects are:
35 ms for a type the collection does not hold at 100,000 objects, 316 ms at 1,000,000. ``collection_types`` holds a
row per collection, type and spec version it has held, with the ``date_added`` of its first object; ``Tx.page``
reads it first, answers at once for a type (or spec version) never held, and reads the collection from the first
object that can match on. ``Tx.add_objects`` inserts a row the first time a type and spec version come into a
collection, and the rows are never changed: an object deleted since leaves a bound wider than it could be, never a
narrower one. The rows for the objects there are are computed here, in one pass over the table.

Stop every node, upgrade, start them again: a node of the version before stores objects of a new type without the
row, and a filter by that type would then find none of them.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collection_types",
        sa.Column("coll", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("spec_version", sa.String(length=8), nullable=False),
        sa.Column("first_added", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("coll", "type", "spec_version"),
    )
    op.execute(
        "INSERT INTO collection_types (coll, type, spec_version, first_added)"
        " SELECT coll, type, spec_version, min(date_added) FROM objects GROUP BY coll, type, spec_version"
    )


def downgrade() -> None:
    op.drop_table("collection_types")
