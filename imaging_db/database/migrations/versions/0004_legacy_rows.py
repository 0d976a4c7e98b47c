"""What the original imagingDB's rows need: checksums may be missing, and a database-wide default storage.

frames.sha256 and file_global.sha256 may be NULL (the original wrote none before 2019; readers say so).
imaging_db_settings holds settings of the database itself, such as the storage of datasets that record
none (``imaging_db_migrate --default-storage``).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("frames", "file_global"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("sha256", existing_type=sa.String(64), nullable=True)
    op.create_table(
        "imaging_db_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("imaging_db_settings")
    for table in ("frames", "file_global"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("sha256", existing_type=sa.String(64), nullable=False)
