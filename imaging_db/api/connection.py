"""The Python API's connection: find datasets, read their metadata as pandas tables and their frames as xarray arrays.

    import imaging_db
    db = imaging_db.connect()                       # or connect("db_credentials.json")
    db.find_datasets(project_id="ML")               # pandas.DataFrame, one row per dataset
    db.get_stack("ML-2018-11-07-09-35-54-0010", channels=["GFP"])   # xarray.DataArray (p, t, c, z, y, x)

Frames are selected as the downloader selects them
(:mod:`imaging_db.pipeline.selection`) and read through the downloader's read
path, so the same filters mean the same frames and fail with the same messages.
"""

import hashlib
import logging
import operator
import os
import secrets
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from imaging_db.api.stack import FrameGrid, lazy_stack, read_stack
from imaging_db.database import search
from imaging_db.database.db_ops import Database
from imaging_db.database.records import FRAME_COLUMNS, DatasetInfo
from imaging_db.errors import InputError, NotFoundError, StorageError
from imaging_db.filestorage import StorageLocation, storage_class
from imaging_db.metadata.dataset_id import parse_dataset_id
from imaging_db.pipeline.download import Downloader
from imaging_db.pipeline.frame_metadata import metadata_table
from imaging_db.pipeline.frame_reader import checked_key, corrupt
from imaging_db.pipeline.selection import FrameSelection, select_frames
from imaging_db.pipeline.stores import DatasetStorages, open_for_reading

logger = logging.getLogger(__name__)

# find_datasets columns that hold counts: integers, missing (<NA>) for file datasets.
_COUNT_COLUMNS = ("nbr_frames", "im_width", "im_height", "im_colors", "nbr_slices", "nbr_channels",
                  "nbr_timepoints", "nbr_positions")


def connect(login: str | Path | None = None, *, storage: str | None = None, storage_access: str | None = None,
            s3_endpoint_url: str | None = None, nbr_workers: int | None = None) -> "Connection":
    """Open an imaging_db database for reading.

    Parameters
    ----------
    login : path, optional
        A login JSON file (``drivername``, ``username``, ``password``, ``host``,
        ``port``, ``dbname``); default the embedded SQLite database in ``$IMAGING_DB_HOME``.
    storage, storage_access, s3_endpoint_url : str, optional
        Where to read frames and files, overriding where each dataset's record
        says they are (as ``data_downloader --storage`` etc.: data moved).
        ``get_stack`` and ``get_file`` take the same overrides per call.
    nbr_workers : int, optional
        Threads decoding frames; default one per CPU. A remote storage (S3) fetches on more
        threads, as many requests as it is worth keeping in flight.

    Returns
    -------
    Connection
        Close it with :meth:`Connection.close`, or use it in a ``with`` block.

    Raises
    ------
    InputError
        On a bad login file, storage name or worker count.
    NotFoundError
        If the embedded (or named SQLite) database does not exist yet: nothing was uploaded to it.
    DatabaseError
        If the database cannot be reached or is at another schema revision (the message says what to run).
    """
    database, storages, workers = open_for_reading(
        login, storage, storage_access, s3_endpoint_url, nbr_workers,
        missing="imaging_db.connect: no database to read", doing="connecting")
    return Connection(database, storages, workers)


def _values(name: str, values, kind: type) -> list | None:
    """A filter as a list of plain Python values (numpy integers become ints); one value or several; None: all.

    ``kind`` str accepts names and integers (channels), int integers only.
    """
    if values is None:
        return None
    if isinstance(values, (str, int, np.integer)):
        values = [values]
    try:
        values = list(values)
    except TypeError:
        raise InputError(f"{name} must be a list of {kind.__name__}s, not {type(values).__name__}") from None
    plain = []
    for value in values:
        if kind is str and isinstance(value, str):
            plain.append(value)
            continue
        try:
            if isinstance(value, bool):
                raise TypeError
            plain.append(operator.index(value))
        except TypeError:
            expected = "names or indices" if kind is str else "integers"
            raise InputError(f"{name} must be {expected}, not {value!r}") from None
    return plain


def frame_selection(channels, slices, times, positions) -> FrameSelection:
    """The downloader's FrameSelection from the filters a Python caller gives (one value, a list, or None)."""
    return FrameSelection(channels=_values("channels", channels, str), slices=_values("slices", slices, int),
                          times=_values("times", times, int), positions=_values("positions", positions, int))


