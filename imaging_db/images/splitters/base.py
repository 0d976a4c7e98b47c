"""What every splitter yields, and checks shared by all of them."""

import abc
import contextlib
import json
import logging
import os
import re
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import tifffile

from imaging_db.errors import ImagingDBError, InputError
from imaging_db.images.file_pixels import FilePixels

logger = logging.getLogger(__name__)

# What tifffile logs, and then carries on without, when a file's structure is damaged: an IFD chain
# that breaks off (the pages after it silently missing), a tag whose value lies beyond the end of the
# file (the tag silently missing), a page without its data offsets or byte counts, an ImageJ stack
# shorter than its header says (tif_id then checks the file's size itself).
# PNG (and the im_width/im_height columns) take at most 2**31 - 1 pixels on a side.
_MAX_SIDE = 2**31 - 1
_TIFF_DAMAGE = re.compile(
    r"^<(TiffTag\.fromfile> "
    r"|tifffile\.TiffPages "
    r"|tifffile\.TiffTag \d+ @\d+> (invalid|could not read)"
    r"|tifffile\.Tiff(Page|Frame) [^>]*> (missing|incorrect)"
    r"|tifffile\.TiffFile [^>]*> ImageJ series metadata invalid)"
)


def printable_path(path: Path | str) -> str:
    """A path as text any output can take: a byte of the name that is not UTF-8 is shown as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


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
        return f"file {printable_path(self.source)} page {self.page}"


class _DamageReports(logging.Filter):
    """Takes what tifffile logs while one thread reads one file: damage to raise, the rest to debug.

    tifffile logs a broken IFD chain or a tag beyond the end of the file and
    goes on with what it could read, so a file cut short would pass as one
    with fewer pages: such records become the reader's one error line. Its
    other warnings (a tag value it does not know, a vendor header it cannot
    parse) concern tags imaging_db does not use: logged at debug level, they
    show with ``--verbose`` and do not add lines to an error or a summary.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.thread = threading.get_ident()
        self.problems: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        message = record.getMessage()
        if record.levelno >= logging.WARNING and _TIFF_DAMAGE.match(message):
            self.problems.append(message)
        else:
            logger.debug("%s: tifffile: %s", printable_path(self.path), message)
        return False


