"""ORM tables: data_set, frames_global, frames, file_global."""

import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# JSONB on PostgreSQL (indexable, queryable); plain JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class DataSet(Base):
    """One uploaded dataset, frames or file."""

    __tablename__ = "data_set"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_serial: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    microscope: Mapped[str | None] = mapped_column(Text)
    frames: Mapped[bool] = mapped_column(Boolean, nullable=False)
    date_time: Mapped[datetime.datetime] = mapped_column(DateTime, nullable=False, index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("data_set.id"), index=True)

    frames_global: Mapped["FramesGlobal | None"] = relationship(back_populates="data_set", uselist=False)
    file_global: Mapped["FileGlobal | None"] = relationship(back_populates="data_set", uselist=False)


class FramesGlobal(Base):
    """Dataset-wide facts of a frames dataset."""

    __tablename__ = "frames_global"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    data_set_id: Mapped[int] = mapped_column(ForeignKey("data_set.id"), unique=True, nullable=False)
    storage_dir: Mapped[str] = mapped_column(Text, nullable=False)
    nbr_frames: Mapped[int] = mapped_column(Integer, nullable=False)
    im_width: Mapped[int] = mapped_column(Integer, nullable=False)
    im_height: Mapped[int] = mapped_column(Integer, nullable=False)
    im_colors: Mapped[int] = mapped_column(Integer, nullable=False)
    bit_depth: Mapped[str] = mapped_column(String(16), nullable=False)
    nbr_slices: Mapped[int] = mapped_column(Integer, nullable=False)
    nbr_channels: Mapped[int] = mapped_column(Integer, nullable=False)
    nbr_timepoints: Mapped[int] = mapped_column(Integer, nullable=False)
    nbr_positions: Mapped[int] = mapped_column(Integer, nullable=False)
    metadata_json = mapped_column(JSONType)

    data_set: Mapped[DataSet] = relationship(back_populates="frames_global")


class Frames(Base):
    """One 2D frame of a frames dataset."""

    __tablename__ = "frames"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    frames_global_id: Mapped[int] = mapped_column(ForeignKey("frames_global.id"), nullable=False)
    channel_idx: Mapped[int] = mapped_column(Integer, nullable=False)
    slice_idx: Mapped[int] = mapped_column(Integer, nullable=False)
    time_idx: Mapped[int] = mapped_column(Integer, nullable=False)
    pos_idx: Mapped[int] = mapped_column(Integer, nullable=False)
    channel_name: Mapped[str | None] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(Text, nullable=False)
    metadata_json = mapped_column(JSONType)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        # Serves every c/z/t/p filter of a dataset and forbids duplicate frames.
        Index(
            "ix_frames_global_ctzp",
            "frames_global_id",
            "channel_idx",
            "slice_idx",
            "time_idx",
            "pos_idx",
            unique=True,
        ),
        Index("ix_frames_global_channel_name", "frames_global_id", "channel_name"),
    )


class FileGlobal(Base):
    """A dataset stored as one file, as is."""

    __tablename__ = "file_global"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    data_set_id: Mapped[int] = mapped_column(ForeignKey("data_set.id"), unique=True, nullable=False)
    storage_dir: Mapped[str] = mapped_column(Text, nullable=False)
    file_name: Mapped[str] = mapped_column(Text, nullable=False)
    metadata_json = mapped_column(JSONType)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)

    data_set: Mapped[DataSet] = relationship(back_populates="file_global")
