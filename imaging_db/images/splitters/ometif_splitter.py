"""OME-TIFF: a file, or a folder of ``*.ome.tif`` files (one or more per position).

Micro-Manager's files are read by each page's MicroManagerMetadata tag; any
other OME-TIFF (Bio-Formats, aicsimageio/bioio, tifffile, vendor exports) by
its OME-XML (see ``ome_xml``).
"""

import logging
from pathlib import Path
from typing import Iterator

import tifffile

from imaging_db.images.splitters.base import Frame, list_files
from imaging_db.images.splitters.micromanager import (
    MICROMANAGER_TAG,
    micromanager_indices,
    parse_json_tag,
    read_micromanager_tag,
)
from imaging_db.images.splitters.ome_xml import OmeLayout, OmeXmlError
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
    """Yields each page of each OME-TIFF file, indexed by its MicroManagerMetadata tag or the OME-XML.

    When the first file's first page has Micro-Manager's tag, every page is
    indexed by its own tag, as Micro-Manager wrote it: tifffile's merged OME
    series is not used, since the first file's OME-XML may describe pages
    that live in other files, while each page's tag is exact. Otherwise the
    files' OME-XML says where each plane lies (``OmeLayout``): each Image is
    a position, channel names and per-plane attributes come from it.
    """

    frames_format = "ome_tiff"
    supports_positions = True

    def __init__(self, path: Path, dataset_serial: str, positions: list[int] | None = None):
        super().__init__(path, dataset_serial, positions)
        self._by_tags: bool | None = None  # whether pages are read by their Micro-Manager tags, once known
        self._layout: OmeLayout | None = None
        self._notes: dict[Path, str] | None = None  # per file, once its pages were counted

    @classmethod
    def can_read(cls, path: Path) -> bool:
        """A TIFF file, or a folder's first ``*.ome.tif``, whose first page has a MicroManagerMetadata tag or OME-XML."""
        if path.is_dir():
            files = list_files(path, OME_TIFF_SUFFIXES)
            first = files[0] if files else None
        else:
            first = path if path.is_file() and path.name.lower().endswith(TIFF_SUFFIXES) else None
        return first is not None and bool({"micromanager", "ome"} & (first_page_marks(first) or set()))

    def files(self) -> list[Path]:
        """Return the OME-TIFF files to read, in name order."""
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise self.error("is neither a file nor a folder")
        return self.folder_files(OME_TIFF_SUFFIXES)

    def ome_layout(self) -> OmeLayout | None:
        """Where the planes lie, from the OME-XML; None when the files are Micro-Manager's (or have no OME-XML).

        Micro-Manager's tags take precedence: a first page with them (or
        without OME-XML, which the tags' errors then explain) means every
        page is read by its own tag.

        Raises
        ------
        InputError
            If the OME-XML cannot be read or does not describe the files' pages.
        """
        if self._by_tags is None:
            files = self.files()
            with self.open_tiff(files[0]) as opened:
                first = opened.tif.pages.first
                # A tag cut off by damage must not make a Micro-Manager file look like an OME-only one.
                opened.check_page(first, 0)
                by_tags = MICROMANAGER_TAG in first.tags or not first.is_ome
            if not by_tags:
                try:
                    self._layout = OmeLayout(files)
                except OmeXmlError as exc:
                    raise self.error(str(exc), exc.source) from None
            self._by_tags = by_tags
        return self._layout

    def notes(self) -> list[str]:
        """Pages the OME-XML does not describe, which are skipped: one note per file that has some.

        Counts the files' pages if the frames were not gone through yet.

        Raises
        ------
        InputError
            If a file cannot be read (as ``frames`` would).
        """
        layout = self.ome_layout()
        if layout is None:
            return []
        if self._notes is None:
            self._notes = {}
            for file in layout.files:
                if layout.pages_of(file):
                    with self.open_tiff(file) as opened:
                        self._count_pages(layout, file, len(opened.tif.pages))
        return [self._notes[file] for file in layout.files if file in self._notes]

    def _count_pages(self, layout: OmeLayout, file: Path, nbr_pages: int) -> None:
        """Check the OME-XML's IFDs of ``file`` are there and note the pages it leaves out."""
        described = layout.pages_of(file)
        beyond = sorted(ifd for ifd in described if ifd >= nbr_pages)
        if beyond:
            raise self.error(f"its OME-XML puts {len(beyond)} planes in IFDs from {beyond[0]} on, but the file "
                             f"has {nbr_pages} pages", file)
        skipped = [n for n in range(nbr_pages) if n not in described]
        if skipped:
            self._notes[file] = (f"{file.name}: {len(skipped)} of {nbr_pages} pages not described by the "
                                 f"OME-XML, skipped (pages {_ranges(skipped)})")

    def global_metadata(self) -> dict:
        layout = self.ome_layout()
        if layout is not None:
            return {**layout.global_metadata(), "file_origin": str(self.path)}
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
        layout = self.ome_layout()
        if layout is not None:
            self._notes = {}
            for file in layout.files:
                yield from self._ome_file_frames(layout, file, read_pixels)
            return
        for file in self.files():
            yield from self._file_frames(file, read_pixels)

    def _ome_file_frames(self, layout: OmeLayout, file: Path, read_pixels: bool) -> Iterator[Frame]:
        described = layout.pages_of(file)
        if not described:
            return
        with self.open_tiff(file) as opened:
            tif = opened.tif
            tif.pages.cache = False
            self._count_pages(layout, file, len(tif.pages))
            for page_nbr in sorted(described):
                plane = described[page_nbr]
                if self.positions is not None and plane.pos_idx not in self.positions:
                    continue
                page = tif.pages[page_nbr]
                opened.check_page(page, page_nbr)
                opened.check_page_data(page, page_nbr)
                yield self.page_frame(opened, page, page_nbr, read_pixels, plane.indices, plane.channel_name,
                                      dict(plane.metadata))

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


def _ranges(numbers: list[int]) -> str:
    """Sorted page numbers as "0-3, 7"."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        if start is None:
            start = n
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)