@dataclass
class OpenTiff:
    """A TIFF file open for reading (``tif``), with checks that it is whole.

    tifffile reads what it can of a damaged file; the checks here turn what
    it skipped into an InputError naming the dataset and the file: what
    tifffile logged, else an IFD chain that does not end where the TIFF
    specification says, or a page with fewer tags than its IFD lists (so
    they hold even when logging is disabled).
    """

    splitter: "Splitter"
    path: Path
    tif: tifffile.TiffFile
    reports: _DamageReports = field(repr=False)

    def _damaged(self, problem: str) -> InputError:
        return self.splitter.error(f"is a damaged TIFF, cut short? ({problem})", self.path)

    def check(self) -> None:
        """Raise InputError if tifffile reported damage while reading so far."""
        if self.reports.problems:
            raise self._damaged(f"tifffile: {self.reports.problems[0]}")

    def _ifd(self, offset: int) -> tuple[int, int]:
        """(number of tags, offset of the next IFD) of the IFD at ``offset``, read from the file."""
        tiff, handle = self.tif.tiff, self.tif.filehandle
        where = handle.tell()
        try:
            handle.seek(offset)
            data = handle.read(tiff.tagnosize)
            if len(data) < tiff.tagnosize:
                raise self._damaged(f"the IFD at byte {offset} lies beyond the end of the file")
            tagno = struct.unpack(tiff.tagnoformat, data)[0]
            handle.seek(offset + tiff.tagnosize + tagno * tiff.tagsize)
            data = handle.read(tiff.offsetsize)
            if len(data) < tiff.offsetsize:
                raise self._damaged(f"the file ends inside the IFD at byte {offset}")
            return tagno, struct.unpack(tiff.offsetformat, data)[0]
        finally:
            handle.seek(where)

    def check_chain(self) -> None:
        """Raise InputError if tifffile reported damage, or the last page's IFD links to another.

        The TIFF specification ends the chain of IFDs with offset 0;
        tifffile stops quietly at a link it cannot follow.
        """
        self.check()
        nbr_pages = len(self.tif.pages)
        _tagno, following = self._ifd(self.tif.pages[nbr_pages - 1].offset)
        if following:
            raise self._damaged(f"page {nbr_pages - 1} links to a next page at byte {following}, "
                                f"which cannot be read; the file has {self.tif.filehandle.size} bytes")

    def check_page(self, page, page_nbr: int) -> None:
        """Raise InputError if tifffile reported damage or could not read all of a page's tags."""
        self.check()
        tagno, _following = self._ifd(page.offset)
        if len(page.tags) != tagno:
            raise self._damaged(f"page {page_nbr}: only {len(page.tags)} of its {tagno} tags can be read")


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
        return InputError(f"dataset {self.dataset_serial}: {printable_path(source or self.path)}: {problem}")

    @contextlib.contextmanager
    def open_tiff(self, path: Path, whole: bool = True) -> Iterator[OpenTiff]:
        """Open a TIFF file for reading; every reader error, and any damage, is one InputError naming it.

        A file cut short, a file that is not a TIFF, or a TIFF without pages
        make tifffile raise anything from ``struct.error`` to ``IndexError``,
        or only log the damage and go on with fewer pages or tags. Here each
        becomes one line naming the dataset and the file. Call
        ``OpenTiff.check_page`` on each page read.

        With ``whole`` (the default) the IFD chain and what tifffile reported
        are checked on opening and on leaving; without, the caller calls
        ``OpenTiff.check`` and ``check_chain`` where it needs a whole chain.
        """
        path = Path(path)
        reports = _DamageReports(path)
        tiff_logger = logging.getLogger("tifffile")
        tiff_logger.addFilter(reports)
        try:
            try:
                tif = tifffile.TiffFile(path)
            except Exception as exc:  # noqa: BLE001 - every reader error is a bad input file
                raise self.error(f"not a readable TIFF ({type(exc).__name__}: {exc})", path) from None
            with tif:
                opened = OpenTiff(self, path, tif, reports)
                try:
                    yield self._checked_open(opened, whole)
                except ImagingDBError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a reader error while going through the pages
                    logger.debug("dataset %s: reading %s failed", self.dataset_serial, path, exc_info=True)
                    opened.check()  # damage, when reported, explains the reader's error
                    raise self.error(f"cannot be read ({type(exc).__name__}: {exc})", path) from None
                if whole:
                    opened.check()
        finally:
            tiff_logger.removeFilter(reports)

    def _checked_open(self, opened: OpenTiff, whole: bool) -> OpenTiff:
        """Count the pages (tifffile reads every IFD) and, if ``whole``, check the chain of IFDs is whole."""
        try:
            nbr_pages = len(opened.tif.pages)
        except Exception as exc:  # noqa: BLE001
            opened.check()
            raise self.error(f"not a readable TIFF ({type(exc).__name__}: {exc})", opened.path) from None
        if whole:
            opened.check()
        if nbr_pages == 0:
            raise self.error("is a TIFF without any page", opened.path)
        if whole:
            opened.check_chain()
        return opened

    @staticmethod
    def _stored_plainly(page) -> bool:
        """Whether a page's pixels lie uncompressed and contiguous in a file (readable without tifffile)."""
        return bool(page.is_final and page.parent.filehandle.is_file and page.dtype is not None)

    def decode_page(self, page, source: Path | str, page_nbr: int) -> np.ndarray:
        """Decode a page's pixels with tifffile; whatever goes wrong is an InputError naming the page."""
        try:
            return page.asarray()
        except Exception as exc:  # noqa: BLE001 - corrupt compressed data raises zlib.error, codec errors...
            raise self.error(f"page {page_nbr}: cannot decode its pixels ({type(exc).__name__}: {exc})",
                             source) from None

    def scan_page(self, page, source: Path | str, page_nbr: int) -> tuple[tuple, np.dtype]:
        """Return the shape and dtype a page's frame will be stored with, from its header.

        Pixels are read only where the header cannot tell: floating-point
        pages, whose values decide whether they can be stored (whole numbers
        within 0..65535), and pages not stored plainly (compressed, tiled),
        whose data only decoding proves intact. Either is read again when
        the frame is uploaded; memory holds one page at a time.

        Raises
        ------
        InputError
            If the frame cannot be stored (shape, dtype or values) or its data cannot be decoded.
        """
        if not page.shape or not all(page.shape):
            raise self.error(f"page {page_nbr} holds no image (no width, height or samples)", source)
        if not all(isinstance(n, (int, np.integer)) and n > 0 for n in page.shape):
            raise self.error(f"page {page_nbr}: its header gives no valid shape ({str(page.shape)[:60]})", source)
        if page.dtype is None:
            raise self.error(f"page {page_nbr}: its pixel type is not supported "
                             "(only uint8, uint16 or whole-number float32)", source)
        if self._stored_plainly(page):
            # Read from the file as they lie (FilePixels): the strips must hold the whole frame.
            needed = int(np.prod(page.shape, dtype=np.int64)) * np.dtype(page.dtype).itemsize
            if sum(page.databytecounts) < needed:
                raise self.error(f"page {page_nbr}: its pixel data is {sum(page.databytecounts)} bytes but a "
                                 f"{page.dtype} frame of shape {page.shape} needs {needed} (damaged header?)",
                                 source)
        else:
            # Shape and dtype first: an unsupported page is refused without decoding it.
            self.stored_layout(tuple(page.shape), np.dtype(page.dtype), source, page_nbr, None)
            pixels = self.storable(self.decode_page(page, source, page_nbr), source, page_nbr)
            return tuple(pixels.shape), pixels.dtype
        return self.stored_layout(tuple(page.shape), np.dtype(page.dtype), source, page_nbr,
                                  lambda: self.decode_page(page, source, page_nbr))

    def stored_layout(self, shape: tuple, dtype: np.dtype, source: Path | str, page_nbr: int,
                      read) -> tuple[tuple, np.dtype]:
        """The (shape, dtype) that ``storable`` would give pixels of this shape and dtype.

        ``read()`` returns the pixels of a floating-point frame, whose values
        are checked; with ``read=None`` only the shape and dtype are.
        """
        if len(shape) == 3 and shape[2] == 1:
            shape = shape[:2]
        if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
            raise self.error(f"page {page_nbr} has shape {shape}; only 2D grayscale or RGB frames are supported",
                             source)
        if max(shape[:2]) > _MAX_SIDE:
            raise self.error(f"page {page_nbr} is {shape[1]} x {shape[0]} pixels; a PNG frame has at most "
                             f"{_MAX_SIDE} on a side", source)
        if dtype.kind == "f":
            if read is not None:
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
        if self._stored_plainly(page):
            return self.pixels_in_file(source, page.dataoffsets[0], tuple(page.shape),
                                       np.dtype(page.dtype).newbyteorder(byteorder), page_nbr)
        return self.storable(self.decode_page(page, source, page_nbr), source, page_nbr)

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


def _whole_number(value, name: str) -> int:
    """An index as Micro-Manager writes it: an integer, or its decimal text ("3")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().lstrip("-").isdecimal():
        return int(value)
    # 1.5 or true would otherwise become 1 and put the frame in another frame's place.
    raise ValueError(f"MicroManagerMetadata {name} = {value!r} is not an integer")


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
                return _whole_number(meta[name], name)
        if default is not None:
            return default
        raise ValueError(f"MicroManagerMetadata lacks {' or '.join(names)}")

    return (
        pick("ChannelIndex"),
        pick("SliceIndex", "Slice"),
        pick("FrameIndex", "Frame"),
        pick("PositionIndex", default=0),
    )
