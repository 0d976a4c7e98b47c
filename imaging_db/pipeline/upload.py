"""Upload pipeline: stream each planned dataset's frames through a worker pool, register it in one commit.

    DatasetPlan (see plan.py) -> Splitter.frames() -> workers: PNG encode + sha256 + storage writer
                              -> rows spooled to a temporary file -> one transaction: data_set + frames_global + frames
"""

import collections
import concurrent.futures
import contextlib
import hashlib
import logging
import time
from pathlib import Path

from imaging_db.database.frames_summary import SummaryBuilder
from imaging_db.database.db_ops import Database, DatasetRecord
from imaging_db.errors import DatasetExistsError, ImagingDBError, InputError
from imaging_db.faults import fault_point
from imaging_db.filestorage import DataStorage, StorageLocation, StoredObject
from imaging_db.metadata.upload_config import UploadConfig, apply_overrides, load_upload_config
from imaging_db.metadata.upload_csv import UploadRow, read_upload_csv
from imaging_db.pipeline import keys
from imaging_db.pipeline.frame_store import store_frame
from imaging_db.pipeline.plan import DatasetPlan, DatasetResult, Planner, already_registered
from imaging_db.pipeline.progress import progress_bar
from imaging_db.pipeline.row_spool import RowSpool
from imaging_db.pipeline.stores import open_for_upload

logger = logging.getLogger(__name__)

_IN_FLIGHT_BYTES = 16 * 2**20


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
    skip_existing : bool
        A dataset id already registered is reported as skipped, a success,
        rather than refused (a nightly job can rerun its CSV).
    """

    def __init__(self, database: Database, storage: DataStorage, config: UploadConfig,
                 nbr_workers: int = 1, override: bool = False, progress: bool | None = None,
                 skip_existing: bool = False):
        self.database = database
        self.storage = storage
        self.config = config
        self.nbr_workers = max(1, int(nbr_workers))
        self.override = override
        self.skip_existing = skip_existing
        self.progress = progress

    def prepare(self, rows: list[UploadRow]) -> tuple[list[DatasetPlan], list[DatasetResult]]:
        """Check every row before anything is written: see :meth:`Planner.prepare`."""
        return Planner(self.database, self.storage, self.config, self.skip_existing).prepare(rows)

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
        if self.database.existing_serials([serial]):  # registered by another run since prepare() looked
            return already_registered(serial, self.database, self.skip_existing)
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
            location=StorageLocation.of(self.storage),
        )

    def _max_in_flight(self, held_bytes: int) -> int:
        """How many frames may be read but not yet stored.

        Each holds its pixels (``held_bytes``: none for pixels left in the file
        until a worker encodes them). Enough to keep every worker busy while the
        next frame is read, and otherwise no more than _IN_FLIGHT_BYTES of
        pixels, so memory does not grow with the frame size or the file size.
        """
        by_bytes = _IN_FLIGHT_BYTES // max(1, held_bytes)
        return max(self.nbr_workers + 1, min(2 * self.nbr_workers, by_bytes))

    def _upload_frames(self, plan: DatasetPlan) -> DatasetResult:
        prefix = keys.frames_dir(plan.serial)
        # How the splitter read the input where a misread would not show (known since the planner's scan).
        result = DatasetResult(plan.serial, ok=False, notes=list(plan.splitter.notes()))
        rows = RowSpool()  # on disk: memory does not grow with the number of frames
        summary = SummaryBuilder()  # of the frames' metadata, made by the workers as they serialize it
        first_where = shape = None
        in_flight: collections.deque = collections.deque()
        max_in_flight = 0

        def collect(future: concurrent.futures.Future) -> None:
            stored = future.result()
            rows.add(stored.row)
            result.raw_bytes += stored.raw_bytes
            result.stored_bytes += stored.stored_bytes
            result.skipped_frames += stored.skipped
            bar.update(1)
            writer.raise_failures()

        writer = self.storage.writer()
        try:
            # Left in reverse order: queued frames are cancelled, the bar closed, the workers
            # finish (one may wait for room in the writer's queue), then the writer's own puts.
            with contextlib.ExitStack() as stack:
                stack.enter_context(writer)
                pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(
                    self.nbr_workers, thread_name_prefix="imaging_db-upload"))
                bar = stack.enter_context(progress_bar(plan.nbr_frames, plan.serial, "frame", self.progress))
                stack.callback(lambda: [future.cancel() for future in in_flight])
                for frame in plan.splitter.frames(read_pixels=True):
                    fault_point("upload.frame_read")
                    pixels = frame.pixels
                    if shape is None:
                        shape, first_where = (pixels.shape, pixels.dtype), frame.where
                        max_in_flight = self._max_in_flight(pixels.held_bytes)
                    elif (pixels.shape, pixels.dtype) != shape:
                        raise InputError(
                            f"dataset {plan.serial}: {frame.where}: frame is {pixels.dtype} {pixels.shape} "
                            f"but {first_where} is {shape[1]} {shape[0]}; all frames must match"
                        )
                    in_flight.append(pool.submit(store_frame, frame, prefix, self.storage, writer, plan.existing,
                                                 self.config.png_compression, summary))
                    frame = pixels = None
                    while len(in_flight) >= max_in_flight:
                        collect(in_flight.popleft())
                while in_flight:
                    collect(in_flight.popleft())
                writer.finish()
        except BaseException as exc:
            rows.close()
            if isinstance(exc, InputError):
                # Bad data will not get better on a rerun: leave no orphan objects behind.
                self._delete(writer.written)
            elif isinstance(exc, ImagingDBError):
                raise type(exc)(f"{exc} (frames stored so far are kept: rerun with --override to resume)") from exc
            raise

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
            self._register(plan, writer.written, lambda: self.database.insert_frames_dataset(
                self._record(plan, frames=True), frames_global, rows.sorted_rows(), summary))
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
                    s3_endpoint_url: str | None = None, nbr_workers: int | None = None, override: bool = False,
                    progress: bool | None = None, skip_existing: bool = False) -> list[DatasetResult]:
    """Upload every dataset of an upload CSV: the library behind ``data_uploader``.

    Parameters
    ----------
    csv_path : path
        The upload CSV (``dataset_id``, ``file_name``, ...).
    login : path, optional
        Database login JSON; default the embedded SQLite database.
    config : path
        Upload config JSON.
    storage, storage_access, s3_endpoint_url, nbr_workers : optional
        Override the config's values.
    override : bool
        Resume interrupted uploads.
    progress : bool or None
        Progress bars (None: only on a terminal).
    skip_existing : bool
        Report datasets already registered as skipped (``ok`` and
        ``skipped``) instead of refusing them.

    Returns
    -------
    list of DatasetResult
        One per CSV row, in CSV order; refused datasets have ``ok=False``.

    Raises
    ------
    InputError
        If any input is invalid; nothing has been written then.
    """
    upload_config = apply_overrides(load_upload_config(config), storage=storage, storage_access=storage_access,
                                    s3_endpoint_url=s3_endpoint_url, nbr_workers=nbr_workers)
    rows = read_upload_csv(csv_path)
    database, data_storage, workers = open_for_upload(login, upload_config)
    try:
        uploader = Uploader(database, data_storage, upload_config, nbr_workers=workers,
                            override=override, progress=progress, skip_existing=skip_existing)
        plans, refused = uploader.prepare(rows)
        if plans:
            database.create_tables()
        results = {r.dataset_serial: r for r in refused + uploader.upload(plans)}
        return [results[row.dataset_id.serial] for row in rows]
    finally:
        database.dispose()
