"""The tables, as SQLAlchemy Core: data_set, frames_global, frames, file_global.

The upload and download paths use these Core tables only, so that they do not
pay for importing the ORM; :mod:`imaging_db.database.models` maps ORM classes
onto the same tables for notebooks.
"""

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator


class JSONMetadata(TypeDecorator):
    """JSONB on PostgreSQL (indexable, queryable), JSON text elsewhere.

    The PostgreSQL dialect is only imported when a PostgreSQL engine uses it.
    """

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())


metadata = sa.MetaData()

data_set = sa.Table(
    "data_set",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_serial", sa.String(64), nullable=False, unique=True),
    sa.Column("description", sa.Text),
    sa.Column("microscope", sa.Text),
    sa.Column("frames", sa.Boolean, nullable=False),
    sa.Column("date_time", sa.DateTime, nullable=False, index=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("data_set.id"), index=True),
)


def _global_columns() -> list[sa.Column]:
    """The columns a dataset's frames_global or file_global row starts with: its own id, its data_set, its prefix."""
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("data_set.id"), nullable=False, unique=True),
        sa.Column("storage_dir", sa.Text, nullable=False),
    ]


frames_global = sa.Table(
    "frames_global",
    metadata,
    *_global_columns(),
    sa.Column("nbr_frames", sa.Integer, nullable=False),
    sa.Column("im_width", sa.Integer, nullable=False),
    sa.Column("im_height", sa.Integer, nullable=False),
    sa.Column("im_colors", sa.Integer, nullable=False),
    sa.Column("bit_depth", sa.String(16), nullable=False),
    sa.Column("nbr_slices", sa.Integer, nullable=False),
    sa.Column("nbr_channels", sa.Integer, nullable=False),
    sa.Column("nbr_timepoints", sa.Integer, nullable=False),
    sa.Column("nbr_positions", sa.Integer, nullable=False),
    sa.Column("metadata_json", JSONMetadata),
)

frames = sa.Table(
    "frames",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("frames_global_id", sa.Integer, sa.ForeignKey("frames_global.id"), nullable=False),
    sa.Column("channel_idx", sa.Integer, nullable=False),
    sa.Column("slice_idx", sa.Integer, nullable=False),
    sa.Column("time_idx", sa.Integer, nullable=False),
    sa.Column("pos_idx", sa.Integer, nullable=False),
    sa.Column("channel_name", sa.Text),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("metadata_json", JSONMetadata),
    sa.Column("sha256", sa.String(64), nullable=False),
    # Serves every c/z/t/p filter of a dataset and forbids duplicate frames.
    sa.Index("ix_frames_global_ctzp", "frames_global_id", "channel_idx", "slice_idx", "time_idx", "pos_idx",
             unique=True),
    sa.Index("ix_frames_global_channel_name", "frames_global_id", "channel_name"),
)

file_global = sa.Table(
    "file_global",
    metadata,
    *_global_columns(),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("metadata_json", JSONMetadata),
    sa.Column("sha256", sa.String(64), nullable=False),
)
