"""The one read path: fetch a dataset's objects in parallel and check each against its recorded sha256.

    frame rows -> workers: DataStorage.get -> verify sha256 -> (row, bytes), in row order

The download's folder writer consumes it; the Python API's arrays and the
exports build on it too, so every reader checks what it reads the same way.
"""

import collections
import concurrent.futures
import hashlib
import logging
from typing import Callable, Iterator, Sequence, TypeVar

from imaging_db.database.records import DatasetInfo, FrameRow
from imaging_db.errors import InputError, IntegrityError
from imaging_db.filestorage import DataStorage
from imaging_db.filestorage.data_storage import check_key
from imaging_db.pipeline.progress import progress_bar

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Names longer than this cannot be files on the usual file systems.
_MAX_NAME_BYTES = 255


def checked_key(serial: str, storage_dir, name, what: str) -> str:
    """Return the storage key of a frame or file named by the database, once its names are known to be safe.

    Names come from the database, which anyone with write access may have
    edited: the name must stay one plain file in a download folder, and the
    key a key inside the storage.

    Raises
    ------
    IntegrityError
        If either is not.
    """
    if (not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0")
            or len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES):
        raise IntegrityError(f"dataset {serial}: the database gives {what} {name!r}, which is not a "
                             "plain file name; refusing to download the dataset")
    try:
        return check_key(f"{storage_dir}/{name}")
    except InputError:
        raise IntegrityError(f"dataset {serial}: the database gives storage_dir {storage_dir!r}, which is not a "
                             "key prefix inside the storage; refusing to download the dataset") from None


def corrupt(storage: DataStorage, serial: str, what: str, name: str, digest: str, recorded: str) -> IntegrityError:
    """The error for an object whose sha256 is not the one its row records."""
    return IntegrityError(f"dataset {serial}: {what} {name} in {storage.describe()} is corrupt: "
                          f"sha256 {digest} does not match the recorded {recorded}")


def pixel_checked(data: bytes, sha256: str) -> bytes | None:
    """A frame the original imagingDB stored, checked by its rule: ``sha256`` is that of the frame's pixel bytes.

    Returns the PNG to hand out, or None if the pixels do not match. The
    original wrote colour frames through OpenCV, which takes arrays as BGR:
    when only the pixels with their channels reversed match, the stored PNG
    holds them reversed, and a PNG of the true RGB frame is returned.
    """
    import numpy as np  # imported here: downloads of imaging_db's own frames never decode

    from imaging_db.images.png import decode_png, encode_png

    try:
        pixels = decode_png(data)
    except IntegrityError:
        return None
    if hashlib.sha256(pixels.tobytes()).hexdigest() == sha256:
        return data
    if pixels.ndim == 3:
        reversed_order = np.ascontiguousarray(pixels[..., ::-1])
        if hashlib.sha256(reversed_order.tobytes()).hexdigest() == sha256:
            return encode_png(reversed_order)
    return None


# Byte 25 of a PNG (IHDR's colour type) is 2 for truecolour (RGB).
_PNG_COLOUR_TYPE_AT, _PNG_TRUECOLOUR = 25, 2


def _unchecked(data: bytes) -> bytes:
    """A frame whose row has no checksum: only the original imagingDB wrote such rows (before 2019).

    It wrote colour frames through OpenCV, in BGR order; with no checksum to
    tell, its colour PNGs are taken to hold them so, and come back as RGB.
    """
    if len(data) <= _PNG_COLOUR_TYPE_AT or data[_PNG_COLOUR_TYPE_AT] != _PNG_TRUECOLOUR:
        return data
    import numpy as np

    from imaging_db.images.png import decode_png, encode_png

    try:
        pixels = decode_png(data)
    except IntegrityError:
        return data  # handed out as stored: the reader's decoder will say what is wrong with it
    return encode_png(np.ascontiguousarray(pixels[..., ::-1]))


