"""A selection of frames as one array with dims ``(p, t, c, z, y, x)`` (and ``s`` for RGB), read now or lazily.

    frame rows -> FrameGrid (the axes, every frame's place) -> read_stack: all frames into one array
                                                            -> lazy_stack: a dask array, one frame per chunk

Both read each frame through :func:`imaging_db.pipeline.frame_reader.verified`,
so every frame is checked against its recorded sha256 as it is read. The lazy
array's tasks carry only small picklable values (the dataset's
:class:`StorageLocation`, the key, name and checksum of one frame): a dask
worker process opens the storage itself, once (:func:`process_storage`).
"""

import threading
from dataclasses import dataclass

import numpy as np

from imaging_db.database.records import DatasetInfo, FrameRow
from imaging_db.errors import IntegrityError, NotFoundError
from imaging_db.filestorage import DataStorage, StorageLocation
from imaging_db.images.png import decode_png_into
from imaging_db.pipeline.frame_reader import checked_key, read_frames, verified, warn_unchecked

# The frame axes, outermost first, with the frames row column giving each one's index values.
FRAME_AXES = (("p", "pos_idx"), ("t", "time_idx"), ("c", "channel_idx"), ("z", "slice_idx"))
IMAGE_DIMS = ("y", "x")
SAMPLE_DIM = "s"
# How many missing frames an error names before it only counts them.
_MISSING_SHOWN = 10


@dataclass(frozen=True)
class FrameType:
    """What every frame of a dataset decodes to: small and picklable, it travels with each lazy chunk.

    Attributes
    ----------
    serial : str
        The dataset id, for messages.
    shape : tuple
        ``(height, width)``, or ``(height, width, 3)`` for RGB.
    dtype : str
        ``"uint8"`` or ``"uint16"``.
    """

    serial: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, info: DatasetInfo) -> "FrameType":
        """The frame type of a frames dataset, from its layout.

        Raises
        ------
        IntegrityError
            If the layout is not a frame type imaging_db stores.
        """
        layout = info.layout
        if layout.bit_depth not in ("uint8", "uint16") or layout.im_colors not in (1, 3):
            raise IntegrityError(f"dataset {info.serial}: the database gives frames of {layout.bit_depth} with "
                                 f"{layout.im_colors} colours; only uint8 or uint16, grey or RGB are stored")
        return cls(info.serial, (layout.im_height, layout.im_width) + ((3,) if layout.im_colors == 3 else ()),
                   layout.bit_depth)

    def decode(self, storage: DataStorage, name: str, data: bytes, out: np.ndarray | None = None) -> np.ndarray:
        """The pixels of frame ``name`` from its verified PNG bytes, decoded into ``out`` if given.

        Raises
        ------
        IntegrityError
            If the bytes are not a PNG, or not one of this shape and type (``out`` is then untouched).
        """
        if out is None:
            out = np.empty(self.shape, dtype=self.dtype)
        pixels = decode_png_into(data, out, f"dataset {self.serial}: frame {name} in {storage.describe()}")
        if pixels is not out:
            raise IntegrityError(
                f"dataset {self.serial}: frame {name} in {storage.describe()} holds {pixels.dtype} pixels of shape "
                f"{pixels.shape}, not the dataset's {self.dtype} of shape {self.shape}")
        return pixels


class FrameGrid:
    """Where each selected frame goes in the stack: the index values along p, t, c, z.

    Parameters
    ----------
    info : DatasetInfo
        A frames dataset.
    rows : list of FrameRow
        Its selected frames.

    Attributes
    ----------
    axes : dict
        ``{"p": (0, 1), "t": (...), "c": (...), "z": (...)}``: the index values along each axis, sorted.
    channel_names : tuple
        The name of each channel of ``axes["c"]``.
    frame : FrameType

    Raises
    ------
    NotFoundError
        If the rows are not a full grid: a frame is missing (the message names the missing indices).
    IntegrityError
        If two rows have the same indices, or the dataset's layout is not a frame type imaging_db stores.
    """

    def __init__(self, info: DatasetInfo, rows: list[FrameRow]):
        self.serial = info.serial
        self.frame = FrameType.of(info)
        self.axes = {dim: tuple(sorted({getattr(row, column) for row in rows})) for dim, column in FRAME_AXES}
        self._places = {dim: {value: i for i, value in enumerate(values)} for dim, values in self.axes.items()}
        names: dict[int, str | None] = {}
        for row in rows:
            names.setdefault(row.channel_idx, row.channel_name)
        self.channel_names = tuple(names[c] for c in self.axes["c"])
        self._check_full(rows)

    def _check_full(self, rows: list[FrameRow]) -> None:
        found = {self.index(row) for row in rows}
        if len(found) < len(rows):
            seen, twice = set(), []
            for row in rows:
                if row.indices in seen:
                    twice.append(row.file_name)
                seen.add(row.indices)
            raise IntegrityError(f"dataset {self.serial}: the database lists frames {twice[:_MISSING_SHOWN]} twice "
                                 "(the same channel, slice, time and position)")
        if len(found) == int(np.prod(self.shape[:4])):
            return
        present = np.zeros(self.shape[:4], dtype=bool)
        present[tuple(np.array(sorted(found)).T)] = True
        missing = np.argwhere(~present)
        shown = ", ".join(
            "(" + ", ".join(f"{dim} {self.axes[dim][i]}" for (dim, _), i in zip(FRAME_AXES, place)) + ")"
            for place in missing[:_MISSING_SHOWN])
        more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
        raise NotFoundError(
            f"dataset {self.serial}: the frames selected are not a full grid of positions {list(self.axes['p'])}, "
            f"times {list(self.axes['t'])}, channels {list(self.axes['c'])} and slices {list(self.axes['z'])}: "
            f"{len(missing)} frame(s) missing: {shown}{more}; select fewer values "
            "(frames_meta lists the frames there are)")

    @property
    def dims(self) -> tuple[str, ...]:
        rgb = len(self.frame.shape) == 3
        return (*(dim for dim, _ in FRAME_AXES), *IMAGE_DIMS, *((SAMPLE_DIM,) if rgb else ()))

    @property
    def shape(self) -> tuple[int, ...]:
        return (*(len(self.axes[dim]) for dim, _ in FRAME_AXES), *self.frame.shape)

    def index(self, row: FrameRow) -> tuple[int, int, int, int]:
        """The place of a row's frame along p, t, c, z."""
        return tuple(self._places[dim][getattr(row, column)] for dim, column in FRAME_AXES)

    def coords(self) -> dict:
        """The coordinates of the stack: the index values of p, t, c, z and the channel names along c."""
        coords = {dim: np.array(self.axes[dim], dtype=np.int64) for dim, _ in FRAME_AXES}
        coords["channel_name"] = ("c", np.array(self.channel_names, dtype=object))
        return coords


