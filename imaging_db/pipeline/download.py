"""Download pipeline: select frame rows, fetch objects in parallel, verify sha256, write a folder atomically.

    query (id + filters) -> frame rows -> workers: DataStorage.get -> verify sha256 -> files
"""

import contextlib
import datetime
import glob
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from imaging_db.database.db_ops import Database
from imaging_db.database.frame_metadata_rows import stream_frame_metadata
from imaging_db.database.records import FRAME_COLUMNS_WITHOUT_METADATA, DatasetInfo, FrameRow
from imaging_db.errors import InputError, NotFoundError, StorageError
from imaging_db.faults import fault_point
from imaging_db.filestorage import DataStorage
from imaging_db.metadata.dataset_id import parse_dataset_id
from imaging_db.pipeline.export import (STORED_FORMAT, ExportPlan, ExportResult, PhysicalSizes, check_format,
                                       export_frames)
from imaging_db.pipeline.frame_metadata import write_frames_meta_csv
from imaging_db.pipeline.frame_reader import checked_key, corrupt, read_frames
from imaging_db.pipeline.selection import FrameSelection, select_frames
from imaging_db.pipeline.stores import DatasetStorages, open_for_reading

logger = logging.getLogger(__name__)

GLOBAL_METADATA_FILE = "global_metadata.json"
FRAMES_META_FILE = "frames_meta.csv"
FRAMES_META_COLUMNS = FRAME_COLUMNS_WITHOUT_METADATA


@dataclass
class DownloadResult:
    """What one download wrote.

    Attributes
    ----------
    dataset_serial : str
    folder : Path
        ``<dest>/<dataset_serial>``.
    nbr_frames : int
        Frames written (0 for a file dataset, or with ``download=False``).
    nbytes : int
        Bytes of the frames (or file, or exported images) written, metadata files left out.
    seconds : float
    files : list of str
        What was written in ``folder``: metadata files, then frames, the file, or one image per position.
    format : str
        ``png`` (the stored frames), or the export format.
    """

    dataset_serial: str
    folder: Path
    nbr_frames: int
    nbytes: int
    seconds: float
    files: list[str]
    format: str = STORED_FORMAT

    def summary(self) -> str:
        mb = self.nbytes / 1e6
        rate = mb / self.seconds if self.seconds > 0 else 0.0
        what = f"{self.nbr_frames} frames" if self.nbr_frames else f"{len(self.files)} file(s)"
        if self.format != STORED_FORMAT and self.nbr_frames:
            what += f" as {self.format}"
        return f"{self.dataset_serial}: {what}, {mb:.1f} MB, {self.seconds:.2f} s, {rate:.1f} MB/s -> {self.folder}"

    def to_dict(self) -> dict:
        """The outcome as plain JSON values (``data_downloader --json``)."""
        return {"dataset_id": self.dataset_serial, "format": self.format, "folder": str(self.folder),
                "nbr_frames": self.nbr_frames, "bytes": self.nbytes, "seconds": round(self.seconds, 3),
                "files": list(self.files)}


