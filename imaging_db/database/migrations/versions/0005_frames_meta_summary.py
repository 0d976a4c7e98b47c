"""A summary of each frames dataset's frame metadata, one row per top-level key, so searches need not read every frame.

frames_meta_summary is created and filled for the datasets already registered,
by the same statement that fills it when a dataset is registered
(imaging_db.database.frames_summary), so a database upgraded and one filled by
uploads hold the same summaries. The fill reads every frame's metadata once:
on a large database it takes a while (see imaging_db.database.frames_summary).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from imaging_db.database import frames_summary

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "frames_meta_summary",
        sa.Column("frames_global_id", sa.Integer, sa.ForeignKey("frames_global.id"), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("distinct_values", JSON),
        sa.Column("overflow", sa.Boolean, nullable=False),
        sa.Column("min_number", sa.Numeric),
        sa.Column("max_number", sa.Numeric),
        sa.Column("has_other", sa.Boolean, nullable=False),
        sa.Column("has_object", sa.Boolean, nullable=False),
        sa.Column("has_array", sa.Boolean, nullable=False),
    )
    frames_summary.fill_all(op.get_bind())


def downgrade() -> None:
    op.drop_table("frames_meta_summary")
