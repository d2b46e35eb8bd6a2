"""``ix_objects_id`` on ``(coll, id_hash)``, without ``date_added``

Objects are found by id through ``ix_objects_id``, which held ``date_added`` after the id's hash so that
one id's versions came out of it in order. Its keys are random, so a large envelope's entries land on nearly
every leaf of it, and the commit writes each leaf it changed: at 100,000 objects it had 371 leaves of 16 KiB,
6 MB of the 14 MB a 1,000-object envelope's commit wrote (issue #7). Without ``date_added`` it is a third
smaller; an id's few versions are sorted when read instead.

Compatible with the version before: its nodes keep running on the new index, and read objects by id
correctly, if more slowly (SQLite may read the collection in order to spare itself that sort), until they
are restarted on the new version.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_objects_id", table_name="objects")
    op.create_index("ix_objects_id", "objects", ["coll", "id_hash"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_objects_id", table_name="objects")
    op.create_index("ix_objects_id", "objects", ["coll", "id_hash", "date_added"], unique=False)
