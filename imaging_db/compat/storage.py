"""The original imagingDB's storage classes for its notebooks: ``LocalStorage`` and ``S3Storage``.

``LocalStorage(storage_dir, nbr_workers=None, access_point=None)`` (and
``S3Storage``, the same) reads the objects of one dataset's folder in storage,
``storage_dir`` (``raw_frames/<dataset id>``, ``raw_files/<dataset id>``),
through imaging_db's storage backends and its read path
(:func:`imaging_db.pipeline.frame_reader.verified`): a frame or file whose
checksum the database records is checked as it is read, by imaging_db's rule
or the original's (the sha256 of the pixels; colour frames it stored in BGR
order come back as RGB). Checksums come from ``frames_meta`` (its ``sha256``
column) or from the database the notebook opened last with ``session_scope``;
an object neither gives one for is read unchecked, with a warning.

Arrays are the original's: ``get_im`` a frame (``(height, width)``, or
``(height, width, 3)`` RGB), ``get_stack`` frames stacked on a last axis,
``get_stack_from_meta`` an array in the order X Y G Z C T P (image height,
width, grey/RGB, slices, channels, times, positions) with its singleton
dimensions squeezed out, and the string of the dimensions left.

Where the objects are read:

1. ``access_point``, if given: the folder holding ``raw_frames/`` (local) or the bucket (S3);
2. else where the database opened last records the dataset, if in this kind of storage;
3. else that database's default storage (``imaging_db_migrate --default-storage``), if of this kind;
4. else ``$IMAGING_DB_HOME/storage`` (local) or the original's bucket ``czbiohub-imaging`` (S3).

An S3 bucket is reached at the endpoint its record gives, else ``$AWS_ENDPOINT_URL``, else AWS.
"""

import concurrent.futures
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import sqlalchemy as sa

from imaging_db.compat.session import known_database
from imaging_db.database import schema
from imaging_db.database.db_ops import Database
from imaging_db.database.records import location_from
from imaging_db.defaults import default_storage_dir
from imaging_db.errors import InputError, IntegrityError, NotFoundError
from imaging_db.filestorage import StorageLocation
from imaging_db.filestorage.data_storage import check_key
from imaging_db.images.png import PNG_SIGNATURE, decode_png
from imaging_db.pipeline.frame_reader import verified
from imaging_db.pipeline.stores import worker_count

logger = logging.getLogger(__name__)

# The original's default bucket (its data_storage.S3_BUCKET_NAME).
ORIGINAL_BUCKET = "czbiohub-imaging"
# get_stack_from_meta's axes: image height, width, grey/RGB, slice, channel, time, position.
DIM_ORDER = "XYGZCTP"
# frames_meta's index column of each stacked axis, and the original's unique_ids key for it.
_STACK_AXES = (("slices", "slice_idx"), ("channels", "channel_idx"), ("times", "time_idx"), ("pos", "pos_idx"))
# Checksums are looked up for this many file names per query (a bound parameter each).
_BATCH = 500
_READ_ONLY = {
    "upload_frames": "upload datasets with data_uploader",
    "upload_im": "upload datasets with data_uploader",
    "upload_im_tuple": "upload datasets with data_uploader",
    "upload_serialized": "upload datasets with data_uploader",
    "upload_file": "upload files with data_uploader (upload_type file)",
    "assert_unique_id": "data_uploader checks dataset ids",
    "nonexistent_storage_path": "data_uploader checks what is stored",
    "download_file": "download with data_downloader, or imaging_db.connect(...).get_file",
    "download_files": "download with data_downloader",
}


@dataclass(frozen=True)
class _Registered:
    """The dataset whose objects are under a storage_dir, as the database records it."""

    serial: str
    location: StorageLocation | None
    frames_global_id: int | None = None
    file_name: str | None = None
    file_sha256: str | None = None


