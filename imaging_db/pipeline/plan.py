"""The checks before any write: every row, file, frame and metadata of an upload, and the plan they make.

    CSV rows + config -> Planner.prepare() -> DatasetPlan per dataset to upload, DatasetResult per refused one

Nothing is written here; whatever would fail later (a bad index, a channel
name no database stores, a duplicate frame, metadata failing meta_schema)
is refused now, so that an upload never stops half-way on bad input.
"""

import logging
from dataclasses import dataclass, field

from imaging_db.database.db_ops import Database
from imaging_db.errors import ImagingDBError, InputError
from imaging_db.filestorage import DataStorage, StoredObject
from imaging_db.filestorage.data_storage import check_key
from imaging_db.images.splitters import Splitter, make_splitter
from imaging_db.json_text import text_problem
from imaging_db.metadata.filename_parsers import get_filename_parser
from imaging_db.metadata.meta_schema import load_meta_schema
from imaging_db.metadata.upload_config import UploadConfig
from imaging_db.metadata.upload_csv import UploadRow
from imaging_db.pipeline import keys

logger = logging.getLogger(__name__)

# Frame indices are stored in 32-bit integer columns.
_INDEX_MAX = 2**31 - 1


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
    skipped: bool = False  # already registered, left as it is (--skip-existing)
    notes: list[str] = field(default_factory=list)  # how the input was read, when a misread would not show

    @property
    def status(self) -> str:
        """``uploaded``, ``skipped`` or ``failed``."""
        return "failed" if not self.ok else "skipped" if self.skipped else "uploaded"

    def to_dict(self) -> dict:
        """The outcome and figures, for ``data_uploader --json``."""
        return {
            "dataset_id": self.dataset_serial, "status": self.status, "upload_type": (
                None if self.skipped or not self.ok else "file" if self.file_name is not None else "frames"),
            "nbr_frames": self.nbr_frames, "file_name": self.file_name, "raw_bytes": self.raw_bytes,
            "stored_bytes": self.stored_bytes, "already_stored": self.skipped_frames,
            "seconds": round(self.seconds, 3), "notes": list(self.notes), "error": self.error,
        }

    def summary(self) -> str:
        """One line for the user."""
        if not self.ok:
            return f"{self.dataset_serial}: FAILED: {self.error}"
        if self.skipped:
            return f"{self.dataset_serial}: already registered, skipped"
        notes = "".join(f" ({note})" for note in self.notes)
        mb = self.raw_bytes / 1e6
        rate = mb / self.seconds if self.seconds > 0 else 0.0
        if self.file_name is not None:
            kept = " (already stored)" if self.skipped_frames else ""
            return (f"{self.dataset_serial}: file {self.file_name}, {mb:.1f} MB{kept}, "
                    f"{self.seconds:.2f} s, {rate:.1f} MB/s{notes}")
        fps = self.nbr_frames / self.seconds if self.seconds > 0 else 0.0
        resumed = f", {self.skipped_frames} already stored" if self.skipped_frames else ""
        return (
            f"{self.dataset_serial}: {self.nbr_frames} frames, {mb:.1f} MB raw, "
            f"{self.stored_bytes / 1e6:.1f} MB stored{resumed}, {self.seconds:.2f} s, "
            f"{rate:.1f} MB/s, {fps:.1f} frames/s{notes}"
        )


def already_registered(serial: str, database: Database, skip_existing: bool) -> DatasetResult:
    """The result of a dataset whose id is registered: skipped with ``skip_existing``, else refused."""
    if skip_existing:
        return DatasetResult(serial, ok=True, skipped=True)
    return DatasetResult(serial, ok=False, error=(
        f"dataset {serial} is already in the database {database.describe()}; not touched "
        "(--skip-existing reports it as skipped)"))


class Planner:
    """Checks the rows of an upload against the database, the storage and the files.

    Parameters
    ----------
    database : Database
    storage : DataStorage
    config : UploadConfig
    skip_existing : bool
        A dataset already registered is skipped (a success) rather than refused.
    """

    def __init__(self, database: Database, storage: DataStorage, config: UploadConfig, skip_existing: bool = False):
        self.database = database
        self.storage = storage
        self.config = config
        self.skip_existing = skip_existing
        self._filename_parser = get_filename_parser(config.filename_parser)
        self._default_schema = load_meta_schema(config.meta_schema) if config.meta_schema else None

    def prepare(self, rows: list[UploadRow]) -> tuple[list[DatasetPlan], list[DatasetResult]]:
        """Check every row before anything is written.

        Returns
        -------
        plans : list of DatasetPlan
            The datasets to upload.
        refused : list of DatasetResult
            Datasets not uploaded, untouched: already registered (refused, or
            skipped with ``skip_existing``).

        Raises
        ------
        InputError
            On the first bad row, file, frame or metadata; nothing has been written.
        """
        self.database.check_connection()
        self.database.check_schema()
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
                refused.append(already_registered(serial, self.database, self.skip_existing))
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
