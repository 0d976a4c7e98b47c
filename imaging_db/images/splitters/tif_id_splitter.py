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
    one is taken as a z-stack of its pages, which ``notes()`` says. Channel
    names come from the ImageJ ``Info``'s ``ChNames`` (Micro-Manager's
    summary), else from the ImageJ ``Labels`` when they name the channels,
    else the channel index.
    """

    frames_format = "tif_id"

    def __init__(self, path: Path, dataset_serial: str, positions: list[int] | None = None):
        super().__init__(path, dataset_serial, positions)
        self._notes: list[str] | None = None

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
        self._notes = []
        if not imagej:
            counts["slices"], total = nbr_pages, nbr_pages
            if nbr_pages > 1 and tif.pages.first.is_ome:
                self._notes.append(f"tif_id does not follow OME-XML: {nbr_pages} pages taken as {nbr_pages} slices "
                                   "(frames_format ome_tiff reads its layout)")
            elif nbr_pages > 1:
                self._notes.append(f"no ImageJ/OME metadata: {nbr_pages} pages taken as {nbr_pages} slices")
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

    def notes(self) -> list[str]:
        """``"no ImageJ/OME metadata: 12 pages taken as 12 slices"`` for a multi-page TIFF without ImageJ metadata.

        Reads the file's header if the frames were not gone through yet.

        Raises
        ------
        InputError
            If the file cannot be read (as ``frames`` would).
        """
        if self._notes is None:
            with self._open() as opened:
                self._layout(opened.tif)
        return list(self._notes or [])

    def _channel_names(self, imagej: dict, nbr_channels: int) -> list[str]:
        info = imagej.get("Info")
        try:
            summary = parse_json_tag(info, "Info") if info else None
        except ValueError:
            summary = None
        names = (summary or {}).get("ChNames")
        if isinstance(names, list) and len(names) == nbr_channels:
            return [str(n) for n in names]
        return _label_channel_names(imagej.get("Labels"), nbr_channels) or [str(c) for c in range(nbr_channels)]

    def global_metadata(self) -> dict:
        with self._open() as opened:
            imagej = self._imagej(opened.tif)
            calibration = _calibration(opened.tif.pages.first, imagej)
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
        meta.update(calibration)
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


def _label_channel_names(labels, nbr_channels: int) -> list[str] | None:
    """The channel names ImageJ ``Labels`` give, or None when they do not name the channels.

    Fiji writes one label per image, in ImageJ order (channel fastest). They
    name the channels when each image's label is its channel's: the first
    ``nbr_channels`` labels, repeated for every slice, position and time;
    labels that change along z or t (file names of an image sequence, a
    label per slice) are not channel names. A label's first line is taken,
    as ImageJ shows it; the channels' labels must be distinct and not blank.
    """
    if not isinstance(labels, (list, tuple)) or len(labels) < nbr_channels:
        return None
    short = [str(label).split("\n", 1)[0].strip() if label is not None else "" for label in labels]
    names = short[:nbr_channels]
    if not all(names) or len(set(names)) != nbr_channels:
        return None
    if any(label != names[i % nbr_channels] for i, label in enumerate(short)):
        return None
    return names


# ImageJ's spellings of a micrometre, the unit OME writes as "µm".
_MICRONS = {"micron", "microns", "um", "µm", "μm", "\\u00b5m", "\\u03bcm"}


def _unit(text) -> str | None:
    if text is None or not str(text).strip() or str(text).strip().lower() in ("pixel", "pixels"):
        return None
    text = str(text).strip()
    return "µm" if text.lower() in _MICRONS else text


def _calibration(page, imagej: dict) -> dict:
    """Pixel size and frame interval under the OME names (``PhysicalSizeX``... ``TimeIncrement``, with units).

    ImageJ writes the pixel size as the resolution (pixels per ``unit``) and
    the z step as ``spacing``; ``yunit`` and ``zunit`` when they differ from
    ``unit``; the frame interval as ``finterval`` (seconds unless ``tunit``
    says otherwise; the unit is recorded only when given). Without an ImageJ
    ``unit`` the resolution is a print setting (dots per inch), not a pixel size.
    """
    meta: dict = {}
    unit = _unit(imagej.get("unit"))
    if unit is not None:
        for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
            value = page.tags.get(tag)
            try:
                numerator, denominator = value.value
                size = denominator / numerator
            except (AttributeError, TypeError, ValueError, ZeroDivisionError):
                continue
            meta[f"PhysicalSize{axis}"] = size
            meta[f"PhysicalSize{axis}Unit"] = (_unit(imagej.get("yunit")) or unit) if axis == "Y" else unit
        spacing = imagej.get("spacing")
        if isinstance(spacing, (int, float)) and not isinstance(spacing, bool):
            meta["PhysicalSizeZ"] = float(spacing)
            meta["PhysicalSizeZUnit"] = _unit(imagej.get("zunit")) or unit
    finterval = imagej.get("finterval")
    if isinstance(finterval, (int, float)) and not isinstance(finterval, bool) and finterval > 0:
        meta["TimeIncrement"] = float(finterval)
        tunit = imagej.get("tunit")
        if tunit:
            meta["TimeIncrementUnit"] = "s" if str(tunit).strip().lower() in ("sec", "second", "seconds", "s") \
                else str(tunit).strip()
    return meta
