"""What every splitter yields, and checks shared by all of them."""

import abc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import tifffile

from imaging_db.errors import InputError
from imaging_db.images.file_pixels import FilePixels


@dataclass
class Frame:
    """One 2D frame as read from an image file.

    ``pixels`` is None when the splitter was asked for metadata only. Frames
    stored plainly in their file (uint8/uint16, uncompressed, contiguous) come
    as a FilePixels, read when the frame is encoded; others as an array.
    """

    channel_idx: int
    slice_idx: int
    time_idx: int
    pos_idx: int
    channel_name: str | None
    metadata: dict
    source: str
    page: int
    pixels: np.ndarray | FilePixels | None = field(default=None, repr=False)
    # When scanning (no pixels): the shape and dtype the frame will be stored with, from the file's headers.
    shape: tuple | None = None
    dtype: np.dtype | None = None

    @property
    def indices(self) -> tuple[int, int, int, int]:
        """(channel, slice, time, position)."""
        return (self.channel_idx, self.slice_idx, self.time_idx, self.pos_idx)

    @property
    def where(self) -> str:
        return f"file {self.source} page {self.page}"


class Splitter(abc.ABC):
    """Reads an image file or folder and yields its 2D frames one at a time.

    Splitters only read: they know TIFF, not storage or the database.

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

    def error(self, problem: str, source: Path | str | None = None) -> InputError:
        """Return an InputError naming the dataset and the file."""
        return InputError(f"dataset {self.dataset_serial}: {source or self.path}: {problem}")

    def open_tiff(self, path: Path) -> tifffile.TiffFile:
        """Open a TIFF file for reading, or raise one InputError naming it, whatever the reader's error.

        A file cut short, a file that is not a TIFF, or a TIFF without pages
        make tifffile raise anything from ``struct.error`` to ``IndexError``.
        """
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # noqa: BLE001 - every reader error is a bad input file
            raise self.error(f"not a readable TIFF ({type(exc).__name__}: {exc})", path) from None
        try:
            nbr_pages = len(tif.pages)
        except Exception as exc:  # noqa: BLE001
            tif.close()
            raise self.error(f"not a readable TIFF ({type(exc).__name__}: {exc})", path) from None
        if nbr_pages == 0:
            tif.close()
            raise self.error("is a TIFF without any page", path)
        return tif

    def scan_page(self, page, source: Path | str, page_nbr: int) -> tuple[tuple, np.dtype]:
        """Return the shape and dtype a page's frame will be stored with, from its header.

        Pixels are read only for floating-point pages, whose values decide
        whether they can be stored (whole numbers within 0..65535).

        Raises
        ------
        InputError
            If the frame cannot be stored (shape, dtype or values).
        """
        if page.dtype is None:
            raise self.error(f"page {page_nbr}: its pixel type is not supported "
                             "(only uint8, uint16 or whole-number float32)", source)
        return self.stored_layout(tuple(page.shape), np.dtype(page.dtype), source, page_nbr, page.asarray)

    def stored_layout(self, shape: tuple, dtype: np.dtype, source: Path | str, page_nbr: int,
                      read) -> tuple[tuple, np.dtype]:
        """The (shape, dtype) that ``storable`` would give pixels of this shape and dtype; ``read()`` reads floats."""
        if len(shape) == 3 and shape[2] == 1:
            shape = shape[:2]
        if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
            raise self.error(f"page {page_nbr} has shape {shape}; only 2D grayscale or RGB frames are supported",
                             source)
        if dtype.kind == "f":
            self.storable(read(), source, page_nbr)
            return shape, np.dtype(np.uint16)
        if dtype.newbyteorder("=") not in (np.uint8, np.uint16):
            raise self.error(f"page {page_nbr} has {dtype} pixels; only uint8, uint16 (or whole-number float32) "
                             "are supported", source)
        return shape, dtype.newbyteorder("=")

    @abc.abstractmethod
    def global_metadata(self) -> dict:
        """Return the dataset's global metadata found in the files (always with ``file_origin``)."""

    @abc.abstractmethod
    def frames(self, read_pixels: bool = True) -> Iterator[Frame]:
        """Yield the frames one at a time; with ``read_pixels=False`` only indices and metadata."""

    def check_page_data(self, page, file_size: int, source: Path | str, page_nbr: int) -> None:
        """Raise InputError if a page's pixel data would run past the end of its file (a truncated file).

        Checked while scanning, so such a file is refused before anything is stored.
        """
        ends = [offset + count for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True) if count]
        if ends and max(ends) > file_size:
            raise self.error(f"page {page_nbr}: its pixel data ends at byte {max(ends)} but the file has only "
                             f"{file_size} bytes (truncated?)", source)

    def pixels_in_file(self, source: Path | str, offset: int, shape: tuple, file_dtype: np.dtype,
                       page_nbr: int) -> np.ndarray | FilePixels:
        """Pixels stored uncompressed and contiguously at ``offset`` of a file.

        Left in the file (a FilePixels) when PNG takes them as they are (uint8
        or uint16, 2D or RGB); otherwise read now and made storable.
        """
        where = f"dataset {self.dataset_serial}: {source}: page {page_nbr}"
        pixels = FilePixels(source, offset, shape, file_dtype, where)
        if pixels.dtype in (np.uint8, np.uint16) and (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
            return pixels
        return self.storable(pixels.read(), source, page_nbr)

    def page_pixels(self, page, source: Path | str, page_nbr: int, byteorder: str) -> np.ndarray | FilePixels:
        """A TIFF page's pixels: see ``pixels_in_file`` for pages stored plainly; others decoded by tifffile."""
        if page.is_final and page.parent.filehandle.is_file and page.dtype is not None:
            return self.pixels_in_file(source, page.dataoffsets[0], tuple(page.shape),
                                       np.dtype(page.dtype).newbyteorder(byteorder), page_nbr)
        return self.storable(page.asarray(), source, page_nbr)

    def storable(self, pixels: np.ndarray, source: Path | str, page: int) -> np.ndarray:
        """Return the pixels as uint8/uint16, 2D or RGB, or raise a clear InputError.

        32-bit float frames holding whole numbers within 0..65535 become uint16.
        """
        where = f"page {page}"
        if not pixels.dtype.isnative:
            # Data memory-mapped from a big-endian file (ImageJ's default) keeps the file's byte order.
            pixels = pixels.astype(pixels.dtype.newbyteorder("="))
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
            raise self.error(f"{where} has shape {pixels.shape}; only 2D grayscale or RGB frames are supported", source)
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
                    f"{where}: {pixels.dtype} pixels are not whole numbers within 0..65535 "
                    f"({found}); convert the stack to 16 bit first",
                    source,
                )
            return pixels.astype(np.uint16)
        if pixels.dtype not in (np.uint8, np.uint16):
            raise self.error(f"{where} has {pixels.dtype} pixels; only uint8, uint16 (or whole-number float32) are supported", source)
        return pixels