def _registered(database: Database, storage_dir: str) -> _Registered | None:
    """The dataset whose frames or file the database keeps under ``storage_dir``; None if none."""
    d, fg, fi = schema.data_set.c, schema.frames_global.c, schema.file_global.c
    where = (d.dataset_serial, d.storage, d.storage_access, d.s3_endpoint_url)
    frames = (sa.select(*where, fg.id.label("frames_global_id"))
              .join_from(schema.frames_global, schema.data_set, fg.dataset_id == d.id)
              .where(fg.storage_dir == storage_dir).order_by(d.id).limit(1))
    files = (sa.select(*where, fi.file_name, fi.sha256)
             .join_from(schema.file_global, schema.data_set, fi.dataset_id == d.id)
             .where(fi.storage_dir == storage_dir).order_by(d.id).limit(1))
    with database.errors(f"looking up the dataset in {storage_dir}"), database.engine.connect() as conn:
        row = conn.execute(frames).mappings().first()
        if row is not None:
            return _Registered(row["dataset_serial"], location_from(row), frames_global_id=row["frames_global_id"])
        row = conn.execute(files).mappings().first()
    if row is None:
        return None
    return _Registered(row["dataset_serial"], location_from(row), file_name=row["file_name"],
                       file_sha256=row["sha256"])


def _recorded_checksums(database: Database, dataset: _Registered, names: Sequence[str]) -> dict[str, str | None]:
    """``{file name: sha256}`` of those of ``names`` the database registers for ``dataset``."""
    if dataset.frames_global_id is None:
        return {dataset.file_name: dataset.file_sha256} if dataset.file_name in names else {}
    frames = schema.frames.c
    found: dict[str, str | None] = {}
    unique = sorted(set(names))
    with database.errors(f"reading the checksums of dataset {dataset.serial}"), database.engine.connect() as conn:
        for start in range(0, len(unique), _BATCH):
            query = sa.select(frames.file_name, frames.sha256).where(
                frames.frames_global_id == dataset.frames_global_id,
                frames.file_name.in_(unique[start:start + _BATCH]))
            found.update((name, sha256) for name, sha256 in conn.execute(query))
    return found


def _decode(data: bytes, what: str) -> np.ndarray:
    """The pixels of a stored object: a frame's PNG, or (a file dataset's) any image OpenCV reads, colour as RGB.

    Raises
    ------
    IntegrityError
        If a PNG cannot be decoded.
    InputError
        If another object is not an image OpenCV can read.
    """
    if data[:len(PNG_SIGNATURE)] == PNG_SIGNATURE:
        return decode_png(data, what)
    import cv2  # as the original read files: the first image of a TIFF, a JPEG...

    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error:  # OpenCV asserts instead of returning None on an empty buffer
        pixels = None
    if pixels is None:
        raise InputError(f"{what} is not an image that can be read")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])  # OpenCV gives BGR order
    return pixels


def _checksum(value) -> str | None:
    """A frames_meta sha256 cell: text, or None for a missing one (None, NaN, empty)."""
    return value if isinstance(value, str) and value else None


