"""Upload pipeline: validate every input, stream frames through a worker pool, register in one commit.

    CSV row + config -> Splitter.frames() -> workers: PNG encode + sha256 + DataStorage.put
                     -> rows spooled to a temporary file -> one transaction: data_set + frames_global + frames
"""

import collections
import concurrent.futures
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imaging_db.database.db_ops import Database, DatasetRecord
from imaging_db.errors import DatasetExistsError, ImagingDBError, InputError
from imaging_db.faults import fault_point
from imaging_db.filestorage import DataStorage, StoredObject
from imaging_db.filestorage.data_storage import check_key
from imaging_db.images.png import encode_png, png_pieces
from imaging_db.images.splitters import Frame, Splitter, make_splitter
from imaging_db.metadata.filename_parsers import get_filename_parser
from imaging_db.json_text import text_problem, to_json_text
from imaging_db.metadata.meta_schema import load_meta_schema
from imaging_db.metadata.upload_config import UploadConfig
from imaging_db.metadata.upload_csv import UploadRow
from imaging_db.pipeline import keys
from imaging_db.pipeline.progress import progress_bar
from imaging_db.pipeline.row_spool import RowSpool

logger = logging.getLogger(__name__)

_IN_FLIGHT_BYTES = 16 * 2**20
# Frame indices are stored in 32-bit integer columns.
_INDEX_MAX = 2**31 - 1
_QUEUED_PUT_BYTES = 48 * 2**20


@dataclass
class DatasetPlan:
    """A dataset whose inputs have all been checked, ready to upload."""

    row: UploadRow
    upload_type: str
    global_metadata: dict
    splitter: Splitter | None = None
    nbr_frames: int = 0
    existing: dict[str, StoredObject] = field(default_factory=dict)

    @property
    def serial(self) -> str:
        return self.row.dataset_id.serial


@dataclass
class DatasetResult:
    """What happened to one dataset of an upload run."""

    dataset_serial: str
    ok: bool
    nbr_frames: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    skipped_frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    file_name: str | None = None

    def summary(self) -> str:
        """One line for the user."""
        if not self.ok:
            return f"{self.dataset_serial}: FAILED: {self.error}"
        mb = self.raw_bytes / 1e6
        rate = mb / self.seconds if self.seconds > 0 else 0.0
        if self.file_name is not None:
            kept = " (already stored)" if self.skipped_frames else ""
            return (f"{self.dataset_serial}: file {self.file_name}, {mb:.1f} MB{kept}, "
                    f"{self.seconds:.2f} s, {rate:.1f} MB/s")
        fps = self.nbr_frames / self.seconds if self.seconds > 0 else 0.0
        resumed = f", {self.skipped_frames} already stored" if self.skipped_frames else ""
        return (
            f"{self.dataset_serial}: {self.nbr_frames} frames, {mb:.1f} MB raw, "
            f"{self.stored_bytes / 1e6:.1f} MB stored{resumed}, {self.seconds:.2f} s, "
            f"{rate:.1f} MB/s, {fps:.1f} frames/s"
        )


@dataclass
class _StoredFrame:
    row: dict
    raw_bytes: int
    stored_bytes: int
    skipped: bool


