"""Download pipeline: select frame rows, fetch objects in parallel, verify sha256, write a folder atomically.

    query (id + filters) -> frame rows -> workers: DataStorage.get -> verify sha256 -> files
"""

import collections
import concurrent.futures
import csv
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
from typing import Sequence

from imaging_db.database.db_ops import FRAME_COLUMNS_WITHOUT_METADATA, Database
from imaging_db.errors import InputError, IntegrityError, NotFoundError, StorageError
from imaging_db.faults import fault_point
from imaging_db.filestorage import DataStorage
from imaging_db.filestorage.data_storage import check_key
from imaging_db.metadata.dataset_id import parse_dataset_id
from imaging_db.pipeline.progress import progress_bar

logger = logging.getLogger(__name__)

GLOBAL_METADATA_FILE = "global_metadata.json"
FRAMES_META_FILE = "frames_meta.csv"
FRAMES_META_COLUMNS = FRAME_COLUMNS_WITHOUT_METADATA


@dataclass
class FrameSelection:
    """Which frames to fetch; None means all along that axis.

    ``channels`` holds names, or indices when every entry is an integer.
    """

    channels: Sequence[str | int] | None = None
    slices: Sequence[int] | None = None
    times: Sequence[int] | None = None
    positions: Sequence[int] | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in (self.channels, self.slices, self.times, self.positions))

    def channel_filter(self) -> tuple[list[int] | None, list[str] | None]:
        """Return (channel indices, channel names): indices when every channel given is an integer."""
        if self.channels is None:
            return None, None
        values = [str(c).strip() for c in self.channels]
        if all(v.lstrip("-").isdigit() for v in values):
            return [int(v) for v in values], None
        return None, values

    def describe(self) -> str:
        parts = []
        for name, values in (("channels", self.channels), ("slices", self.slices),
                             ("times", self.times), ("positions", self.positions)):
            if values is not None:
                parts.append(f"{name} {list(values)}")
        return ", ".join(parts) or "no filter"


@dataclass
class DownloadResult:
    """What one download wrote."""

    dataset_serial: str
    folder: Path
    nbr_frames: int
    nbytes: int
    seconds: float
    files: list[str]

    def summary(self) -> str:
        mb = self.nbytes / 1e6
        rate = mb / self.seconds if self.seconds > 0 else 0.0
        what = f"{self.nbr_frames} frames" if self.nbr_frames else f"{len(self.files)} file(s)"
        return f"{self.dataset_serial}: {what}, {mb:.1f} MB, {self.seconds:.2f} s, {rate:.1f} MB/s -> {self.folder}"


