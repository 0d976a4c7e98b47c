"""The schema imaging_db created before it used migrations (its tables as of November 2026).

A database made then has these tables and no alembic_version: ``imaging_db_migrate``
stamps it at this revision before upgrading it.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "data_set",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_serial", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("microscope", sa.Text),
        sa.Column("frames", sa.Boolean, nullable=False),
        sa.Column("date_time", sa.DateTime, nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("data_set.id")),
    )
    op.create_index("ix_data_set_date_time", "data_set", ["date_time"])
    op.create_index("ix_data_set_parent_id", "data_set", ["parent_id"])
    op.create_table(
        "frames_global",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("data_set_id", sa.Integer, sa.ForeignKey("data_set.id"), nullable=False, unique=True),
        sa.Column("storage_dir", sa.Text, nullable=False),
        sa.Column("nbr_frames", sa.Integer, nullable=False),
        sa.Column("im_width", sa.Integer, nullable=False),
        sa.Column("im_height", sa.Integer, nullable=False),
        sa.Column("im_colors", sa.Integer, nullable=False),
        sa.Column("bit_depth", sa.String(16), nullable=False),
        sa.Column("nbr_slices", sa.Integer, nullable=False),
        sa.Column("nbr_channels", sa.Integer, nullable=False),
        sa.Column("nbr_timepoints", sa.Integer, nullable=False),
        sa.Column("nbr_positions", sa.Integer, nullable=False),
        sa.Column("metadata_json", JSON),
    )
    op.create_table(
        "frames",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("frames_global_id", sa.Integer, sa.ForeignKey("frames_global.id"), nullable=False),
        sa.Column("channel_idx", sa.Integer, nullable=False),
        sa.Column("slice_idx", sa.Integer, nullable=False),
        sa.Column("time_idx", sa.Integer, nullable=False),
        sa.Column("pos_idx", sa.Integer, nullable=False),
        sa.Column("channel_name", sa.Text),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("metadata_json", JSON),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_index("ix_frames_global_ctzp", "frames",
                    ["frames_global_id", "channel_idx", "slice_idx", "time_idx", "pos_idx"], unique=True)
    op.create_index("ix_frames_global_channel_name", "frames", ["frames_global_id", "channel_name"])
    op.create_table(
        "file_global",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("data_set_id", sa.Integer, sa.ForeignKey("data_set.id"), nullable=False, unique=True),
        sa.Column("storage_dir", sa.Text, nullable=False),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("metadata_json", JSON),
        sa.Column("sha256", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for table in ("file_global", "frames", "frames_global", "data_set"):
        op.drop_table(table)