class _Putter:
    """Stores encoded frames: inline in the encoding worker, or on an I/O pool for remote storage.

    A storage whose ``parallel_requests`` is above 1 (S3) spends most of a put
    waiting on the network; there the puts run on their own threads, so that
    many requests stay in flight while the workers keep encoding. Frames
    waiting for a put are bounded by count (twice the threads) and by bytes
    (_QUEUED_PUT_BYTES), so memory stays bounded whatever the frame size.
    """

    def __init__(self, storage: DataStorage, written: list[str]):
        self.storage = storage
        self.written = written
        threads = max(1, int(getattr(storage, "parallel_requests", 1)))
        self.pool = None
        if threads > 1:
            self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="imaging_db-put")
        self.max_queued = 2 * threads
        self.queued = 0
        self.queued_bytes = 0
        self.room = threading.Condition()
        self.pending: collections.deque = collections.deque()
        self.lock = threading.Lock()

    def put_stream(self, key: str, pieces) -> int:
        """Store the object made of ``pieces``; return its size.

        Inline, the storage writes the pieces as they come (a local file never
        holds the whole PNG in memory); with an I/O pool they are joined and queued.
        """
        if self.pool is not None:
            data = b"".join(pieces)
            self.put(key, data)
            return len(data)
        size = self.storage.put_stream(key, pieces)
        self.written.append(key)
        return size

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` now, or queue it (called from the encoding workers)."""
        if self.pool is None:
            self.storage.put(key, data)
            self.written.append(key)
            return
        with self.room:
            while self.queued and (self.queued >= self.max_queued
                                   or self.queued_bytes + len(data) > _QUEUED_PUT_BYTES):
                self.room.wait()
            self.queued += 1
            self.queued_bytes += len(data)
        try:
            future = self.pool.submit(self._put_queued, key, data)
        except BaseException:
            self._release(len(data))
            raise
        with self.lock:
            self.pending.append(future)

    def _release(self, size: int) -> None:
        with self.room:
            self.queued -= 1
            self.queued_bytes -= size
            self.room.notify_all()

    def _put_queued(self, key: str, data: bytes) -> None:
        try:
            self.storage.put(key, data)
            self.written.append(key)
        finally:
            self._release(len(data))

    def raise_failures(self) -> None:
        """Raise the error of the first finished put that failed, if any."""
        with self.lock:
            done = []
            while self.pending and self.pending[0].done():
                done.append(self.pending.popleft())
        for future in done:
            future.result()

    def finish(self) -> None:
        """Wait for every queued put; raise the first error."""
        while True:
            with self.lock:
                if not self.pending:
                    return
                future = self.pending.popleft()
            future.result()

    def close(self) -> None:
        """Drop queued puts that have not started and wait for the running ones."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class Uploader:
    """Uploads datasets to one database and one storage.

    Parameters
    ----------
    database : Database
    storage : DataStorage
    config : UploadConfig
    nbr_workers : int
        Threads that encode, hash and store frames.
    override : bool
        Resume interrupted uploads: frames already stored with the same
        content are not stored again.
    progress : bool or None
        Show tqdm progress bars (None: only on a terminal).
    """

    def __init__(self, database: Database, storage: DataStorage, config: UploadConfig,
                 nbr_workers: int = 1, override: bool = False, progress: bool | None = None):
        self.database = database
        self.storage = storage
        self.config = config
        self.nbr_workers = max(1, int(nbr_workers))
        self.override = override
        self.progress = progress
        self._filename_parser = get_filename_parser(config.filename_parser)
        self._default_schema = load_meta_schema(config.meta_schema) if config.meta_schema else None

    # ----------------------------------------------------------------- validation
    def prepare(self, rows: list[UploadRow]) -> tuple[list[DatasetPlan], list[DatasetResult]]:
        """Check every row before anything is written.

        Returns
        -------
        plans : list of DatasetPlan
            The datasets to upload.
        refused : list of DatasetResult
            Datasets refused without touching them (already registered, or
            already in storage without ``override``).

        Raises
        ------
        InputError
            On the first bad row, file, frame or metadata; nothing has been written.
        """
        self.database.check_connection()
        self.storage.check()
        registered = self.database.existing_serials([r.dataset_id.serial for r in rows])
        in_csv = {r.dataset_id.serial for r in rows}
        parents_known = registered | self.database.existing_serials(
            [r.parent_dataset_id.serial for r in rows if r.parent_dataset_id]
        )
        plans, refused = [], []
        earlier: set[str] = set()
        for row in rows:
            serial = row.dataset_id.serial
            parent = row.parent_dataset_id.serial if row.parent_dataset_id else None
            if parent and parent not in parents_known | in_csv:
                raise InputError(
                    f"dataset {serial}, CSV line {row.line}: parent_dataset_id "
                    f"{parent} is neither in the database nor in the CSV"
                )
            if parent and parent not in parents_known and parent not in earlier:
                raise InputError(
                    f"dataset {serial}, CSV line {row.line}: its parent {parent} comes later in the CSV; "
                    "list parents before their children"
                )
            earlier.add(serial)
            if serial in registered:
                refused.append(DatasetResult(serial, ok=False, error=(
                    f"dataset {serial} is already in the database {self.database.describe()}; not touched"
                )))
                continue
            plans.append(self._plan(row))
        return plans, refused

    def _plan(self, row: UploadRow) -> DatasetPlan:
        serial = row.dataset_id.serial
        if self.config.upload_type == "file":
            if not row.file_name.is_file():
                raise InputError(f"dataset {serial}: {row.file_name}: upload_type 'file' needs a file, not a folder")
            if row.positions is not None:
                raise InputError(f"dataset {serial}: positions can only be chosen for ome_tiff frames")
            try:
                check_key(f"{keys.files_dir(serial)}/{row.file_name.name}")
            except InputError as exc:
                raise InputError(f"dataset {serial}: {row.file_name}: this file name cannot be stored ({exc}); "
                                 "rename the file") from None
            plan = DatasetPlan(row, "file", {"file_origin": str(row.file_name)})
        else:
            try:
                splitter = make_splitter(self.config.frames_format, row.file_name, serial, row.positions)
                plan = DatasetPlan(row, "frames", splitter.global_metadata(), splitter=splitter)
                plan.nbr_frames = self._scan(plan, row)
            except ImagingDBError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever a reader raises, the input file is at fault
                logger.debug("dataset %s: reading %s failed", serial, row.file_name, exc_info=True)
                raise InputError(f"dataset {serial}: {row.file_name}: cannot be read "
                                 f"({type(exc).__name__}: {exc})") from None
        if self._filename_parser is not None:
            try:
                plan.global_metadata.update(self._filename_parser(row.file_name.name))
            except InputError as exc:
                raise InputError(f"dataset {serial}: {row.file_name}: {exc}") from None
        return plan

    def _scan(self, plan: DatasetPlan, row: UploadRow) -> int:
        """Read every frame's header, indices and metadata: what would fail later is refused now.

        Shape and dtype come from the TIFF headers (the splitter reads the
        pixels only of float or compressed pages); indices must fit the
        database's 32-bit columns and name a storage key, channel names must
        be text every database stores; then duplicates, meta_schema, positions.
        """
        check = load_meta_schema(row.meta_schema) if row.meta_schema else self._default_schema
        seen: dict[tuple, str] = {}
        positions_found = set()
        layout = first_where = None
        for frame in plan.splitter.frames(read_pixels=False):
            where = frame.where
            # What the database would refuse only at the commit, after every frame is stored.
            for name, value in zip(("channel", "slice", "time", "position"), frame.indices):
                if not 0 <= value <= _INDEX_MAX:
                    raise InputError(f"dataset {plan.serial}: {where}: {name} index {value} is outside "
                                     f"0..{_INDEX_MAX}")
            problem = text_problem(frame.channel_name) if frame.channel_name is not None else None
            if problem:
                raise InputError(f"dataset {plan.serial}: {where}: channel name {frame.channel_name!r} {problem}, "
                                 "which databases cannot store")
            if (frame.shape, frame.dtype) != layout:
                if layout is not None:
                    raise InputError(
                        f"dataset {plan.serial}: {where}: frame is {frame.dtype} {frame.shape} "
                        f"but {first_where} is {layout[1]} {layout[0]}; all frames must match")
                layout, first_where = (frame.shape, frame.dtype), where
            if frame.indices in seen:
                c, z, t, p = frame.indices
                raise InputError(
                    f"dataset {plan.serial}: {where}: duplicate frame channel {c}, slice {z}, time {t}, "
                    f"position {p} (also {seen[frame.indices]})"
                )
            seen[frame.indices] = where
            positions_found.add(frame.pos_idx)
            if check is not None:
                try:
                    problem = check(frame.metadata)
                except InputError as exc:  # the schema itself, e.g. a $ref to nowhere
                    raise InputError(f"dataset {plan.serial}: {exc}") from None
                if problem:
                    raise InputError(f"dataset {plan.serial}: {where}: metadata fails meta_schema: {problem}")
        if row.positions is not None:
            missing = sorted(set(row.positions) - positions_found)
            if missing:
                raise InputError(f"dataset {plan.serial}: {row.file_name}: positions {missing} not found in the files")
        if not seen:
            raise InputError(f"dataset {plan.serial}: {row.file_name}: no frames found")
        return len(seen)

    # ----------------------------------------------------------------- upload
    def upload(self, plans: list[DatasetPlan]) -> list[DatasetResult]:
        """Upload the planned datasets one after another; a failure stops only its dataset."""
        results = []
        bar = progress_bar(len(plans), "datasets", "dataset", self.progress if len(plans) > 1 else False, leave=True)
        for plan in plans:
            start = time.perf_counter()
            try:
                with self.database.claim(plan.serial):
                    result = self._upload_claimed(plan)
            except ImagingDBError as exc:
                result = DatasetResult(plan.serial, ok=False, error=str(exc))
                logger.debug("dataset %s failed", plan.serial, exc_info=True)
            result.seconds = time.perf_counter() - start
            logger.debug(result.summary())
            results.append(result)
            bar.update(1)
        bar.close()
        return results

    def _upload_claimed(self, plan: DatasetPlan) -> DatasetResult:
        """Upload one dataset while this run holds its id's claim.

        What ``prepare`` saw may have changed since: another run may have
        registered the id or stored objects under its prefix and finished.
        Only now, under the claim, is it certain that nobody else writes
        there, so the checks are made again, and the unfinished writes of
        an earlier, killed run of this id are removed.
        """
        serial = plan.serial
        if self.database.existing_serials([serial]):
            return DatasetResult(serial, ok=False, error=(
                f"dataset {serial} is already in the database {self.database.describe()}; not touched"))
        prefix = (keys.frames_dir if plan.upload_type == "frames" else keys.files_dir)(serial) + "/"
        plan.existing = self.storage.list(prefix)
        if plan.existing and not self.override:
            return DatasetResult(serial, ok=False, error=(
                f"dataset {serial}: {self.storage.describe()} already holds {len(plan.existing)} object(s) "
                f"under {prefix} (an interrupted upload?); rerun with --override to resume it"))
        removed = self.storage.discard_partials(prefix)
        if removed:
            logger.info("dataset %s: removed %d unfinished write(s) left under %s by an earlier run",
                        serial, removed, prefix)
        fault_point("upload.claimed")
        if plan.upload_type == "frames":
            return self._upload_frames(plan)
        return self._upload_file(plan)

    def _record(self, plan: DatasetPlan, frames: bool) -> DatasetRecord:
        row = plan.row
        return DatasetRecord(
            serial=plan.serial,
            date_time=row.dataset_id.date_time,
            frames=frames,
            description=row.description,
            microscope=self.config.microscope,
            parent_serial=row.parent_dataset_id.serial if row.parent_dataset_id else None,
        )

    def _already_stored(self, key: str, data: bytes, sha256: str, existing: dict[str, StoredObject]) -> bool:
        stored = existing.get(key)
        if stored is None or stored.size != len(data):
            return False
        if stored.md5 is not None:
            return stored.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
        try:
            return hashlib.sha256(self.storage.get(key)).hexdigest() == sha256
        except ImagingDBError:
            return False

    def _store_frame(self, frame: Frame, prefix: str, existing: dict[str, StoredObject],
                     putter: _Putter) -> _StoredFrame:
        pixels = frame.pixels
        file_name = keys.frame_file_name(*frame.indices)
        key = f"{prefix}/{file_name}"
        skipped = False
        if existing:
            # Resuming: the whole PNG is needed to compare it with what is already stored.
            png = encode_png(pixels, self.config.png_compression)
            sha256 = hashlib.sha256(png).hexdigest()
            stored_bytes = len(png)
            skipped = self._already_stored(key, png, sha256, existing)
            if not skipped:
                if key in existing:
                    # Left by an earlier run of this id with other content (another source file or
                    # setting): ours to replace, as this run holds the id's claim.
                    self.storage.delete(key)
                putter.put(key, png)
            del png
        else:
            hasher = hashlib.sha256()

            def hashed(pieces):
                for piece in pieces:
                    hasher.update(piece)
                    fault_point("upload.encoded_piece")
                    yield piece

            stored_bytes = putter.put_stream(key, hashed(png_pieces(pixels, self.config.png_compression)))
            sha256 = hasher.hexdigest()
        row = {
            "channel_idx": frame.channel_idx,
            "slice_idx": frame.slice_idx,
            "time_idx": frame.time_idx,
            "pos_idx": frame.pos_idx,
            "channel_name": frame.channel_name,
            "file_name": file_name,
            "sha256": sha256,
            # Serialized here, in parallel with the encoding, so the commit only sends text.
            "metadata_json": to_json_text(frame.metadata),
        }
        return _StoredFrame(row, pixels.nbytes, stored_bytes, skipped)

    def _max_in_flight(self, frame_bytes: int) -> int:
        """How many frames may be read but not yet stored.

        Each holds its pixels. Enough to keep every worker busy while the next
        frame is read, and otherwise no more than _IN_FLIGHT_BYTES of pixels, so
        memory does not grow with the frame size or the file size.
        """
        by_bytes = _IN_FLIGHT_BYTES // max(1, frame_bytes)
        return max(self.nbr_workers + 1, min(2 * self.nbr_workers, by_bytes))

    def _upload_frames(self, plan: DatasetPlan) -> DatasetResult:
        prefix = keys.frames_dir(plan.serial)
        result = DatasetResult(plan.serial, ok=False)
        rows = RowSpool()  # on disk: memory does not grow with the number of frames
        written: list[str] = []
        first_where = None
        shape = None
        in_flight: collections.deque = collections.deque()
        max_in_flight = 0

        def collect(future: concurrent.futures.Future) -> None:
            stored = future.result()
            rows.add(stored.row)
            result.raw_bytes += stored.raw_bytes
            result.stored_bytes += stored.stored_bytes
            result.skipped_frames += stored.skipped
            bar.update(1)
            putter.raise_failures()

        putter = _Putter(self.storage, written)
        pool = concurrent.futures.ThreadPoolExecutor(self.nbr_workers, thread_name_prefix="imaging_db-upload")
        bar = progress_bar(plan.nbr_frames, plan.serial, "frame", self.progress)
        try:
            for frame in plan.splitter.frames(read_pixels=True):
                fault_point("upload.frame_read")
                frame_shape = (frame.pixels.shape, frame.pixels.dtype)
                if shape is None:
                    shape, first_where = frame_shape, frame.where
                    # Pixels left in the file (FilePixels) take no memory until a worker encodes them.
                    held = frame.pixels.nbytes if isinstance(frame.pixels, np.ndarray) else 0
                    max_in_flight = self._max_in_flight(held)
                elif frame_shape != shape:
                    raise InputError(
                        f"dataset {plan.serial}: {frame.where}: frame is {frame.pixels.dtype} {frame.pixels.shape} "
                        f"but {first_where} is {shape[1]} {shape[0]}; all frames must match"
                    )
                in_flight.append(pool.submit(self._store_frame, frame, prefix, plan.existing, putter))
                frame = None
                while len(in_flight) >= max_in_flight:
                    collect(in_flight.popleft())
            while in_flight:
                collect(in_flight.popleft())
            putter.finish()
        except BaseException as exc:
            for future in in_flight:
                future.cancel()
            pool.shutdown(wait=True)
            putter.close()
            bar.close()
            rows.close()
            if isinstance(exc, InputError):
                # Bad data will not get better on a rerun: leave no orphan objects behind.
                self._delete(written)
            elif isinstance(exc, ImagingDBError):
                raise type(exc)(f"{exc} (frames stored so far are kept: rerun with --override to resume)") from exc
            raise
        pool.shutdown(wait=True)
        putter.close()
        bar.close()

        height, width = shape[0][:2]
        frames_global = {
            "storage_dir": prefix,
            "nbr_frames": len(rows),
            "im_width": int(width),
            "im_height": int(height),
            "im_colors": int(shape[0][2]) if len(shape[0]) == 3 else 1,
            "bit_depth": str(shape[1]),
            "nbr_slices": len(rows.slices),
            "nbr_channels": len(rows.channels),
            "nbr_timepoints": len(rows.times),
            "nbr_positions": len(rows.positions),
            "metadata_json": plan.global_metadata,
        }
        fault_point("upload.before_commit")
        with rows:
            self._register(plan, written, lambda: self.database.insert_frames_dataset(
                self._record(plan, frames=True), frames_global, rows.sorted_rows()))
        fault_point("upload.committed")
        result.ok = True
        result.nbr_frames = len(rows)
        return result

    def _register(self, plan: DatasetPlan, written: list[str], insert) -> None:
        try:
            insert()
        except DatasetExistsError:
            # Someone registered this id while we uploaded: their objects may be ours; keep them.
            raise
        except InputError:
            self._delete(written)
            raise
        except ImagingDBError as exc:
            raise type(exc)(f"{exc} (objects stay in storage: rerun with --override to resume)") from exc

    def _delete(self, written: list[str]) -> None:
        for key in written:
            try:
                self.storage.delete(key)
            except ImagingDBError as exc:
                logger.warning("could not remove %s after a failed upload: %s", key, exc)

    def _upload_file(self, plan: DatasetPlan) -> DatasetResult:
        path = plan.row.file_name
        prefix = keys.files_dir(plan.serial)
        key = f"{prefix}/{path.name}"
        try:
            sha256 = _sha256_file(path)
            size = path.stat().st_size
        except OSError as exc:
            raise InputError(f"dataset {plan.serial}: {path}: cannot read ({exc.strerror})") from None
        skipped = key in plan.existing and self._file_already_stored(key, path, size, sha256, plan.existing)
        written = []
        if not skipped:
            if key in plan.existing:
                self.storage.delete(key)  # an earlier run's, of this id, whose claim we hold
            self.storage.put_file(key, path)
            written.append(key)
        fault_point("upload.before_commit")
        file_global = {
            "storage_dir": prefix,
            "file_name": path.name,
            "metadata_json": plan.global_metadata,
            "sha256": sha256,
        }
        self._register(plan, written, lambda: self.database.insert_file_dataset(
            self._record(plan, frames=False), file_global))
        return DatasetResult(plan.serial, ok=True, nbr_frames=0, raw_bytes=size, stored_bytes=size,
                             skipped_frames=int(skipped), file_name=path.name)

    def _file_already_stored(self, key: str, path: Path, size: int, sha256: str,
                             existing: dict[str, StoredObject]) -> bool:
        stored = existing[key]
        if stored.size != size:
            return False
        if stored.md5 is not None:
            with open(path, "rb") as handle:
                return hashlib.file_digest(handle, "md5").hexdigest() == stored.md5
        return False


def upload_from_csv(csv_path: str | Path, login: str | Path | None = None, config: str | Path | None = None,
                    storage: str | None = None, storage_access: str | None = None,
                    nbr_workers: int | None = None, override: bool = False,
                    progress: bool | None = None) -> list[DatasetResult]:
    """Upload every dataset of an upload CSV: the library behind ``data_uploader``.

    Parameters
    ----------
    csv_path : path
        The upload CSV (``dataset_id``, ``file_name``, ...).
    login : path, optional
        Database login JSON; default the embedded SQLite database.
    config : path
        Upload config JSON.
    storage, storage_access, nbr_workers : optional
        Override the config's values.
    override : bool
        Resume interrupted uploads.
    progress : bool or None
        Progress bars (None: only on a terminal).

    Returns
    -------
    list of DatasetResult
        One per CSV row, in CSV order; refused datasets have ``ok=False``.

    Raises
    ------
    InputError
        If any input is invalid; nothing has been written then.
    """
    from imaging_db.database.connection import load_login
    from imaging_db.defaults import DEFAULT_NBR_WORKERS
    from imaging_db.filestorage import make_storage
    from imaging_db.metadata.upload_config import load_upload_config
    from imaging_db.metadata.upload_csv import read_upload_csv

    upload_config = load_upload_config(config)
    if storage:
        upload_config.storage = storage
    if storage_access:
        upload_config.storage_access = storage_access
    workers = nbr_workers or upload_config.nbr_workers or DEFAULT_NBR_WORKERS
    if workers < 1:
        raise InputError(f"nbr_workers must be at least 1, not {workers}")
    rows = read_upload_csv(csv_path)
    url = load_login(login)
    data_storage = make_storage(upload_config.storage, upload_config.storage_access,
                                s3_endpoint_url=upload_config.s3_endpoint_url, max_connections=2 * workers)
    database = Database(url)
    try:
        uploader = Uploader(database, data_storage, upload_config, nbr_workers=workers,
                            override=override, progress=progress)
        plans, refused = uploader.prepare(rows)
        if plans:
            database.create_tables()
        results = {r.dataset_serial: r for r in refused + uploader.upload(plans)}
        return [results[row.dataset_id.serial] for row in rows]
    finally:
        database.dispose()
