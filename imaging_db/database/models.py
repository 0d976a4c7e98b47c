"""ORM classes mapped onto the tables of :mod:`imaging_db.database.schema`, for notebooks and queries."""

from sqlalchemy.orm import DeclarativeBase, relationship

from imaging_db.database import schema


class Base(DeclarativeBase):
    metadata = schema.metadata


class DataSet(Base):
    """One uploaded dataset, frames or file."""

    __table__ = schema.data_set

    parent = relationship("DataSet", remote_side=[schema.data_set.c.id])
    frames_global = relationship("FramesGlobal", back_populates="data_set", uselist=False)
    file_global = relationship("FileGlobal", back_populates="data_set", uselist=False)


class FramesGlobal(Base):
    """Dataset-wide facts of a frames dataset."""

    __table__ = schema.frames_global

    data_set = relationship(DataSet, back_populates="frames_global")
    frames = relationship("Frames", back_populates="frames_global")


class Frames(Base):
    """One 2D frame of a frames dataset."""

    __table__ = schema.frames

    frames_global = relationship(FramesGlobal, back_populates="frames")


class FileGlobal(Base):
    """A dataset stored as one file, as is."""

    __table__ = schema.file_global

    data_set = relationship(DataSet, back_populates="file_global")