def verified(storage: DataStorage, serial: str, key: str, name: str, sha256: str | None) -> bytes:
    """Return the frame under ``key`` once its sha256 matches the recorded one.

    The recorded sha256 is that of the stored PNG, or, in rows of the original
    imagingDB, of the frame's pixels (see :func:`pixel_checked`). A row without
    one (the original's before 2019) cannot be checked: its frame is returned
    as read, colour turned from the original's BGR to RGB (:func:`read_frames`
    says how many were not checked).

    Raises
    ------
    IntegrityError
        If the object's content does not match (it is corrupt).
    NotFoundError, StorageError
        If it cannot be read.
    """
    data = storage.get(key)
    if sha256 is None:
        return _unchecked(data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        checked = pixel_checked(data, sha256)
        if checked is None:
            raise corrupt(storage, serial, "frame", name, digest, sha256)
        return checked
    return data


def warn_unchecked(serial: str, rows: Sequence[FrameRow]) -> None:
    """Log that frames without a recorded checksum are handed out unverified."""
    unchecked = sum(row.sha256 is None for row in rows)
    if unchecked:
        logger.warning("dataset %s: %d of %d frame(s) have no recorded checksum (uploaded by the original imagingDB "
                       "before it kept them); they are read without verification", serial, unchecked, len(rows))


def _fetch(storage: DataStorage, serial: str, key: str, row: FrameRow,
           then: Callable[[FrameRow, bytes], T] | None) -> bytes | T:
    data = verified(storage, serial, key, row.file_name, row.sha256)
    return data if then is None else then(row, data)


# Requests in flight while the frames read are decoded: enough to hide a remote storage's latency from the
# decoders. On S3, at ~40 ms a request, 8 in flight bring ~200 frames/s, what two cores decode.
_DECODING_REQUESTS = 8
_DECODING_REQUESTS_PER_WORKER = 4


def read_frames(storage: DataStorage, dataset: DatasetInfo, rows: Sequence[FrameRow], nbr_workers: int = 1,
                progress: bool | None = False,
                then: Callable[[FrameRow, bytes], T] | None = None,
                decoding: bool = False) -> Iterator[tuple[FrameRow, bytes | T]]:
    """Yield ``(row, png bytes)`` for each of a frames dataset's ``rows``, in order, each verified.

    Objects are fetched and hashed on a thread pool: ``nbr_workers`` threads,
    or as many requests as a remote storage is worth keeping in flight (fewer
    when ``decoding``). At most twice that many objects are held at once,
    whatever the dataset's size.

    Parameters
    ----------
    decoding : bool
        ``then`` decodes each frame, ``nbr_workers`` at a time: decoding is the
        bottleneck, and requests beyond what keeps the decoders busy
        (``_DECODING_REQUESTS``) would only hold fetched frames waiting for it.
    then : callable, optional
        ``then(row, png bytes)`` is run on the worker thread once an object is
        verified, and its result is yielded instead of the bytes: the work a
        consumer does per frame (write it to a file, decode it) runs in
        parallel, and the bytes are freed there.

    Raises
    ------
    IntegrityError
        If a name in the database is unsafe, or an object does not match its sha256.
    NotFoundError, StorageError
        If an object cannot be read. Objects not yet fetched are then not fetched.
    """
    keys = [checked_key(dataset.serial, dataset.storage_dir, row.file_name, "frame file name") for row in rows]
    warn_unchecked(dataset.serial, rows)
    requests = storage.parallel_requests
    if decoding:
        requests = min(requests, max(_DECODING_REQUESTS, _DECODING_REQUESTS_PER_WORKER * nbr_workers))
    threads = max(1, nbr_workers, requests)
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="imaging_db-read") as pool, \
            progress_bar(len(rows), dataset.serial, "frame", progress) as bar:
        in_flight: collections.deque = collections.deque()
        try:
            for row, key in zip(rows, keys):
                in_flight.append((row, pool.submit(_fetch, storage, dataset.serial, key, row, then)))
                while len(in_flight) >= 2 * threads:
                    row_done, future = in_flight.popleft()
                    yield row_done, future.result()
                    bar.update(1)
            while in_flight:
                row_done, future = in_flight.popleft()
                yield row_done, future.result()
                bar.update(1)
        finally:
            for _, future in in_flight:
                future.cancel()
