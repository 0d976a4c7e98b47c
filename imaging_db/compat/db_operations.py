"""The original imagingDB's ``db_operations`` for its notebooks: find datasets and read their metadata.

What ``imaging_db.database.db_operations`` gives its notebooks:
``session_scope``, ``Base`` and the ORM classes ``DataSet``, ``FramesGlobal``,
``Frames``, ``FileGlobal`` (the same tables and relationships), and

- ``get_datasets(session, search_dict)``: the DataSet rows matching the search,
- ``DatabaseOperations(dataset_serial).get_frames_meta(session, ...)``: the
  original's ``(global_meta, frames_meta)``, a dict and a pandas DataFrame,
  which ``LocalStorage``/``S3Storage.get_stack_from_meta`` turn into an array.

Searches and frame selections go through imaging_db's own
(:func:`imaging_db.database.search.find_datasets`,
:func:`imaging_db.pipeline.selection.select_frames`), so they mean what they
mean for ``query_data``, ``data_downloader`` and :func:`imaging_db.connect`.
Where that differs from the original: ``project_id`` is the exact project
(the original matched any dataset id containing the text), ``microscope`` and
``description`` match in any case, ``end_date`` includes its day, and a
channel, slice, time or position the dataset lacks is an error listing what it
has (the original dropped it silently when something else matched).
The layer only reads: the original's ``insert_frames``/``insert_file`` are
``data_uploader``'s job.
"""


import pandas as pd
from sqlalchemy.orm import Session

from imaging_db.compat.session import database_of, session_scope, test_connection
from imaging_db.database import search
from imaging_db.database.models import Base, DataSet, FileGlobal, Frames, FramesGlobal
from imaging_db.database.records import FRAME_COLUMNS_WITHOUT_METADATA, DatasetInfo, FrameRow
from imaging_db.errors import InputError
from imaging_db.metadata.dataset_id import parse_dataset_id
from imaging_db.api.connection import frame_selection
from imaging_db.pipeline.selection import select_frames

# get_datasets' search keys: the original's five, then imaging_db's (find_datasets' parent and meta).
SEARCH_KEYS = ("project_id", "microscope", "start_date", "end_date", "description", "parent", "meta")
# The original's global_meta keys, in its order (then "metadata_json").
GLOBAL_META_KEYS = ("storage_dir", "nbr_frames", "im_width", "im_height", "nbr_slices", "nbr_channels", "im_colors",
                    "nbr_timepoints", "nbr_positions", "bit_depth")
# DataSet rows are loaded by id in batches of this many (a bound parameter each).
_BATCH = 500
# The original's writing methods, which this layer leaves to data_uploader.
_WRITES = ("insert_frames", "insert_file", "assert_unique_id")


def get_datasets(session: Session, search_dict: dict | None = None) -> list[DataSet]:
    """The datasets matching every criterion of ``search_dict``, as DataSet rows ordered by dataset id.

    Parameters
    ----------
    session : Session
        From :func:`session_scope`.
    search_dict : dict, optional
        ``project_id`` (e.g. ``"ML"``), ``microscope`` and ``description``
        (text the column contains), ``start_date`` and ``end_date``
        (``"YYYY-MM-DD"``, both days included), and imaging_db's ``parent`` (a
        dataset id: its children) and ``meta`` (metadata filters, as
        :func:`imaging_db.connect`'s ``find_datasets(meta=...)``). None or
        ``{}``: every dataset.

    Raises
    ------
    InputError
        On an unknown key (the original ignored them, returning every
        dataset), or a bad project id, date or filter.
    DatabaseError
        If the database cannot be read.
    """
    search_dict = dict(search_dict or {})
    unknown = sorted(set(search_dict) - set(SEARCH_KEYS), key=str)
    if unknown:
        raise InputError(f"get_datasets: unknown search key(s) {unknown}; use {list(SEARCH_KEYS)}")
    found = search.find_datasets(database_of(session), **search_dict)
    serials = [summary.dataset_id for summary in found]
    datasets = []
    for start in range(0, len(serials), _BATCH):
        datasets += session.query(DataSet).filter(DataSet.dataset_serial.in_(serials[start:start + _BATCH])).all()
    return sorted(datasets, key=lambda dataset: dataset.dataset_serial)


