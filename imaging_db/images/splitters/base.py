"""What every splitter yields (Frame) and the format-neutral base they share (Splitter)."""

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from imaging_db.errors import InputError
from imaging_db.images.pixels import Pixels
from imaging_db.images.png import MAX_SIDE, storable_dtype, storable_shape


def printable_path(path: Path | str) -> str:
    """A path as text any output can take: a byte of the name that is not UTF-8 is shown as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def list_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files of ``folder`` whose names end in one of ``suffixes`` (any case), hidden ones left out, by name."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(suffixes)
    )


@dataclass
class Frame:
    """One 2D frame as read from an image file.

    ``pixels`` is None when the splitter was asked for metadata only; then
    ``shape`` and ``dtype`` say how the frame will be stored. Frames stored
    plainly in their file (uint8/uint16, uncompressed, contiguous) have
    pixels left in the file until encoded (``held_bytes`` 0); others are
    decoded into memory.
    """

    channel_idx: int
    slice_idx: int
    time_idx: int
    pos_idx: int
    channel_name: str | None
    metadata: dict
    source: str
    page: int
    pixels: Pixels | None = field(default=None, repr=False)
    # When scanning (no pixels): the shape and dtype the frame will be stored with, from the file's headers.
    shape: tuple | None = None
    dtype: np.dtype | None = None

    @property
    def indices(self) -> tuple[int, int, int, int]:
        """(channel, slice, time, position)."""
        return (self.channel_idx, self.slice_idx, self.time_idx, self.pos_idx)

    @property
    def where(self) -> str:
        return f"file {printable_path(self.source)} page {self.page}"


class Splitter(abc.ABC):
    """Reads an image file or folder and yields its 2D frames one at a time.

    Splitters only read: they know their file format, not storage or the
    database. A new format is a subclass in its own module and one line in
    ``SPLITTERS`` (``imaging_db/images/splitters/__init__.py``).

    Parameters
    ----------
    path : Path
        The file or folder named in the CSV.
    dataset_serial : str
        The dataset id, for error messages.
    positions : list of int, optional
        Only frames at these PositionIndex values (formats that support it).
    """

    frames_format: str = ""
    supports_positions: bool = False

    def __init__(self, path: Path, dataset_serial: str, positions: list[int] | None = None):
        self.path = Path(path)
        self.dataset_serial = dataset_serial
        if positions is not None and not self.supports_positions:
            raise InputError(
                f"dataset {dataset_serial}: positions can only be chosen for ome_tiff, not {self.frames_format}"
            )
        self.positions = positions

    @classmethod
    @abc.abstractmethod
    def can_read(cls, path: Path) -> bool:
        """Whether ``path`` looks like this format, judged cheaply (file or folder, names, first header).

        Used to choose a splitter when ``frames_format`` is omitted. A file
        that cannot be opened is not of the format: reading it with a chosen
        splitter is what reports what is wrong with it.
        """

    @abc.abstractmethod
    def global_metadata(self) -> dict:
        """Return the dataset's global metadata found in the files (always with ``file_origin``)."""

    @abc.abstractmethod
    def frames(self, read_pixels: bool = True) -> Iterator[Frame]:
        """Yield the frames one at a time; with ``read_pixels=False`` only indices, metadata, shape and dtype."""

    def notes(self) -> list[str]:
        """Human notes for the upload summary: how the splitter understood the input, where it had to guess.

        Each is one sentence, e.g. ``"no ImageJ/OME metadata: 12 pages taken as
        12 slices"``; empty when nothing needs saying (the default). Call it
        after ``frames()`` has been gone through (scanning is enough): a
        splitter may learn what to say only while reading.
        """
        return []

    def error(self, problem: str, source: Path | str | None = None) -> InputError:
        """Return an InputError naming the dataset and the file."""
        return InputError(f"dataset {self.dataset_serial}: {printable_path(source or self.path)}: {problem}")

    def folder_files(self, suffixes: tuple[str, ...]) -> list[Path]:
        """The folder's files ending in one of ``suffixes`` (see ``list_files``); InputError if there are none."""
        found = list_files(self.path, suffixes)
        if not found:
            raise self.error(f"folder holds no *{suffixes[0]} files")
        return found

    def _check_shape(self, shape: tuple, source: Path | str, page_nbr: int) -> None:
        if not storable_shape(shape):
            raise self.error(f"page {page_nbr} has shape {shape}; only 2D grayscale or RGB frames are supported",
                             source)
        if max(shape[:2]) > MAX_SIDE:
            raise self.error(f"page {page_nbr} is {shape[1]} x {shape[0]} pixels; a PNG frame has at most "
                             f"{MAX_SIDE} on a side", source)

    def _unsupported_dtype(self, dtype: np.dtype, source: Path | str, page_nbr: int) -> InputError:
        return self.error(f"page {page_nbr} has {dtype} pixels; only uint8, uint16 (or whole-number float32) "
                          "are supported", source)

    def stored_layout(self, shape: tuple, dtype: np.dtype, source: Path | str, page_nbr: int,
                      read: Callable[[], np.ndarray] | None) -> tuple[tuple, np.dtype]:
        """The (shape, dtype) that ``storable`` would give pixels of this shape and dtype.

        ``read()`` returns the pixels of a floating-point frame, whose values
        are checked; with ``read=None`` only the shape and dtype are.
        """
        if len(shape) == 3 and shape[2] == 1:
            shape = shape[:2]
        self._check_shape(shape, source, page_nbr)
        if dtype.kind == "f":
            if read is not None:
                self.storable(read(), source, page_nbr)
            return shape, np.dtype(np.uint16)
        if not storable_dtype(dtype.newbyteorder("=")):
            raise self._unsupported_dtype(dtype, source, page_nbr)
        return shape, dtype.newbyteorder("=")

    def storable(self, pixels: np.ndarray, source: Path | str, page: int) -> np.ndarray:
        """Return the pixels as uint8/uint16, 2D or RGB, or raise a clear InputError.

        32-bit float frames holding whole numbers within 0..65535 become uint16.
        """
        if not pixels.dtype.isnative:
            # Data memory-mapped from a big-endian file (ImageJ's default) keeps the file's byte order.
            pixels = pixels.astype(pixels.dtype.newbyteorder("="))
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        self._check_shape(pixels.shape, source, page)
        if pixels.dtype in (np.float32, np.float64):
            if pixels.size and not (
                np.isfinite(pixels).all()
                and pixels.min() >= 0
                and pixels.max() <= 65535
                and np.array_equal(pixels, np.floor(pixels))
            ):
                finite = pixels[np.isfinite(pixels)]
                found = f"min {float(finite.min()):g}, max {float(finite.max()):g}" if finite.size else "no finite value"
                if finite.size != pixels.size:
                    found += f", {pixels.size - finite.size} NaN or infinite"
                raise self.error(
                    f"page {page}: {pixels.dtype} pixels are not whole numbers within 0..65535 "
                    f"({found}); convert the stack to 16 bit first",
                    source,
                )
            return pixels.astype(np.uint16)
        if not storable_dtype(pixels.dtype):
            raise self._unsupported_dtype(pixels.dtype, source, page)
        return pixels
