"""Micro-Manager OME-TIFF: a file, or a folder of ``*.ome.tif`` files (one or more per position)."""

import logging
from pathlib import Path
from typing import Iterator

import tifffile

from imaging_db.images.splitters.base import Frame, list_files
from imaging_db.images.splitters.micromanager import micromanager_indices, parse_json_tag, read_micromanager_tag
from imaging_db.images.splitters.tiff_pages import (
    OME_TIFF_SUFFIXES,
    TIFF_SUFFIXES,
    TiffSplitter,
    first_page_marks,
)

logger = logging.getLogger(__name__)


def _summary_from_ijmetadata(tif: tifffile.TiffFile) -> dict | str | None:
    tag = tif.pages[0].tags.get("IJMetadata")
    info = tag.value.get("Info") if tag is not None and isinstance(tag.value, dict) else None
    if info is None:
        return None
    try:
        return parse_json_tag(info, "IJMetadata Info")
    except ValueError:
        return info


class OmeTiffSplitter(TiffSplitter):
    """Yields each page of each OME-TIFF file, indexed by the page's own MicroManagerMetadata tag.

    tifffile's merged OME series is not used: the first file's OME-XML may
    describe pages that live in other files, while each page's tag is exact.
    """

    frames_format = "ome_tiff"
    supports_positions = True

    @classmethod
    def can_read(cls, path: Path) -> bool:
        """A TIFF file, or a folder's first ``*.ome.tif``, whose first page has a MicroManagerMetadata tag."""
        if path.is_dir():
            files = list_files(path, OME_TIFF_SUFFIXES)
            first = files[0] if files else None
        else:
            first = path if path.is_file() and path.name.lower().endswith(TIFF_SUFFIXES) else None
        return first is not None and "micromanager" in (first_page_marks(first) or ())

    def files(self) -> list[Path]:
        """Return the OME-TIFF files to read, in name order."""
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise self.error("is neither a file nor a folder")
        return self.folder_files(OME_TIFF_SUFFIXES)

    def global_metadata(self) -> dict:
        first = self.files()[0]
        with self.open_tiff(first) as opened:
            tif = opened.tif
            try:
                summary = _summary_from_ijmetadata(tif)
                if summary is None:
                    mm_header = (tif.micromanager_metadata if tif.is_micromanager else None) or {}
                    summary = mm_header.get("Summary")
            except Exception as exc:  # noqa: BLE001 - a damaged header is a bad input file
                raise self.error(f"cannot read its acquisition summary ({type(exc).__name__}: {exc})", first) from None
        meta: dict = {}
        if isinstance(summary, dict):
            meta.update(summary)
        elif summary:
            meta["IJMetadata_Info"] = summary
        meta["file_origin"] = str(self.path)
        return meta

    def frames(self, read_pixels: bool = True) -> Iterator[Frame]:
        for file in self.files():
            yield from self._file_frames(file, read_pixels)

    def _file_frames(self, file: Path, read_pixels: bool) -> Iterator[Frame]:
        with self.open_tiff(file) as opened:
            tif = opened.tif
            # Keep only the current page in memory however long the file.
            tif.pages.cache = False
            for page_nbr, page in enumerate(tif.pages):
                opened.check_page(page, page_nbr)  # a tag tifffile could not read is damage, not a missing tag
                try:
                    meta = read_micromanager_tag(page)
                    if meta is None:
                        raise ValueError("has no MicroManagerMetadata tag (51123)")
                    channel_idx, slice_idx, time_idx, pos_idx = micromanager_indices(meta)
                except ValueError as exc:
                    raise self.error(f"page {page_nbr}: {exc}", file) from None
                if self.positions is not None and pos_idx not in self.positions:
                    continue
                opened.check_page_data(page, page_nbr)
                channel_name = meta.get("Channel")
                channel_name = str(channel_name) if channel_name is not None else str(channel_idx)
                yield self.page_frame(opened, page, page_nbr, read_pixels,
                                      (channel_idx, slice_idx, time_idx, pos_idx), channel_name, meta)
