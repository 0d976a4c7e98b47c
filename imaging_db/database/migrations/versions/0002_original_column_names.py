"""The original imagingDB's column names: frames_global.dataset_id and file_global.dataset_id.

The lab's existing queries and notebooks name these columns so; the rows stay as they are.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("frames_global", "file_global"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("data_set_id", new_column_name="dataset_id")


def downgrade() -> None:
    for table in ("frames_global", "file_global"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("dataset_id", new_column_name="data_set_id")