def _json_default(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def global_metadata(info: dict) -> dict:
    """Flatten a dataset's rows into the content of ``global_metadata.json``."""
    data_set = info["data_set"]
    meta = {
        "dataset_serial": data_set["dataset_serial"],
        "description": data_set["description"],
        "microscope": data_set["microscope"],
        "frames": bool(data_set["frames"]),
        "date_time": data_set["date_time"],
        "parent_dataset_id": data_set["parent_dataset_id"],
    }
    extra = info["frames_global"] or info["file_global"] or {}
    for key, value in extra.items():
        if key not in ("id", "data_set_id"):
            meta[key] = value
    return meta


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


def _checked_key(serial: str, storage_dir, name, what: str) -> str:
    """Return the storage key of a frame or file named by the database, once its names are known to be safe.

    Names come from the database, which anyone with write access may have
    edited: the name must stay one plain file in the download folder, and the
    key a key inside the storage.

    Raises
    ------
    IntegrityError
        If either is not.
    """
    if (not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0")
            or len(name.encode("utf-8", "surrogateescape")) > 255):
        raise IntegrityError(f"dataset {serial}: the database gives {what} {name!r}, which is not a "
                             "plain file name; refusing to download the dataset")
    try:
        return check_key(f"{storage_dir}/{name}")
    except InputError:
        raise IntegrityError(f"dataset {serial}: the database gives storage_dir {storage_dir!r}, which is not a "
                             "key prefix inside the storage; refusing to download the dataset") from None


class Downloader:
    """Fetches datasets from one database and one storage.

    Parameters
    ----------
    database : Database
    storage : DataStorage
    nbr_workers : int
        Threads fetching and verifying objects.
    progress : bool or None
        Show a tqdm progress bar (None: only on a terminal).
    """

    def __init__(self, database: Database, storage: DataStorage, nbr_workers: int = 1,
                 progress: bool | None = None):
        self.database = database
        self.storage = storage
        self.nbr_workers = max(1, int(nbr_workers))
        self.progress = progress

    def download(self, dataset_serial: str, dest: str | Path, selection: FrameSelection | None = None,
                 metadata: bool = True, download: bool = True) -> DownloadResult:
        """Write a dataset's frames (or file) and metadata into ``<dest>/<dataset_serial>/``.

        The folder appears whole or not at all: everything is written into a
        hidden temporary folder beside it, then renamed.

        Raises
        ------
        InputError
            On a bad id, an existing target folder, or nothing to do.
        NotFoundError
            If the dataset is unknown or the selection matches no frame.
        IntegrityError
            If a fetched object does not match its recorded sha256.
        StorageError, DatabaseError
            If the storage or database fails.
        """
        start = time.perf_counter()
        selection = selection or FrameSelection()
        serial = parse_dataset_id(dataset_serial).serial
        if not metadata and not download:
            raise InputError(f"dataset {serial}: --no-metadata with --no-download leaves nothing to do")
        dest = Path(dest).expanduser()
        target = dest / serial
        if target.exists():
            raise InputError(f"dataset {serial}: {target} already exists; refusing to overwrite it")
        info = self.database.get_dataset(serial)

        if info["frames_global"] is not None:
            rows = self._select_frames(serial, info["frames_global"]["id"], selection)
        else:
            if not selection.is_empty():
                raise InputError(f"dataset {serial} is a file dataset: channel/slice/time/position filters do not apply")
            if info["file_global"] is None:
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
                files += self._write_metadata(temp, info, rows)
            if download:
                if info["frames_global"] is not None:
                    nbytes = self._fetch_frames(serial, info["frames_global"]["storage_dir"], rows, temp)
                    files += [r["file_name"] for r in rows]
                else:
                    nbytes = self._fetch_file(serial, info["file_global"], temp)
                    files.append(info["file_global"]["file_name"])
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
        return DownloadResult(serial, target, nbr_frames, nbytes, time.perf_counter() - start, files)

    def _select_frames(self, serial: str, frames_global_id: int, selection: FrameSelection) -> list[dict]:
        channel_ids, channel_names = selection.channel_filter()
        rows = self.database.get_frames(
            frames_global_id,
            channel_ids=channel_ids,
            channel_names=channel_names,
            slice_ids=selection.slices,
            time_ids=selection.times,
            pos_ids=selection.positions,
        )
        # Every value asked for must be there: a typo must not silently shrink the download.
        wanted = (
            ("channel", "channel_idx", channel_ids),
            ("channel", "channel_name", channel_names),
            ("slice", "slice_idx", selection.slices),
            ("time", "time_idx", selection.times),
            ("position", "pos_idx", selection.positions),
        )
        missing = []
        for label, column, values in wanted:
            if values is not None:
                present = {r[column] for r in rows}
                missing += [f"{label} {v!r}" if isinstance(v, str) else f"{label} {v}" for v in values if v not in present]
        if missing or not rows:
            available = self.database.frame_index_values(frames_global_id)
            raise NotFoundError(
                f"dataset {serial}: no frames with {', '.join(missing) or selection.describe()}; "
                f"it has channels {available['channel_name']} (indices {available['channel_idx']}), "
                f"slices {available['slice_idx']}, times {available['time_idx']}, positions {available['pos_idx']}"
            )
        return rows

    def _write_metadata(self, folder: Path, info: dict, rows: list[dict]) -> list[str]:
        written = [GLOBAL_METADATA_FILE]
        with open(folder / GLOBAL_METADATA_FILE, "w", encoding="utf-8") as handle:
            json.dump(global_metadata(info), handle, indent=2, default=_json_default)
        if info["frames_global"] is not None:
            with open(folder / FRAMES_META_FILE, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=FRAMES_META_COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            written.append(FRAMES_META_FILE)
        return written

    def _fetch_frame(self, serial: str, storage_dir: str, row: dict, folder: Path) -> int:
        name = row["file_name"]
        key = _checked_key(serial, storage_dir, name, "frame file name")
        data = self.storage.get(key)
        digest = hashlib.sha256(data).hexdigest()
        if digest != row["sha256"]:
            raise IntegrityError(
                f"dataset {serial}: frame {name} in {self.storage.describe()} is corrupt: "
                f"sha256 {digest} does not match the recorded {row['sha256']}"
            )
        path = folder / name
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise StorageError(f"dataset {serial}: cannot write {str(path)!r}: {exc.strerror or exc}") from None
        fault_point("download.frame_written")
        return len(data)

    def _fetch_frames(self, serial: str, storage_dir: str, rows: list[dict], folder: Path) -> int:
        total = 0
        # Remote storage waits on the network, not the CPU: keep as many requests in flight as it is worth.
        threads = max(self.nbr_workers, getattr(self.storage, "parallel_requests", 1))
        with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="imaging_db-download") as pool, \
                progress_bar(len(rows), serial, "frame", self.progress) as bar:
            in_flight: collections.deque = collections.deque()
            try:
                for row in rows:
                    in_flight.append(pool.submit(self._fetch_frame, serial, storage_dir, row, folder))
                    while len(in_flight) >= 2 * threads:
                        total += in_flight.popleft().result()
                        bar.update(1)
                while in_flight:
                    total += in_flight.popleft().result()
                    bar.update(1)
            except BaseException:
                for future in in_flight:
                    future.cancel()
                raise
        return total

    def _fetch_file(self, serial: str, file_global: dict, folder: Path) -> int:
        name = file_global["file_name"]
        key = _checked_key(serial, file_global["storage_dir"], name, "file name")
        path = folder / name
        self.storage.get_file(key, path)
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if digest != file_global["sha256"]:
            raise IntegrityError(
                f"dataset {serial}: file {name} in {self.storage.describe()} is corrupt: "
                f"sha256 {digest} does not match the recorded {file_global['sha256']}"
            )
        return path.stat().st_size


def open_for_reading(login: str | Path | None, storage: str, storage_access: str | None,
                     s3_endpoint_url: str | None, nbr_workers: int | None,
                     missing: str) -> tuple[Database, DataStorage, int]:
    """The database, storage and worker count of a command that reads datasets (download, verify).

    The database is opened without creating it: a missing SQLite file is a
    NotFoundError whose message starts with ``missing``.

    Raises
    ------
    InputError
        On a bad login, storage or worker count.
    NotFoundError
        If the SQLite database file does not exist.
    """
    from imaging_db.database.connection import load_login
    from imaging_db.defaults import DEFAULT_NBR_WORKERS
    from imaging_db.filestorage import make_storage

    workers = nbr_workers or DEFAULT_NBR_WORKERS
    if workers < 1:
        raise InputError(f"nbr_workers must be at least 1, not {workers}")
    url = load_login(login)
    data_storage = make_storage(storage, storage_access, s3_endpoint_url=s3_endpoint_url,
                                max_connections=2 * workers)
    try:
        database = Database(url, create=False)
    except NotFoundError as exc:
        raise NotFoundError(f"{missing}: {exc}") from None
    return database, data_storage, workers


def download_dataset(dataset_serial: str, dest: str | Path, login: str | Path | None = None,
                     selection: FrameSelection | None = None, metadata: bool = True, download: bool = True,
                     storage: str = "local", storage_access: str | None = None,
                     s3_endpoint_url: str | None = None, nbr_workers: int | None = None,
                     progress: bool | None = None) -> DownloadResult:
    """Download one dataset: the library behind ``data_downloader``.

    See :meth:`Downloader.download` for what is written and raised.
    """
    database, data_storage, workers = open_for_reading(
        login, storage, storage_access, s3_endpoint_url, nbr_workers,
        missing=f"dataset {dataset_serial} cannot be looked up")
    try:
        return Downloader(database, data_storage, workers, progress).download(
            dataset_serial, dest, selection, metadata=metadata, download=download)
    finally:
        database.dispose()
