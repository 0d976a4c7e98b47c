"""Records that travel between the database layer and the pipelines, without table row ids."""

import dataclasses
import datetime
from dataclasses import dataclass

from imaging_db.filestorage import StorageLocation

@dataclass
class DatasetRecord:
    """The data_set row of a dataset about to be registered."""

    serial: str
    date_time: datetime.datetime
    frames: bool
    description: str | None = None
    microscope: str | None = None
    parent_serial: str | None = None
    location: StorageLocation | None = None


@dataclass(frozen=True)
class FramesLayout:
    """How many frames a frames dataset has along each axis, and their size and type."""

    nbr_frames: int
    im_width: int
    im_height: int
    im_colors: int
    bit_depth: str
    nbr_slices: int
    nbr_channels: int
    nbr_timepoints: int
    nbr_positions: int


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset, as the readers (download, verify, the Python API) see it.

    Attributes
    ----------
    serial : str
        The dataset id.
    frames : bool
        True for a frames dataset, False for a file dataset.
    storage_dir : str or None
        The key prefix of its objects; None if neither frames nor a file are registered.
    layout : FramesLayout or None
        A frames dataset's layout.
    file_name, sha256 : str or None
        A file dataset's file name and checksum.
    metadata : dict or None
        The global metadata recorded at upload.
    location : StorageLocation or None
        Where its objects were stored; None if not recorded (uploaded before imaging_db recorded it).
    """

    serial: str
    frames: bool
    date_time: datetime.datetime
    description: str | None
    microscope: str | None
    parent_serial: str | None
    storage_dir: str | None
    layout: FramesLayout | None = None
    file_name: str | None = None
    sha256: str | None = None
    metadata: dict | None = None
    location: StorageLocation | None = None

    def global_metadata(self) -> dict:
        """The content of ``global_metadata.json``: the dataset's columns flattened, in table order."""
        meta = {
            "dataset_serial": self.serial,
            "description": self.description,
            "microscope": self.microscope,
            "frames": self.frames,
            "date_time": self.date_time,
            "parent_dataset_id": self.parent_serial,
        }
        if self.layout is not None:
            meta["storage_dir"] = self.storage_dir
            meta.update({name: getattr(self.layout, name) for name in LAYOUT_COLUMNS})
            meta["metadata_json"] = self.metadata
        elif self.file_name is not None:
            meta.update(storage_dir=self.storage_dir, file_name=self.file_name, metadata_json=self.metadata,
                        sha256=self.sha256)
        return meta


@dataclass(frozen=True, slots=True)
class FrameRow:
    """One frame of a dataset: its indices, channel name, object name, checksum and (if read) metadata."""

    channel_idx: int
    slice_idx: int
    time_idx: int
    pos_idx: int
    channel_name: str | None
    file_name: str
    sha256: str
    metadata_json: dict | None = None

    @property
    def indices(self) -> tuple[int, int, int, int]:
        """``(channel, slice, time, position)``."""
        return self.channel_idx, self.slice_idx, self.time_idx, self.pos_idx


@dataclass(frozen=True)
class DatasetLocation:
    """Where a registered dataset's objects are, and how many rows name them (for ``data_verify``).

    ``nbr_rows`` counts its frames rows, or is 1 for its file (0 if neither is registered).
    ``location`` is where it was stored (None if not recorded).
    """

    serial: str
    frames: bool
    storage_dir: str | None
    nbr_rows: int
    file_name: str | None = None
    sha256: str | None = None
    location: StorageLocation | None = None


# The frames columns, in the order of FrameRow's fields.
FRAME_COLUMNS = tuple(f.name for f in dataclasses.fields(FrameRow))
# What identifies and locates a frame: everything but its (large) metadata.
FRAME_COLUMNS_WITHOUT_METADATA = tuple(c for c in FRAME_COLUMNS if c != "metadata_json")
# The frames_global columns that describe a frames dataset's layout, in table order.
LAYOUT_COLUMNS = tuple(f.name for f in dataclasses.fields(FramesLayout))


# The data_set columns recording where a dataset's objects are.
LOCATION_COLUMNS = ("storage", "storage_access", "s3_endpoint_url")


def location_values(location: StorageLocation | None) -> dict:
    """The data_set columns that record ``location``."""
    if location is None:
        return dict.fromkeys(LOCATION_COLUMNS)
    return dict(zip(LOCATION_COLUMNS, (location.kind, location.access, location.s3_endpoint_url)))


def location_from(row) -> StorageLocation | None:
    """The location recorded in a row holding the data_set columns ``storage``, ``storage_access``, ``s3_endpoint_url``."""
    if row["storage"] is None:
        return None
    return StorageLocation(row["storage"], row["storage_access"], row["s3_endpoint_url"])
