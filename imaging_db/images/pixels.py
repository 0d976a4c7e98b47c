"""A frame's pixels, however they are held: the one type the rest of imaging_db reads them through.

A splitter yields each frame's pixels as a ``Pixels``: an ``ArrayPixels``
when they were decoded into memory, a ``FilePixels`` when they are left in
their file until the frame is encoded. PNG encoding and the upload pipeline
use only what ``Pixels`` offers, so neither asks which kind it has.
"""

import abc
from contextlib import AbstractContextManager, contextmanager
from typing import Callable, Iterator

import numpy as np

# read_rows(first_row, out): fill ``out`` (rows x width [x 3], C-contiguous) with the rows from first_row on.
RowReader = Callable[[int, np.ndarray], None]


class Pixels(abc.ABC):
    """A 2D grayscale or RGB frame's pixels, readable whole or a strip of rows at a time.

    Attributes
    ----------
    shape : tuple of int
        ``(height, width)`` or ``(height, width, 3)``.
    dtype : numpy.dtype
        The dtype ``read()`` returns; native byte order for pixels a splitter yields.
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the whole frame in bytes."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    @abc.abstractmethod
    def held_bytes(self) -> int:
        """Bytes of pixels this object holds in memory now (0 for pixels left in their file)."""

    @abc.abstractmethod
    def read(self) -> np.ndarray:
        """The whole frame as an array of ``dtype``."""

    @abc.abstractmethod
    def rows(self) -> AbstractContextManager[RowReader]:
        """Context manager yielding ``read_rows(first_row, out)``, which fills ``out`` from that row on.

        ``out`` is a C-contiguous array of shape ``(rows, *shape[1:])`` in any
        byte order of ``dtype`` the caller chooses (PNG wants big-endian).
        The context holds whatever reading needs open (a file).

        Raises
        ------
        InputError
            If the pixels cannot be read (for pixels left in a file).
        """

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        pixels = self.read()
        if dtype is not None and pixels.dtype != dtype:
            return pixels.astype(dtype)
        return pixels.copy() if copy else pixels


class ArrayPixels(Pixels):
    """Pixels held in memory as an array."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    @property
    def held_bytes(self) -> int:
        return self.array.nbytes

    def __repr__(self) -> str:
        return f"ArrayPixels(shape={self.shape}, dtype={self.dtype})"

    def read(self) -> np.ndarray:
        return self.array

    @contextmanager
    def rows(self) -> Iterator[RowReader]:
        array = self.array

        def read_rows(first_row: int, out: np.ndarray) -> None:
            out[...] = array[first_row:first_row + len(out)]  # converts to out's byte order on the way

        yield read_rows


def as_pixels(pixels: np.ndarray | Pixels) -> Pixels:
    """Return ``pixels`` as a Pixels: an array is wrapped (not copied), a Pixels returned as it is."""
    if isinstance(pixels, Pixels):
        return pixels
    return ArrayPixels(np.asarray(pixels))
