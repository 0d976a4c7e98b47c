"""Stream the frames' own metadata (the ``metadata_json`` column), a batch of rows at a time.

A download lists its frames without their metadata (most of a row's size);
when the metadata is wanted too, it is read here in a second query that the
database hands over in batches, so a dataset of any size never has all its
frames' metadata in memory at once.
"""

import itertools
from typing import Iterator, Sequence

import sqlalchemy as sa

from imaging_db.database import schema
from imaging_db.database.lookups import _frames_global_id
from imaging_db.database.records import FrameRow
from imaging_db.errors import IntegrityError

_frames = schema.frames
# The order in which the frames rows of a download are listed (lookups.get_frames).
_ORDER = ("pos_idx", "time_idx", "channel_idx", "slice_idx")
# Rows fetched from the database at a time: a Micro-Manager frame's metadata is a few kB.
BATCH_ROWS = 1000


def _place(row) -> tuple[int, int, int, int]:
    return tuple(getattr(row, name) for name in _ORDER)


def stream_frame_metadata(database, serial: str, rows: Sequence[FrameRow],
                          batch_rows: int = BATCH_ROWS) -> Iterator[dict | None]:
    """Yield the metadata of each of ``rows`` (frames of dataset ``serial``), in the order of ``rows``.

    ``rows`` must be ordered by position, time, channel and slice, as
    :meth:`imaging_db.database.lookups.DatasetLookups.get_frames` lists them.
    The metadata is read in one query over the index values of ``rows``,
    which the database sends ``batch_rows`` rows at a time (a server-side
    cursor on PostgreSQL); frames not among ``rows`` are skipped as they pass.

    Parameters
    ----------
    database : Database
    serial : str
    rows : sequence of FrameRow
    batch_rows : int

    Yields
    ------
    dict or None
        A frame's metadata (None where its row has none).

    Raises
    ------
    IntegrityError
        If a frame of ``rows`` is no longer in the database.
    DatabaseError
        If the database cannot be read.
    """
    if not rows:
        return
    c = _frames.c
    query = sa.select(c.pos_idx, c.time_idx, c.channel_idx, c.slice_idx, c.file_name, c.metadata_json).where(
        c.frames_global_id == _frames_global_id(serial))
    for name in _ORDER:
        values = sorted({getattr(row, name) for row in rows})
        query = query.where(getattr(c, name).in_(values))
    query = query.order_by(*(getattr(c, name) for name in _ORDER))
    with database.errors("reading frame metadata"), database.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(query)
        # Frames at the same place (which a sound dataset has not) are told apart by file name.
        groups = itertools.groupby(result, key=_place)
        place, group = None, {}
        for row in rows:
            wanted = _place(row)
            while place is None or place < wanted:
                try:
                    place, members = next(groups)
                except StopIteration:
                    place, members = (float("inf"),), ()
                group = {member.file_name: member.metadata_json for member in members}
            if place != wanted or row.file_name not in group:
                raise IntegrityError(f"dataset {serial}: frame {row.file_name} left the database while its "
                                     "metadata was being read; download the dataset again")
            yield group.pop(row.file_name)