def read_stack(storage: DataStorage, info: DatasetInfo, rows: list[FrameRow], grid: FrameGrid,
               nbr_workers: int) -> np.ndarray:
    """Read every frame of ``rows`` into one array of ``grid.shape``.

    Frames are fetched, verified and decoded on the read path's worker
    threads, and each is copied into its place in the array there: besides
    the array, only the frames in flight are held. imaging_db's own PNGs
    decode straight into their place (:func:`decode_png_into`). A remote storage gets more
    fetching threads than ``nbr_workers`` (its requests wait rather than
    compute), up to four per decoder, but at most ``nbr_workers`` of them decode at once.

    Raises
    ------
    IntegrityError
        If a frame does not match its checksum, or is not a PNG of the dataset's shape and type.
    NotFoundError, StorageError
        If a frame cannot be read.
    """
    out = np.empty(grid.shape, dtype=grid.frame.dtype)
    decoding = threading.BoundedSemaphore(nbr_workers)

    def decode_into(row: FrameRow, data: bytes) -> None:  # on the read path's worker threads
        with decoding:
            grid.frame.decode(storage, row.file_name, data, out[grid.index(row)])

    for _ in read_frames(storage, info, rows, nbr_workers, progress=False, then=decode_into, decoding=True):
        pass
    return out


# --------------------------------------------------------------------------- lazy
_process_storages: dict[StorageLocation, DataStorage] = {}
_process_storages_lock = threading.Lock()


def process_storage(location: StorageLocation) -> DataStorage:
    """The storage at ``location``, opened once per process (each dask worker process opens its own client)."""
    with _process_storages_lock:
        storage = _process_storages.get(location)
        if storage is None:
            storage = _process_storages[location] = location.open()
        return storage


def read_block(location: StorageLocation, frame: FrameType, key: str, name: str, sha256: str | None) -> np.ndarray:
    """One chunk of a lazy stack: the frame under ``key``, verified and decoded, shaped ``(1, 1, 1, 1, y, x[, s])``.

    Runs wherever dask runs the task: it needs nothing but its arguments.
    """
    storage = process_storage(location)
    pixels = frame.decode(storage, name, verified(storage, frame.serial, key, name, sha256))
    return pixels.reshape((1, 1, 1, 1, *frame.shape))


def lazy_stack(location: StorageLocation, info: DatasetInfo, rows: list[FrameRow], grid: FrameGrid):
    """A dask array of ``grid.shape`` whose chunks are single frames, each read (by :func:`read_block`) when computed.

    Raises
    ------
    IntegrityError
        If a frame name in the database is unsafe (checked now, before anything is computed).
    """
    import dask.array as da
    from dask.base import tokenize

    keys = [checked_key(info.serial, info.storage_dir, row.file_name, "frame file name") for row in rows]
    warn_unchecked(info.serial, rows)
    frame = grid.frame
    name = "imaging_db-" + info.serial + "-" + tokenize(
        location, frame, grid.shape, [(key, row.sha256) for key, row in zip(keys, rows)])
    image_block = (0,) * len(frame.shape)
    graph = {
        (name, *grid.index(row), *image_block): (read_block, location, frame, key, row.file_name, row.sha256)
        for key, row in zip(keys, rows)
    }
    chunks = (*((1,) * n for n in grid.shape[:4]), *((n,) for n in frame.shape))
    return da.Array(graph, name, chunks, dtype=np.dtype(frame.dtype))