def global_meta(info: DatasetInfo) -> dict:
    """The original's ``global_meta`` of a frames dataset: its frames_global fields, then ``metadata_json``."""
    meta = {"storage_dir": info.storage_dir}
    meta.update({key: getattr(info.layout, key) for key in GLOBAL_META_KEYS[1:]})
    meta["metadata_json"] = info.metadata
    return meta


def frames_table(rows: list[FrameRow]) -> pd.DataFrame:
    """The original's ``frames_meta``: one row per frame ordered by file name, the frames columns but ids and metadata."""
    columns = list(FRAME_COLUMNS_WITHOUT_METADATA)
    table = pd.DataFrame([[getattr(row, column) for column in columns] for row in rows], columns=columns)
    return table.sort_values("file_name", kind="stable").reset_index(drop=True)


class DatabaseOperations:
    """One dataset's records, as the original's notebooks read them.

    Parameters
    ----------
    dataset_serial : str
        The dataset id, e.g. ``"ML-2018-11-07-09-35-54-0010"``.
    """

    def __init__(self, dataset_serial: str):
        self.dataset_serial = dataset_serial

    def __repr__(self) -> str:
        return f"DatabaseOperations({self.dataset_serial!r})"

    def __getattr__(self, name: str):
        if name in _WRITES:
            raise AttributeError(f"DatabaseOperations.{name}: the compatibility layer only reads; upload datasets "
                                 "with data_uploader (or imaging_db.pipeline.upload.upload_from_csv)")
        raise AttributeError(f"'DatabaseOperations' object has no attribute {name!r}")

    def _dataset(self, session: Session):
        if not isinstance(self.dataset_serial, str):
            raise InputError(f"dataset_serial must be a dataset id (text), not {type(self.dataset_serial).__name__}")
        database = database_of(session)
        serial = parse_dataset_id(self.dataset_serial, registered=True).serial
        return database, database.get_dataset(serial)

    def _rows(self, database, info: DatasetInfo, positions, times, channels, slices) -> list[FrameRow]:
        selection = frame_selection(channels, slices, times, positions)
        return select_frames(database, info.serial, selection)

    def get_frames_meta(self, session: Session, positions=None, times=None, channels=None,
                        slices=None) -> tuple[dict, pd.DataFrame]:
        """The dataset's global metadata and its selected frames, as the original returned them.

        Parameters
        ----------
        session : Session
            From :func:`session_scope`.
        positions, times, slices : int or list of int, optional
            Indices (None: all).
        channels : str, int or list, optional
            Channel names, or indices when all are integers and none is a
            channel name of the dataset (None: all).

        Returns
        -------
        global_meta : dict
            ``storage_dir``, ``nbr_frames``, ``im_width``, ``im_height``,
            ``nbr_slices``, ``nbr_channels``, ``im_colors``, ``nbr_timepoints``,
            ``nbr_positions``, ``bit_depth`` and ``metadata_json`` (the global metadata).
        frames_meta : pandas.DataFrame
            One row per frame, ordered by file name (index from 0): channel_idx,
            slice_idx, time_idx, pos_idx, channel_name, file_name, sha256.

        Raises
        ------
        InputError
            On a malformed id or filter, or a dataset kept as a file (not split into frames).
        NotFoundError
            If the dataset is not in the database, or a value asked for
            matches no frame (the message lists what the dataset has).
        DatabaseError
            If the database cannot be read.
        """
        database, info = self._dataset(session)
        if info.layout is None:
            raise InputError(f"dataset {info.serial} has not been split into frames (it is kept as a file): "
                             "get_filenames gives its file name")
        rows = self._rows(database, info, positions, times, channels, slices)
        return global_meta(info), frames_table(rows)

    def get_filenames(self, session: Session, positions=None, times=None, channels=None,
                      slices=None) -> tuple[str, list[str]]:
        """The dataset's folder in storage and the names of its selected frames (by name), or of its file.

        Raises
        ------
        InputError, NotFoundError, DatabaseError
            As :meth:`get_frames_meta`.
        """
        database, info = self._dataset(session)
        if info.layout is None:
            return info.storage_dir, [info.file_name] if info.file_name is not None else []
        rows = self._rows(database, info, positions, times, channels, slices)
        return info.storage_dir, sorted(row.file_name for row in rows)


__all__ = ["Base", "DataSet", "DatabaseOperations", "FileGlobal", "Frames", "FramesGlobal", "get_datasets",
           "session_scope", "test_connection"]
