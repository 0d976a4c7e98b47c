"""TIFF files for splitters: opening them with checks that they are whole, and reading their pages as frames."""

import contextlib
import logging
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
from imaging_db.images.pixels import ArrayPixels, Pixels
from imaging_db.images.png import storable_dtype, storable_shape
from imaging_db.images.splitters.base import Frame, Splitter, printable_path
from imaging_db.images.splitters.micromanager import MICROMANAGER_TAG

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
OME_TIFF_SUFFIXES = (".ome.tif", ".ome.tiff")
# What tifffile logs, and then carries on without, when a file's structure is damaged: an IFD chain
# that breaks off (the pages after it silently missing), a tag whose value lies beyond the end of the
# file (the tag silently missing), a page without its data offsets or byte counts, an ImageJ stack
# shorter than its header says (tif_id then checks the file's size itself).
_TIFF_DAMAGE = re.compile(
    r"^<(TiffTag\.fromfile> "
    r"|tifffile\.TiffPages "
    r"|tifffile\.TiffTag \d+ @\d+> (invalid|could not read)"
    r"|tifffile\.Tiff(Page|Frame) [^>]*> (missing|incorrect)"
    r"|tifffile\.TiffFile [^>]*> ImageJ series metadata invalid)"
)


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


@contextlib.contextmanager
def _tifffile_reports(path: Path) -> Iterator[_DamageReports]:
    """Take what tifffile logs about ``path`` in this thread, while in the context."""
    reports = _DamageReports(path)
    tiff_logger = logging.getLogger("tifffile")
    tiff_logger.addFilter(reports)
    try:
        yield reports
    finally:
        tiff_logger.removeFilter(reports)


def first_page_marks(path: Path) -> set[str] | None:
    """Which metadata the first page of a TIFF file carries: "micromanager" (tag 51123), "ome" (OME-XML).

    Reads the header and the first IFD only, for ``can_read``. Returns None
    if ``path`` is not a readable TIFF; why is logged at debug level, and
    reading the file with a chosen splitter reports it.
    """
    with _tifffile_reports(path):
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                marks = set()
                if MICROMANAGER_TAG in page.tags:
                    marks.add("micromanager")
                if page.is_ome:
                    marks.add("ome")
                return marks
        except Exception as exc:  # noqa: BLE001 - any reader error means: not a TIFF this format reads
            logger.debug("%s: not a readable TIFF (%s: %s)", printable_path(path), type(exc).__name__, exc)
            return None


@dataclass
class OpenTiff:
    """A TIFF file open for reading (``tif``), with checks that it is whole.

    tifffile reads what it can of a damaged file; the checks here turn what
    it skipped into an InputError naming the dataset and the file: what
    tifffile logged, else an IFD chain that does not end where the TIFF
    specification says, or a page with fewer tags than its IFD lists (so
    they hold even when logging is disabled).
    """

    splitter: Splitter
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

    def check_page_data(self, page, page_nbr: int) -> None:
        """Raise InputError if a page's pixel data would run past the end of the file (a truncated file).

        Checked while scanning, so such a file is refused before anything is stored.
        """
        file_size = self.tif.filehandle.size
        ends = [offset + count for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True) if count]
        if ends and max(ends) > file_size:
            raise self.splitter.error(f"page {page_nbr}: its pixel data ends at byte {max(ends)} but the file has "
                                      f"only {file_size} bytes (truncated?)", self.path)


class TiffSplitter(Splitter):
    """A splitter whose frames are the pages of TIFF files: opens them whole and reads their pages."""

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
        with _tifffile_reports(path) as reports:
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

    def pixels_in_file(self, source: Path | str, offset: int, shape: tuple, file_dtype: np.dtype,
                       page_nbr: int) -> Pixels:
        """Pixels stored uncompressed and contiguously at ``offset`` of a file.

        Left in the file (a FilePixels) when PNG takes them as they are (uint8
        or uint16, 2D or RGB); otherwise read now and made storable.
        """
        where = f"dataset {self.dataset_serial}: {source}: page {page_nbr}"
        pixels = FilePixels(source, offset, shape, file_dtype, where)
        if storable_dtype(pixels.dtype) and storable_shape(shape):
            return pixels
        return ArrayPixels(self.storable(pixels.read(), source, page_nbr))

    def page_pixels(self, page, source: Path | str, page_nbr: int, byteorder: str) -> Pixels:
        """A TIFF page's pixels: see ``pixels_in_file`` for pages stored plainly; others decoded by tifffile."""
        if self._stored_plainly(page):
            return self.pixels_in_file(source, page.dataoffsets[0], tuple(page.shape),
                                       np.dtype(page.dtype).newbyteorder(byteorder), page_nbr)
        return ArrayPixels(self.storable(self.decode_page(page, source, page_nbr), source, page_nbr))

    def page_frame(self, opened: OpenTiff, page, page_nbr: int, read_pixels: bool,
                   indices: tuple[int, int, int, int], channel_name: str, metadata: dict) -> Frame:
        """The Frame of a TIFF page at (channel, slice, time, position) ``indices``.

        With ``read_pixels`` it carries the page's pixels (``page_pixels``);
        without, the shape and dtype they will be stored with (``scan_page``).
        """
        pixels = shape = dtype = None
        if read_pixels:
            pixels = self.page_pixels(page, opened.path, page_nbr, opened.tif.byteorder)
        else:
            shape, dtype = self.scan_page(page, opened.path, page_nbr)
        return Frame(*indices, channel_name, metadata, str(opened.path), page_nbr, pixels, shape, dtype)
