"""One multi-page TIFF (typically an ImageJ hyperstack) with little metadata."""

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import tifffile

from imaging_db.images.pixels import Pixels
from imaging_db.images.splitters.base import Frame
from imaging_db.images.splitters.micromanager import parse_json_tag
from imaging_db.images.splitters.tiff_pages import TIFF_SUFFIXES, TiffSplitter, first_page_marks

_COUNT_KEYS = ("channels", "slices", "positions", "frames")


class TifIdSplitter(TiffSplitter):
    """Yields the pages of one TIFF in ImageJ order: channel fastest, then slice, position, time.

    The counts come from the first page's ImageJ ImageDescription
    (``channels=``, ``slices=``, ``frames=``, ``positions=``); a TIFF without
    one is taken as a z-stack of its pages.
    """

    frames_format = "tif_id"

    @classmethod
    def can_read(cls, path: Path) -> bool:
        """A TIFF file whose first page has neither a MicroManagerMetadata tag (ome_tiff's) nor OME-XML.

        An OME-TIFF without Micro-Manager's tags is neither format's: its
        pages' indices are in its OME-XML, which tif_id would not follow.
        """
        if not (path.is_file() and path.name.lower().endswith(TIFF_SUFFIXES)):
            return False
        marks = first_page_marks(path)
        return marks is not None and not marks & {"micromanager", "ome"}

    def _open(self):
        """Open the TIFF (see ``TiffSplitter.open_tiff``); ``frames`` checks its IFD chain."""
        if not self.path.is_file():
            raise self.error("tif_id needs one multi-page TIFF file")
        # ImageJ writes the IFDs after the pixels: a hyperstack whose later IFDs are cut off (or, > 4 GB,
        # never written) is read as contiguous data, checked against the file's size instead.
        return self.open_tiff(self.path, whole=False)

    def _imagej(self, tif: tifffile.TiffFile) -> dict:
        return tif.imagej_metadata or {}

    def _layout(self, tif: tifffile.TiffFile) -> tuple[dict[str, int], int]:
        imagej = self._imagej(tif)
        counts = {}
        for key in _COUNT_KEYS:
            try:
                counts[key] = int(imagej.get(key, 1))
            except (TypeError, ValueError):
                raise self.error(f"ImageDescription {key}={imagej.get(key)!r} is not an integer") from None
            if counts[key] < 1:
                raise self.error(f"ImageDescription {key}={counts[key]} must be at least 1")
        total = int(np.prod(list(counts.values())))
        nbr_pages = self._nbr_images(tif, imagej)
        if not imagej:
            counts["slices"], total = nbr_pages, nbr_pages
        if total != nbr_pages:
            raise self.error(
                f"holds {nbr_pages} images but its ImageDescription says channels*slices*positions*frames = "
                f"{counts['channels']}*{counts['slices']}*{counts['positions']}*{counts['frames']} = {total}"
            )
        return counts, nbr_pages

    def _nbr_images(self, tif: tifffile.TiffFile, imagej: dict) -> int:
        pages = len(tif.pages)
        images = int(imagej.get("images", pages) or pages)
        return max(pages, images)

    def _channel_names(self, imagej: dict, nbr_channels: int) -> list[str]:
        info = imagej.get("Info")
        try:
            summary = parse_json_tag(info, "Info") if info else None
        except ValueError:
            summary = None
        names = (summary or {}).get("ChNames")
        if isinstance(names, list) and len(names) == nbr_channels:
            return [str(n) for n in names]
        return [str(c) for c in range(nbr_channels)]

    def global_metadata(self) -> dict:
        with self._open() as opened:
            imagej = self._imagej(opened.tif)
        meta: dict = {}
        for key, value in imagej.items():
            if key == "Info":
                try:
                    value = parse_json_tag(value, "Info")
                except ValueError:
                    pass
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue  # LUTs, ranges and other arrays are display settings, not acquisition facts
            meta[key] = value
        meta["file_origin"] = str(self.path)
        return meta

    def _contiguous_layout(self, tif: tifffile.TiffFile, nbr_pages: int) -> tuple[int, tuple, np.dtype]:
        """(offset, shape, file dtype) of a hyperstack whose IFDs ImageJ wrote only for the first page (> 4 GB).

        Its images lie one after another from the first image's data offset.
        """
        first = tif.pages[0]
        offset = tif.series[0].dataoffset if tif.series else None
        if offset is None or first.compression != 1 or first.dtype is None:
            raise self.error(
                f"has {len(tif.pages)} IFDs for {nbr_pages} images and its data is not contiguous and uncompressed"
            )
        dtype = np.dtype(first.dtype).newbyteorder(tif.byteorder)
        shape = tuple(first.shape)
        needed = offset + nbr_pages * int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        size = self.path.stat().st_size
        if size < needed:
            raise self.error(f"cannot map its contiguous ImageJ data: the file has {size} bytes, "
                             f"its {nbr_pages} images need {needed}")
        return offset, shape, dtype

    def _contiguous_frame(self, contiguous: tuple, page_nbr: int, read_pixels: bool,
                          indices: tuple[int, int, int, int], channel_name: str) -> Frame:
        """The Frame of image ``page_nbr`` of a hyperstack without its IFDs (see ``_contiguous_layout``)."""
        offset, file_shape, file_dtype = contiguous
        frame_bytes = int(np.prod(file_shape, dtype=np.int64)) * file_dtype.itemsize

        def pixels() -> Pixels:
            return self.pixels_in_file(self.path, offset + page_nbr * frame_bytes, file_shape, file_dtype, page_nbr)

        if read_pixels:
            return Frame(*indices, channel_name, {}, str(self.path), page_nbr, pixels=pixels())
        # Only float frames are read here, and those come back as checked uint16 arrays.
        shape, dtype = self.stored_layout(file_shape, file_dtype, self.path, page_nbr, lambda: pixels().read())
        return Frame(*indices, channel_name, {}, str(self.path), page_nbr, shape=shape, dtype=dtype)

    def frames(self, read_pixels: bool = True) -> Iterator[Frame]:
        with self._open() as opened:
            tif = opened.tif
            tif.pages.cache = False
            counts, nbr_pages = self._layout(tif)
            names = self._channel_names(self._imagej(tif), counts["channels"])
            contiguous = None
            if len(tif.pages) < nbr_pages:
                # Also when only scanning: a file shorter than its header promises must fail before upload.
                contiguous = self._contiguous_layout(tif, nbr_pages)
            else:
                opened.check_chain()
            nc, nz, npos = counts["channels"], counts["slices"], counts["positions"]
            for page_nbr in range(nbr_pages):
                channel_idx = page_nbr % nc
                slice_idx = (page_nbr // nc) % nz
                pos_idx = (page_nbr // (nc * nz)) % npos
                time_idx = page_nbr // (nc * nz * npos)
                indices = (channel_idx, slice_idx, time_idx, pos_idx)
                if contiguous is not None:
                    yield self._contiguous_frame(contiguous, page_nbr, read_pixels, indices, names[channel_idx])
                    continue
                page = tif.pages[page_nbr]
                opened.check_page(page, page_nbr)
                opened.check_page_data(page, page_nbr)
                yield self.page_frame(opened, page, page_nbr, read_pixels, indices, names[channel_idx], {})