def parse_json_tag(value, what: str) -> dict | None:
    """Return a TIFF tag's JSON content as a dict, None if absent, or raise ValueError."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            parsed = json.loads(value.strip("\x00 \n"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{what} is not valid JSON ({exc.msg})") from None
        if isinstance(parsed, dict):
            return parsed
    raise ValueError(f"{what} does not hold a JSON object")


def read_micromanager_tag(page) -> dict | None:
    """Return a TIFF page's MicroManagerMetadata (tag 51123) as a dict, or None if it has none.

    Raises
    ------
    ValueError
        If the tag is there but does not hold a JSON object.
    """
    tag = page.tags.get(51123)
    if tag is None:
        return None
    meta = parse_json_tag(tag.value, "MicroManagerMetadata tag (51123)")
    if meta is None:
        # tifffile decodes the tag's JSON itself and gives None when it is corrupt.
        raise ValueError("MicroManagerMetadata tag (51123) is not valid JSON")
    return meta


def micromanager_indices(meta: dict) -> tuple[int, int, int, int]:
    """Return (channel, slice, time, position) from a MicroManagerMetadata dict.

    Micro-Manager 2.0 writes ``SliceIndex``/``FrameIndex``; 1.4 writes ``Slice``/``Frame`` too.

    Raises
    ------
    ValueError
        If a needed key is missing or not an integer.
    """
    def pick(*names, default=None):
        for name in names:
            if name in meta and meta[name] is not None:
                try:
                    return int(meta[name])
                except (TypeError, ValueError):
                    raise ValueError(f"MicroManagerMetadata {name} = {meta[name]!r} is not an integer") from None
        if default is not None:
            return default
        raise ValueError(f"MicroManagerMetadata lacks {' or '.join(names)}")

    return (
        pick("ChannelIndex"),
        pick("SliceIndex", "Slice"),
        pick("FrameIndex", "Frame"),
        pick("PositionIndex", default=0),
    )