class NotebookStorage:
    """What LocalStorage and S3Storage share: where the objects are, and reading them as arrays.

    Parameters
    ----------
    storage_dir : str
        The dataset's folder in storage, e.g. ``global_meta["storage_dir"]``.
    nbr_workers : int, optional
        Threads reading frames (default one per CPU; S3 reads on more).
    access_point : str, optional
        The storage folder (local) or bucket (S3); default: see the module documentation.

    Raises
    ------
    InputError
        If ``storage_dir`` is not a key prefix inside the storage.
    DatabaseError
        If the database opened last cannot be read.
    """

    kind = ""

    def __init__(self, storage_dir: str, nbr_workers: int | None = None, access_point: str | None = None):
        if not isinstance(storage_dir, str):
            raise InputError(f"storage_dir must be a folder in storage such as raw_frames/<dataset id>, "
                             f"not {type(storage_dir).__name__}")
        self.storage_dir = check_key(storage_dir.strip("/"))
        self.nbr_workers = nbr_workers
        self.access_point = access_point
        self._workers = worker_count(nbr_workers)
        self._database = known_database()
        self._dataset = _registered(self._database, self.storage_dir) if self._database is not None else None
        self.location = self._location()
        self._storage = self.location.open(max_connections=2 * self._workers)

    # ----------------------------------------------------------------------- where
    def _default_access(self) -> str:
        raise NotImplementedError

    def _location(self) -> StorageLocation:
        recorded = [self._dataset.location if self._dataset is not None else None,
                    self._database.default_location() if self._database is not None else None]
        location = next((place for place in recorded if place is not None and place.kind == self.kind), None)
        if location is None:
            location = StorageLocation(self.kind, self._default_access())
        if self.access_point is not None:
            location = location.overridden(self.kind, str(self.access_point))
        return location

    @property
    def _serial(self) -> str:
        """The dataset id, for messages (its storage_dir when the database does not know it)."""
        return self._dataset.serial if self._dataset is not None else self.storage_dir

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.storage_dir!r}: {self._storage.describe()})"

    def __getattr__(self, name: str):
        if name in _READ_ONLY:
            raise AttributeError(f"{type(self).__name__}.{name}: the compatibility layer only reads; "
                                 f"{_READ_ONLY[name]}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ----------------------------------------------------------------------- reading
    def _key(self, file_name: str) -> str:
        if not isinstance(file_name, str):
            raise InputError(f"a file name is text, not {type(file_name).__name__} ({file_name!r})")
        return check_key(f"{self.storage_dir}/{file_name}")

    def _checksums(self, names: Sequence[str], given: Sequence[str | None] | None = None) -> list[str | None]:
        """The sha256 to check each name against: the one given, else the database's; None if neither has one."""
        given = list(given) if given is not None else [None] * len(names)
        wanted = [name for name, sha256 in zip(names, given) if sha256 is None]
        recorded = {}
        if wanted and self._dataset is not None:
            recorded = _recorded_checksums(self._database, self._dataset, wanted)
        checksums = [sha256 if sha256 is not None else recorded.get(name) for name, sha256 in zip(names, given)]
        unchecked = sum(sha256 is None for sha256 in checksums)
        if unchecked:
            if self._database is None:
                why = "no database is open to give their checksums (open it with session_scope first)"
            elif self._dataset is None:
                why = f"the database opened last registers no dataset in {self.storage_dir}"
            elif any(name not in recorded for name, sha256 in zip(names, checksums) if sha256 is None):
                why = f"the database does not register all of them in {self.storage_dir}"
            else:
                why = "the database records no checksum for them"
            logger.warning("%s: %d of %d object(s) read without a checksum check: %s", self._serial, unchecked,
                           len(names), why)
        return checksums

    def _read(self, name: str, sha256: str | None) -> np.ndarray:
        key = self._key(name)
        data = verified(self._storage, self._serial, key, name, sha256)
        return _decode(data, f"{self._serial}: {name} in {self._storage.describe()}")

    def _read_all(self, names: Sequence[str], checksums: Sequence[str | None],
                  then: Callable[[int, np.ndarray], None] | None = None) -> list:
        """Read every name on worker threads; ``then(i, pixels)`` runs there instead of keeping the pixels."""
        for name in names:  # a bad name fails before anything is read
            self._key(name)

        def one(i: int):
            pixels = self._read(names[i], checksums[i])
            if then is None:
                return pixels
            then(i, pixels)
            return None

        threads = max(1, min(len(names), max(self._workers, self._storage.parallel_requests)))
        with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="imaging_db-compat") as pool:
            futures = [pool.submit(one, i) for i in range(len(names))]
            try:
                return [future.result() for future in futures]
            finally:
                for future in futures:
                    future.cancel()

    def get_im(self, file_name: str) -> np.ndarray:
        """One frame (or a file dataset's image) of the folder, by file name, e.g. ``im_c000_z000_t000_p000.png``.

        Returns
        -------
        numpy.ndarray
            ``(height, width)``, or ``(height, width, 3)`` RGB; uint8 or uint16.

        Raises
        ------
        IntegrityError
            If it does not match its recorded checksum, or is not a readable PNG.
        NotFoundError, StorageError
            If it cannot be read.
        InputError
            If the name is not one of a file in the folder, or a file is not an image.
        """
        return self._read(file_name, self._checksums([file_name])[0])

    def get_stack(self, file_names: Sequence[str]) -> np.ndarray:
        """Frames by file name, stacked along a new last axis in the order given.

        Returns
        -------
        numpy.ndarray
            ``(height, width, n)``, or ``(height, width, 3, n)`` for RGB frames.

        Raises
        ------
        InputError
            If no name is given, or the frames differ in shape or type.
        IntegrityError, NotFoundError, StorageError
            As :meth:`get_im`.
        """
        names = list(file_names)
        if not names:
            raise InputError(f"{self._serial}: get_stack needs at least one file name")
        frames = self._read_all(names, self._checksums(names))
        kinds = {(frame.shape, frame.dtype) for frame in frames}
        if len(kinds) > 1:
            raise InputError(f"{self._serial}: the frames differ in shape or type ({sorted(map(str, kinds))}); "
                             "they cannot be stacked")
        return np.stack(frames, axis=-1)

    def get_stack_with_shape(self, file_names: Sequence[str], stack_shape: tuple[int, ...],
                             bit_depth) -> np.ndarray:
        """Frames by file name, into an array of ``stack_shape`` and dtype ``bit_depth``, one per last-axis index.

        ``stack_shape`` is ``(height, width, n)`` or ``(height, width, colours, n)``.

        Raises
        ------
        InputError
            If the shape has fewer than 3 axes, or its last is not the number of names.
        IntegrityError, NotFoundError, StorageError
            As :meth:`get_im`; IntegrityError too if a frame does not fit the shape and type.
        """
        names = list(file_names)
        stack_shape = tuple(int(n) for n in stack_shape)
        if len(stack_shape) < 3 or stack_shape[-1] != len(names):
            raise InputError(f"{self._serial}: stack_shape {stack_shape} must have 3 or more axes, the last "
                             f"the number of file names ({len(names)})")
        im_stack = np.zeros(stack_shape, dtype=bit_depth)
        frame_shape = stack_shape[:-1]

        def place(i: int, pixels: np.ndarray) -> None:
            fitted = np.atleast_3d(pixels) if len(frame_shape) == 3 else pixels
            self._check_frame(names[i], pixels, fitted.shape, frame_shape, im_stack.dtype)
            im_stack[..., i] = fitted

        self._read_all(names, self._checksums(names), then=place)
        return im_stack

    def _check_frame(self, name: str, pixels: np.ndarray, shape: tuple, expected: tuple, dtype) -> None:
        if shape != tuple(expected) or pixels.dtype != dtype:
            raise IntegrityError(f"{self._serial}: frame {name} in {self._storage.describe()} holds {pixels.dtype} "
                                 f"pixels of shape {pixels.shape}, not the {np.dtype(dtype)} of shape "
                                 f"{tuple(expected)} the metadata give")

    @staticmethod
    def make_stack_from_meta(global_meta: dict, frames_meta) -> tuple[np.ndarray, dict]:
        """An empty (zero) stack for the frames of ``frames_meta``, and the index values along each axis.

        Returns
        -------
        im_stack : numpy.ndarray
            Shape ``(im_height, im_width, im_colors, slices, channels, times,
            positions)``, dtype ``bit_depth``; an axis has one place per index
            value present in frames_meta.
        unique_ids : dict
            ``slices``, ``channels``, ``times``, ``pos``: the sorted index values.
        """
        unique_ids = {key: np.unique(np.asarray(frames_meta[column])) for key, column in _STACK_AXES}
        shape = (int(global_meta["im_height"]), int(global_meta["im_width"]), int(global_meta["im_colors"]),
                 *(len(unique_ids[key]) for key, _ in _STACK_AXES))
        return np.zeros(shape, dtype=global_meta["bit_depth"]), unique_ids

    @staticmethod
    def squeeze_stack(im_stack: np.ndarray) -> tuple[np.ndarray, str]:
        """The stack without its singleton axes, and the letters of the axes left (from ``XYGZCTP``)."""
        dim_str = "".join(letter for letter, size in zip(DIM_ORDER, im_stack.shape) if size != 1)
        return np.squeeze(im_stack), dim_str

    def get_stack_from_meta(self, global_meta: dict, frames_meta) -> tuple[np.ndarray, str]:
        """The frames of ``frames_meta`` (from ``get_frames_meta``) as one array, and its dimension string.

        Parameters
        ----------
        global_meta : dict
            ``im_height``, ``im_width``, ``im_colors``, ``bit_depth`` (as
            ``get_frames_meta`` returns it).
        frames_meta : pandas.DataFrame
            ``file_name``, ``channel_idx``, ``slice_idx``, ``time_idx``,
            ``pos_idx`` and, to check each frame against, ``sha256``.

        Returns
        -------
        im_stack : numpy.ndarray
            Axes in the order X Y G Z C T P (image height, width, grey/RGB,
            slices, channels, times, positions), those of length 1 squeezed
            out. A place no frame of frames_meta fills stays zero, as in the
            original (a warning says how many).
        dim_str : str
            The axes left, e.g. ``"XYZ"`` or ``"XYGZC"``.

        Raises
        ------
        IntegrityError
            If a frame does not match its checksum, or the shape and type the metadata give.
        NotFoundError, StorageError
            If a frame cannot be read.
        """
        im_stack, unique_ids = self.make_stack_from_meta(global_meta, frames_meta)
        names = [name for name in frames_meta["file_name"]]
        if not names:
            raise InputError(f"{self._serial}: frames_meta lists no frames")
        given = [_checksum(value) for value in frames_meta["sha256"]] if "sha256" in frames_meta else None
        places = list(zip(*(np.searchsorted(unique_ids[key], np.asarray(frames_meta[column]))
                            for key, column in _STACK_AXES)))
        height, width, colours = im_stack.shape[:3]
        frame_shape = (height, width) if colours == 1 else (height, width, colours)

        def place(i: int, pixels: np.ndarray) -> None:
            self._check_frame(names[i], pixels, pixels.shape, frame_shape, im_stack.dtype)
            im_stack[(slice(None), slice(None), slice(None), *places[i])] = np.atleast_3d(pixels)

        self._read_all(names, self._checksums(names, given), then=place)
        empty = math.prod(im_stack.shape[3:]) - len(set(places))
        if empty:
            logger.warning("%s: %d place(s) of the stack have no frame in frames_meta and are left zero",
                           self._serial, empty)
        return self.squeeze_stack(im_stack)