class Connection:
    """An open imaging_db database and the storages its datasets are read from.

    Made by :func:`connect`. Methods take a dataset id
    (``<PROJECT>-YYYY-MM-DD-HH-MM-SS-<NNNN>``); frame filters are the
    downloader's: ``channels`` (names, or indices when all are integers and
    none is a channel name, as ``data_downloader -c``), ``slices``, ``times``,
    ``positions``, each one value or a list; None means all.

    Attributes
    ----------
    database : Database
        The database layer (its ``engine`` runs SQLAlchemy queries of your own).
    nbr_workers : int
        Threads reading frames.
    """

    def __init__(self, database: Database, storages: DatasetStorages, nbr_workers: int):
        self.database = database
        self.nbr_workers = nbr_workers
        self._storages = storages

    @property
    def engine(self):
        """The SQLAlchemy engine, for queries with the ORM classes of :mod:`imaging_db.database.models`."""
        return self.database.engine

    def __repr__(self) -> str:
        return f"imaging_db.Connection({self.database.describe()})"

    def close(self) -> None:
        """Close the database connections (arrays already read stay usable; lazy ones too)."""
        self.database.dispose()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------- metadata
    def find_datasets(self, *, project_id: str | None = None, microscope: str | None = None,
                      start_date=None, end_date=None, description: str | None = None, parent: str | None = None,
                      meta=None) -> pd.DataFrame:
        """The datasets matching every filter given, one row each, ordered by date-time.

        Parameters
        ----------
        project_id : str, optional
            The project, the part of the id before the first ``-`` (e.g. ``"ML"``).
        microscope, description : str, optional
            Text the column contains, in any case.
        start_date, end_date : str ``YYYY-MM-DD`` or datetime.date, optional
            First and last day, both included.
        parent : str, optional
            A dataset id: its children only.
        meta : dict, str or list of str, optional
            Metadata filters on the global or any frame's metadata, all of which must match:
            ``{"protein_name": "TOPOR"}``, ``"Exposure-ms>50"``, ``["Summary.Slices=3", ...]``.

        Returns
        -------
        pandas.DataFrame
            Columns dataset_id, date_time, microscope, description, frames
            (True: split into frames; False: a file), nbr_frames, channels (the
            channel names), parent_dataset_id, im_width, im_height, im_colors,
            bit_depth, nbr_slices, nbr_channels, nbr_timepoints, nbr_positions
            (counts are <NA> for file datasets). No rows when nothing matches.

        Raises
        ------
        InputError
            On a bad project id, date, metadata filter or parent.
        DatabaseError
            If the database cannot be read.
        """
        found = search.find_datasets(self.database, project_id=project_id, microscope=microscope,
                                     start_date=start_date, end_date=end_date, description=description,
                                     parent=parent, meta=meta)
        table = pd.DataFrame([[getattr(summary, name) for name in search.FIELDS] for summary in found],
                             columns=list(search.FIELDS))
        table["channels"] = [list(names) if names is not None else None for names in table["channels"]]
        table["date_time"] = pd.to_datetime(table["date_time"])
        table["frames"] = table["frames"].astype(bool)
        for column in _COUNT_COLUMNS:
            table[column] = table[column].astype("Int64")
        return table

    def _dataset(self, dataset_id: str) -> DatasetInfo:
        if not isinstance(dataset_id, str):
            raise InputError(f"a dataset id is text (<PROJECT>-YYYY-MM-DD-HH-MM-SS-<NNNN>), not "
                             f"{type(dataset_id).__name__}")
        return self.database.get_dataset(parse_dataset_id(dataset_id, registered=True).serial)

    def global_meta(self, dataset_id: str) -> dict:
        """A dataset's record: its data_set and frames_global (or file_global) fields and its global metadata.

        The content of the downloader's ``global_metadata.json``: dataset_serial,
        description, microscope, frames, date_time, parent_dataset_id,
        storage_dir, the frame counts and size (frames datasets) or file_name
        and sha256 (file datasets), and ``metadata_json``, the metadata recorded at upload.

        Raises
        ------
        InputError
            On a malformed dataset id.
        NotFoundError
            If the dataset is not in the database.
        """
        return self._dataset(dataset_id).global_metadata()

    def _frames_dataset(self, dataset_id: str, doing: str) -> DatasetInfo:
        info = self._dataset(dataset_id)
        if info.layout is None:
            raise InputError(f"dataset {info.serial} is a file dataset: it has no frames to {doing}; "
                             "get its file with get_file")
        return info

    def frames_meta(self, dataset_id: str, channels: Sequence[str | int] | None = None,
                    slices: Sequence[int] | None = None, times: Sequence[int] | None = None,
                    positions: Sequence[int] | None = None, *, frame_metadata: bool = False) -> pd.DataFrame:
        """The selected frames of a dataset, one row each, ordered by position, time, channel and slice.

        Parameters
        ----------
        dataset_id : str
        channels, slices, times, positions : optional
            The downloader's filters (None: all).
        frame_metadata : bool
            Add each frame's metadata as columns, as ``data_downloader
            --frame-metadata`` adds them to ``frames_meta.csv``: a column per key
            any selected frame has (nested keys dotted, e.g. ``Camera.Binning``;
            lists as JSON text; a key that is also a column above is named
            ``metadata_json.<key>``), in alphabetical order, missing (NaN) where
            a frame lacks it. Values keep their type (numbers stay numbers).

        Returns
        -------
        pandas.DataFrame
            Columns channel_idx, slice_idx, time_idx, pos_idx, channel_name,
            file_name, sha256, metadata_json (each frame's metadata, a dict),
            then with ``frame_metadata`` the metadata columns.

        Raises
        ------
        InputError
            On a malformed id or filter, or a file dataset.
        NotFoundError
            If the dataset is unknown, or a value asked for matches no frame
            (the message lists the channels and indices it has).
        """
        info = self._frames_dataset(dataset_id, "list")
        rows = select_frames(self.database, info.serial, frame_selection(channels, slices, times, positions),
                             with_metadata=True)
        if frame_metadata:
            columns, records = metadata_table(rows)
            return pd.DataFrame.from_records(records, columns=columns)
        return pd.DataFrame([[getattr(row, name) for name in FRAME_COLUMNS] for row in rows],
                            columns=list(FRAME_COLUMNS))

    # ----------------------------------------------------------------------- pixels
    def _location(self, info: DatasetInfo, storage: str | None, storage_access: str | None,
                  s3_endpoint_url: str | None) -> StorageLocation:
        """Where a dataset is read: its record, with the connection's settings, then this call's, applied."""
        location = self._storages.location(info.location)
        if storage is not None:
            storage_class(storage)  # an unknown backend is an InputError naming the known ones
        if any(value is not None for value in (storage, storage_access, s3_endpoint_url)):
            location = location.overridden(storage, storage_access, s3_endpoint_url)
        return location

    def get_stack(self, dataset_id: str, channels: Sequence[str | int] | None = None,
                  slices: Sequence[int] | None = None, times: Sequence[int] | None = None,
                  positions: Sequence[int] | None = None, *, lazy: bool = False, storage: str | None = None,
                  storage_access: str | None = None, s3_endpoint_url: str | None = None) -> xr.DataArray:
        """The selected frames of a dataset as one array, each frame checked against its checksum.

        Parameters
        ----------
        dataset_id : str
        channels, slices, times, positions : optional
            The downloader's filters (None: all).
        lazy : bool
            Return the array backed by dask, one frame per chunk: nothing is
            read until computed, and then only the frames the computation
            needs. Works on datasets larger than memory and under
            dask.distributed (each worker opens the storage itself).
        storage, storage_access, s3_endpoint_url : str, optional
            Read from another storage than the dataset's record says (data moved).

        Returns
        -------
        xarray.DataArray
            Dims ``("p", "t", "c", "z", "y", "x")``, plus ``"s"`` (the 3 samples)
            last for RGB; dtype uint8 or uint16. Coordinates p, t, c, z hold the
            index values of the frames selected, ``channel_name`` (along c) the
            channel names. Named after the dataset id.

        Raises
        ------
        InputError
            On a malformed id or filter, a file dataset, or a bad storage setting.
        NotFoundError
            If the dataset is unknown, a value asked for matches no frame, the
            frames selected are not a full grid (the missing indices are
            named), or a frame is missing from storage.
        IntegrityError
            If a frame does not match its checksum or the dataset's frame shape and type.
        StorageError, DatabaseError
            If the storage or database fails.
        """
        info = self._frames_dataset(dataset_id, "stack")
        rows = select_frames(self.database, info.serial, frame_selection(channels, slices, times, positions))
        grid = FrameGrid(info, rows)
        location = self._location(info, storage, storage_access, s3_endpoint_url)
        if lazy:
            data = lazy_stack(location, info, rows, grid)
        else:
            data = read_stack(self._storages.open(location), info, rows, grid, self.nbr_workers)
        return xr.DataArray(data, dims=grid.dims, coords=grid.coords(), name=info.serial,
                            attrs={"dataset_id": info.serial})

    def export(self, dataset_id: str, dest: str | Path, format: str = "ome-zarr",
               channels: Sequence[str | int] | None = None, slices: Sequence[int] | None = None,
               times: Sequence[int] | None = None, positions: Sequence[int] | None = None, *,
               metadata: bool = True, frame_metadata: bool = False, progress: bool | None = False,
               storage: str | None = None, storage_access: str | None = None,
               s3_endpoint_url: str | None = None) -> Path:
        """Write the selected frames into ``<dest>/<dataset_id>/``, as ``data_downloader --format`` does.

        Parameters
        ----------
        dataset_id : str
        dest : str or Path
            The folder in which ``<dataset_id>/`` is made; it must not exist yet.
        format : str
            ``"ome-zarr"``: an OME-Zarr (NGFF 0.5) image per position,
            ``<dataset_id>_p<NNN>.ome.zarr`` (axes t, c, z, y, x; channel names
            and physical sizes in its metadata); ``"tiff"``: an OME-TIFF per
            position, ``<dataset_id>_p<NNN>.ome.tif`` (axes TCZYX); ``"png"``:
            the stored frames as they are.
        channels, slices, times, positions : optional
            The downloader's filters (None: all). An image per position needs
            a full grid of the times, channels and slices selected.
        metadata : bool
            Also write ``global_metadata.json`` and ``frames_meta.csv``.
        frame_metadata : bool
            Add each frame's metadata to ``frames_meta.csv`` (see :meth:`frames_meta`).
        progress : bool or None
            Show a progress bar (None: only on a terminal).
        storage, storage_access, s3_endpoint_url : str, optional
            Read from another storage than the dataset's record says (data moved).

        Returns
        -------
        Path
            ``<dest>/<dataset_id>``, which appears whole or not at all.

        Raises
        ------
        InputError
            On a malformed id or filter, an unknown format, a file dataset with
            an export format, RGB frames, or an existing ``<dest>/<dataset_id>``.
        NotFoundError
            If the dataset is unknown, a value asked for matches no frame, or the
            frames selected are not a full grid (the missing ones are named).
        IntegrityError
            If a frame does not match its checksum.
        StorageError, DatabaseError
            If the storage or database fails.
        """
        info = self._dataset(dataset_id)
        data_storage = self._storages.open(self._location(info, storage, storage_access, s3_endpoint_url))
        downloader = Downloader(self.database, DatasetStorages.fixed(data_storage), self.nbr_workers, progress)
        result = downloader.download(info.serial, dest, frame_selection(channels, slices, times, positions),
                                     metadata=metadata, frame_metadata=frame_metadata, format=format)
        return result.folder

    def get_file(self, dataset_id: str, dest: str | Path, *, storage: str | None = None,
                 storage_access: str | None = None, s3_endpoint_url: str | None = None) -> Path:
        """Write a file dataset's file into the folder ``dest``, checked against its checksum; return its path.

        The file keeps its original name. It appears whole or not at all, and
        an existing file is never replaced.

        Raises
        ------
        InputError
            On a malformed id, a frames dataset (read it with get_stack), a file
            already at the target, or a bad storage setting.
        NotFoundError
            If the dataset is unknown or its file is missing from storage.
        IntegrityError
            If the file read does not match its checksum (nothing is left behind).
        StorageError
            If the storage fails or ``dest`` cannot be written.
        """
        info = self._dataset(dataset_id)
        serial = info.serial
        if info.layout is not None:
            raise InputError(f"dataset {serial} is a frames dataset: read its frames with get_stack "
                             "(get_file is for file datasets)")
        if info.file_name is None:
            raise NotFoundError(f"dataset {serial} has neither frames nor a file registered")
        key = checked_key(serial, info.storage_dir, info.file_name, "file name")
        dest = Path(dest).expanduser()
        target = dest / info.file_name
        if target.exists():
            raise InputError(f"dataset {serial}: {target} already exists; refusing to overwrite it")
        data_storage = self._storages.open(self._location(info, storage, storage_access, s3_endpoint_url))
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"dataset {serial}: cannot create the folder {dest}: {exc.strerror}") from None
        temp = dest / f".{info.file_name}.{secrets.token_hex(8)}.partial"
        try:
            data_storage.get_file(key, temp)
            if info.sha256 is None:
                logger.warning("dataset %s: file %s has no recorded checksum (uploaded by the original imagingDB "
                               "before it kept them); it is read without verification", serial, info.file_name)
            else:
                with open(temp, "rb") as handle:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
                if digest != info.sha256:
                    raise corrupt(data_storage, serial, "file", info.file_name, digest, info.sha256)
            _move_new(temp, target, serial)
        finally:
            temp.unlink(missing_ok=True)
        return target


def _move_new(temp: Path, target: Path, serial: str) -> None:
    """Give ``temp`` the name ``target``, which must not exist (a file made there meanwhile is not replaced)."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise InputError(f"dataset {serial}: {target} already exists; refusing to overwrite it") from None
    except OSError:  # a file system without hard links: rename, after looking once more
        if target.exists():
            raise InputError(f"dataset {serial}: {target} already exists; refusing to overwrite it") from None
        try:
            os.rename(temp, target)
        except OSError as exc:
            raise StorageError(f"dataset {serial}: cannot move the file into {target}: {exc.strerror}") from None