def _json_default(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _partial_name(serial: str) -> str:
    """``.<id>.<host>.<pid>.<random>.partial``: the hidden folder a download is written into.

    The host and pid say whose it is, so that a later download of the same id
    can tell the folder of a killed run from that of a run still going.
    """
    return f".{serial}.{_host_tag()}.{os.getpid()}.{secrets.token_hex(3)}.partial"


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would end the process there: never take a folder for dead
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    return True


def _remove_dead_partials(dest: Path, serial: str) -> None:
    """Remove the hidden folders that killed downloads of ``serial`` on this machine left in ``dest``.

    Only folders named by :func:`_partial_name` for this id, this host and a
    process that no longer runs are removed; anything else stays.
    """
    host = _host_tag()
    for path in dest.glob(f".{glob.escape(serial)}.{host}.*.partial"):
        fields = path.name[len(serial) + 2:].split(".")
        if len(fields) != 4 or not fields[1].isdigit() or not path.is_dir():
            continue
        pid = int(fields[1])
        if pid != os.getpid() and not _process_alive(pid):
            logger.info("removing %s, left by a killed download of %s", path, serial)
            shutil.rmtree(path, ignore_errors=True)


class Downloader:
    """Fetches datasets from one database, each from its own storage.

    Parameters
    ----------
    database : Database
    storages : DatasetStorages
        Gives each dataset's storage (:meth:`DatasetStorages.fixed` for one storage for all).
    nbr_workers : int
        Threads fetching and verifying objects.
    progress : bool or None
        Show a tqdm progress bar (None: only on a terminal).
    """

    def __init__(self, database: Database, storages: DatasetStorages, nbr_workers: int = 1,
                 progress: bool | None = None):
        self.database = database
        self.storages = storages
        self.nbr_workers = max(1, int(nbr_workers))
        self.progress = progress

    def download(self, dataset_serial: str, dest: str | Path, selection: FrameSelection | None = None,
                 metadata: bool = True, download: bool = True, frame_metadata: bool = False,
                 format: str = STORED_FORMAT) -> DownloadResult:
        """Write a dataset's frames (or file) and metadata into ``<dest>/<dataset_serial>/``.

        The folder appears whole or not at all: everything is written into a
        hidden temporary folder beside it, then renamed.

        Parameters
        ----------
        dataset_serial : str
        dest : str or Path
        selection : FrameSelection, optional
            Which frames (None: all).
        metadata : bool
            Write ``global_metadata.json`` and ``frames_meta.csv``.
        download : bool
            Write the frames (or file).
        frame_metadata : bool
            Add each frame's own metadata to ``frames_meta.csv``, a column per key
            (see :mod:`imaging_db.pipeline.frame_metadata`); read from the
            database as the file is written, a batch of rows at a time.
        format : str
            ``png``: the stored frames as they are; or an export format of
            :data:`imaging_db.pipeline.export.EXPORT_FORMATS` (``ome-zarr``,
            ``tiff``): one image per position (see :mod:`imaging_db.pipeline.export`).

        Raises
        ------
        InputError
            On a bad id, an existing target folder, nothing to do, an unknown
            format, a file dataset with an export format, or RGB frames to export.
        NotFoundError
            If the dataset is unknown or the selection matches no frame.
        IntegrityError
            If a fetched object does not match its recorded sha256.
        StorageError, DatabaseError
            If the storage or database fails.
        """
        start = time.perf_counter()
        selection = selection or FrameSelection()
        serial = parse_dataset_id(dataset_serial, registered=True).serial
        if not metadata and not download:
            raise InputError(f"dataset {serial}: --no-metadata with --no-download leaves nothing to do")
        if frame_metadata and not metadata:
            raise InputError(f"dataset {serial}: --frame-metadata adds columns to frames_meta.csv, which "
                             "--no-metadata leaves out; give one of them")
        dest = Path(dest).expanduser()
        target = dest / serial
        if target.exists():
            raise InputError(f"dataset {serial}: {target} already exists; refusing to overwrite it")
        info = self.database.get_dataset(serial)
        check_format(serial, format, info.layout is not None)

        plan = None
        if info.layout is not None:
            rows = select_frames(self.database, serial, selection)
            if download and format != STORED_FORMAT:
                plan = ExportPlan(info, rows, format)  # a selection that cannot be exported fails here
        else:
            if not selection.is_empty():
                raise InputError(f"dataset {serial} is a file dataset: channel/slice/time/position filters do not apply")
            if info.file_name is None:
                raise NotFoundError(f"dataset {serial} has neither frames nor a file registered")
            rows = []

        try:
            dest.mkdir(parents=True, exist_ok=True)
            _remove_dead_partials(dest, serial)
            temp = dest / _partial_name(serial)
            temp.mkdir()
        except OSError as exc:
            raise StorageError(f"dataset {serial}: cannot create a folder in {dest}: {exc.strerror}") from None
        try:
            files, nbytes = [], 0
            if metadata:
                files += self._write_metadata(temp, info, rows, frame_metadata)
            if download:
                storage = self.storages.for_dataset(info.location)
                if plan is not None:
                    exported = self._export(storage, plan, temp)
                    nbytes = exported.nbytes
                    files += exported.files
                elif info.layout is not None:
                    nbytes = self._write_frames(storage, info, rows, temp)
                    files += [row.file_name for row in rows]
                else:
                    nbytes = self._fetch_file(storage, info, temp)
                    files.append(info.file_name)
            fault_point("download.before_rename")
            try:
                os.rename(temp, target)
            except OSError as exc:
                raise StorageError(f"dataset {serial}: cannot move the download into {target}: {exc.strerror}") from None
            fault_point("download.renamed")
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        nbr_frames = len(rows) if download else 0
        return DownloadResult(serial, target, nbr_frames, nbytes, time.perf_counter() - start, files, format)

    def _write_metadata(self, folder: Path, info: DatasetInfo, rows: list[FrameRow],
                        frame_metadata: bool = False) -> list[str]:
        written = [GLOBAL_METADATA_FILE]
        with open(folder / GLOBAL_METADATA_FILE, "w", encoding="utf-8") as handle:
            json.dump(info.global_metadata(), handle, indent=2, default=_json_default)
        if info.layout is not None:
            metadata = stream_frame_metadata(self.database, info.serial, rows) if frame_metadata else None
            write_frames_meta_csv(folder / FRAMES_META_FILE, rows, metadata, f"dataset {info.serial}")
            written.append(FRAMES_META_FILE)
        return written

    def _export(self, storage: DataStorage, plan: ExportPlan, folder: Path) -> ExportResult:
        """Write the frames of an export plan as one image per position."""
        # The global metadata (an acquisition summary, OME-XML sizes), then the first frame's (Micro-Manager
        # records PixelSizeUm with every frame).
        with contextlib.closing(stream_frame_metadata(self.database, plan.info.serial, plan.rows[:1])) as stream:
            first = next(stream, None)
        sizes = PhysicalSizes.from_metadata(plan.info.metadata, first)
        return export_frames(plan.format, plan, storage, folder, sizes, self.nbr_workers, self.progress)

    def _write_frames(self, storage: DataStorage, info: DatasetInfo, rows: list[FrameRow], folder: Path) -> int:
        def write(row: FrameRow, data: bytes) -> int:  # on the reader's worker threads
            path = folder / row.file_name
            try:
                path.write_bytes(data)
            except OSError as exc:
                raise StorageError(f"dataset {info.serial}: cannot write {str(path)!r}: {exc.strerror or exc}") from None
            fault_point("download.frame_written")
            return len(data)

        return sum(size for _, size in read_frames(storage, info, rows, self.nbr_workers, self.progress,
                                                    then=write))

    def _fetch_file(self, storage: DataStorage, info: DatasetInfo, folder: Path) -> int:
        key = checked_key(info.serial, info.storage_dir, info.file_name, "file name")
        path = folder / info.file_name
        storage.get_file(key, path)
        if info.sha256 is None:
            logger.warning("dataset %s: file %s has no recorded checksum (uploaded by the original imagingDB before "
                           "it kept them); it is downloaded without verification", info.serial, info.file_name)
            return path.stat().st_size
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if digest != info.sha256:
            raise corrupt(storage, info.serial, "file", info.file_name, digest, info.sha256)
        return path.stat().st_size


def download_dataset(dataset_serial: str, dest: str | Path, login: str | Path | None = None,
                     selection: FrameSelection | None = None, metadata: bool = True, download: bool = True,
                     storage: str | None = None, storage_access: str | None = None,
                     s3_endpoint_url: str | None = None, nbr_workers: int | None = None,
                     progress: bool | None = None, frame_metadata: bool = False,
                     format: str = STORED_FORMAT) -> DownloadResult:
    """Download one dataset: the library behind ``data_downloader``.

    The dataset is read from the storage its record names; ``storage``,
    ``storage_access`` and ``s3_endpoint_url`` override it (data moved).
    See :meth:`Downloader.download` for what is written and raised.
    """
    database, storages, workers = open_for_reading(
        login, storage, storage_access, s3_endpoint_url, nbr_workers,
        missing=f"dataset {dataset_serial} cannot be looked up", doing=f"looking up dataset {dataset_serial}")
    try:
        return Downloader(database, storages, workers, progress).download(
            dataset_serial, dest, selection, metadata=metadata, download=download, frame_metadata=frame_metadata,
            format=format)
    finally:
        database.dispose()