class LocalStorage(NotebookStorage):
    """The original's ``LocalStorage``: read a dataset's frames from a storage folder (a mounted NAS, a laptop folder).

    Parameters
    ----------
    storage_dir : str
        The dataset's folder in storage, e.g. ``global_meta["storage_dir"]``.
    nbr_workers : int, optional
        Threads reading frames (default one per CPU).
    access_point : str, optional
        The storage folder (the one holding ``raw_frames/``); default where
        the database records the dataset, else its default storage, else
        ``$IMAGING_DB_HOME/storage``.

    Attributes
    ----------
    mount_point : str
        The storage folder read.
    id_storage_path : str
        The dataset's folder in it.

    Raises
    ------
    NotFoundError
        If the storage folder does not exist (not mounted?).
    """

    kind = "local"

    def __init__(self, storage_dir: str, nbr_workers: int | None = None, access_point: str | None = None):
        super().__init__(storage_dir, nbr_workers, access_point)
        self.mount_point = self._storage.settings()[0]
        if not Path(self.mount_point).is_dir():
            raise NotFoundError(f"local storage folder {self.mount_point} does not exist: mount it, or give "
                                "access_point=<the folder holding raw_frames/ and raw_files/>")
        self.id_storage_path = str(Path(self.mount_point, *self.storage_dir.split("/")))

    def _default_access(self) -> str:
        return str(default_storage_dir())


class S3Storage(NotebookStorage):
    """The original's ``S3Storage``: read a dataset's frames from an S3 bucket (AWS or S3-compatible).

    Credentials come from boto3's default chain (environment, profile, instance role).

    Parameters
    ----------
    storage_dir : str
        The dataset's folder in the bucket, e.g. ``global_meta["storage_dir"]``.
    nbr_workers : int, optional
        Threads decoding frames (default one per CPU); requests are made on more.
    access_point : str, optional
        The bucket; default where the database records the dataset, else its
        default storage, else the original's ``czbiohub-imaging``.

    Attributes
    ----------
    bucket_name : str
        The bucket read.
    """

    kind = "s3"

    def __init__(self, storage_dir: str, nbr_workers: int | None = None, access_point: str | None = None):
        super().__init__(storage_dir, nbr_workers, access_point)
        self.bucket_name, self.endpoint_url = self._storage.settings()

    def _default_access(self) -> str:
        return ORIGINAL_BUCKET


__all__ = ["DIM_ORDER", "LocalStorage", "NotebookStorage", "ORIGINAL_BUCKET", "S3Storage"]
