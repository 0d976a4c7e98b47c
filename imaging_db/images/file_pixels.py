"""A frame's pixels left in its file, read a strip of rows at a time when the frame is encoded.

Micro-Manager and ImageJ store frames uncompressed and contiguously. For such
frames a splitter yields a FilePixels instead of an array: the worker that
encodes the frame reads it from the file in strips straight into the PNG
filter's buffer, so no thread ever holds a whole frame and memory does not
grow with the frame size.
"""

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from imaging_db.errors import InputError
from imaging_db.images.pixels import Pixels, RowReader


class FilePixels(Pixels):
    """Pixels stored uncompressed and contiguously at ``offset`` in a file.

    Parameters
    ----------
    path : Path
        The file.
    offset : int
        Byte offset of the first pixel.
    shape : tuple
        ``(height, width)`` or ``(height, width, 3)``.
    file_dtype : numpy.dtype
        uint8 or uint16 in the file's byte order.
    where : str
        Names the dataset, file and page, for errors.

    ``dtype`` is ``file_dtype`` in native byte order; nothing is held in
    memory (``held_bytes`` is 0) until the frame is read.
    """

    def __init__(self, path: Path | str, offset: int, shape: tuple[int, ...], file_dtype: np.dtype, where: str):
        self.path = Path(path)
        self.offset = int(offset)
        self.shape = tuple(int(n) for n in shape)
        self.file_dtype = np.dtype(file_dtype)
        self.dtype = self.file_dtype.newbyteorder("=")
        self.where = where

    @property
    def held_bytes(self) -> int:
        return 0

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.file_dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def __repr__(self) -> str:
        return f"FilePixels({str(self.path)!r}, offset={self.offset}, shape={self.shape}, dtype={self.file_dtype})"

    def _fail(self, problem: str) -> InputError:
        return InputError(f"{self.where}: cannot read pixels ({problem})")

    @contextmanager
    def reader(self) -> Iterator[RowReader]:
        """Open the file; yield ``read(first_row, out)`` filling ``out`` (file dtype, C order) from that row on.

        Raises
        ------
        InputError
            If the file cannot be read or ends before the frame does.
        """
        try:
            # Unbuffered: readinto fills the caller's array straight from the file, without the GIL.
            handle = open(self.path, "rb", buffering=0)
        except OSError as exc:
            raise self._fail(exc.strerror or str(exc)) from None

        def read(first_row: int, out: np.ndarray) -> None:
            view = memoryview(out).cast("B")
            position = self.offset + first_row * self.row_bytes
            done = 0
            try:
                handle.seek(position)
                while done < len(view):
                    count = handle.readinto(view[done:])
                    if not count:
                        raise self._fail(f"the file ends at byte {position + done}, inside the frame's "
                                         f"{self.nbytes} bytes from offset {self.offset}")
                    done += count
            except OSError as exc:
                raise self._fail(exc.strerror or str(exc)) from None

        with handle:
            yield read

    @contextmanager
    def rows(self) -> Iterator[RowReader]:
        """See ``Pixels.rows``: rows wanted in the file's byte order are read in place, others through a buffer."""
        with self.reader() as read:
            in_file_order = np.empty(0, dtype=self.file_dtype)

            def read_rows(first_row: int, out: np.ndarray) -> None:
                nonlocal in_file_order
                if out.dtype == self.file_dtype:  # 8 bits, or the file's byte order: no copy
                    read(first_row, out)
                    return
                if in_file_order.size < out.size:
                    in_file_order = np.empty(out.size, dtype=self.file_dtype)
                buffer = in_file_order[:out.size].reshape(out.shape)
                read(first_row, buffer)
                out[...] = buffer

            yield read_rows

    def read(self) -> np.ndarray:
        """The whole frame as an array in native byte order."""
        pixels = np.empty(self.shape, dtype=self.file_dtype)
        with self.reader() as read:
            read(0, pixels)
        return pixels.astype(self.dtype, copy=False)
