"""objects and copies found by id through two levels of index: the rows added lately, and the rest

``ix_objects_id``, ``ix_copies_orig`` and ``ix_copies_out`` are keyed by a hash of a random id, so each entry
a commit adds lands on a leaf of its own, and the commit writes every leaf it changed. At 100,000 objects a
100-object envelope's commit wrote 5.2 MB of WAL, 282 of its 330 pages leaves of those three indexes, and
ingest at 100 per envelope ran at half the speed it had on an empty exchange (issue #7). Each index is now two
partial indexes on a new ``fresh`` column, as a log-structured merge tree keeps two levels: the rows added
lately (``fresh``) in a small index whose few leaves every commit shares, the rest in the large one, into
which ``Tx.merge_fresh`` moves them thousands at a time, so that they share its leaves too. Every row there is
now is in the large one (``fresh`` false); rows are added fresh on SQLite only.

Not compatible with the version before (its reads by id would find no index to take and read whole
collections): stop every node, upgrade, start them again.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_OBJECTS = ("objects", ("coll", "id_hash"), "ix_objects_id", "")
_ORIG = ("copies", ("recipient_id", "sender_id", "orig_hash"), "ix_copies_orig", "")
_OUT = ("copies", ("recipient_id", "out_hash"), "ix_copies_out", "out_hash IS NOT NULL")


def _where(condition: str, level: str) -> sa.TextClause:
    return sa.text(f"{condition} AND {level}" if condition else level)


def upgrade() -> None:
    for table in ("objects", "copies"):
        op.add_column(table, sa.Column("fresh", sa.Boolean(), server_default=sa.false(), nullable=False))
    for table, columns, name, condition in (_OBJECTS, _ORIG, _OUT):
        op.drop_index(name, table_name=table)
        for suffix, level in (("", "NOT fresh"), ("_fresh", "fresh")):
            where = _where(condition, level)
            op.create_index(name + suffix, table, list(columns), sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for table, columns, name, condition in (_OBJECTS, _ORIG, _OUT):
        op.drop_index(name + "_fresh", table_name=table)
        op.drop_index(name, table_name=table)
        where = sa.text(condition) if condition else None
        op.create_index(name, table, list(columns), sqlite_where=where, postgresql_where=where)
    for table in ("objects", "copies"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("fresh")
