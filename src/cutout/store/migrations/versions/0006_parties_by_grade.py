"""parties found by grade: the grade crowd is a few index probes, not a count of every party

A release decides whether consumers may see its provider's grade (``grade_visibility = "shared"``: only while
at least ``grade_crowd`` active providers hold it). It counted every party's grade, a read of the whole
``parties`` table on every release run: 94 µs with 1,000 parties, growing with the membership (issue #7). It
now stops counting at ``grade_crowd`` through this index. A plain index, built while nodes run: nodes of the
version before carry on unchanged.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_parties_grade",
        "parties",
        ["grade"],
        unique=False,
        sqlite_where=sa.text("provider AND revoked IS NULL"),
        postgresql_where=sa.text("provider AND revoked IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_parties_grade", table_name="parties")
