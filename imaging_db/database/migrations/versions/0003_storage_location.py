"""Each dataset records where its objects are; a GIN index serves metadata containment on PostgreSQL.

data_set gains storage, storage_access and s3_endpoint_url (NULL for datasets
uploaded before: readers then use the settings they are given, as before).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("data_set") as batch:
        batch.add_column(sa.Column("storage", sa.String(32)))
        batch.add_column(sa.Column("storage_access", sa.Text))
        batch.add_column(sa.Column("s3_endpoint_url", sa.Text))
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_frames_global_metadata_json", "frames_global", ["metadata_json"], postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_frames_global_metadata_json", table_name="frames_global")
    with op.batch_alter_table("data_set") as batch:
        for column in ("s3_endpoint_url", "storage_access", "storage"):
            batch.drop_column(column)
