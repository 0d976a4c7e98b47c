"""A folder of single-frame TIFFs, indexed by their MicroManagerMetadata or their names."""

import json
from pathlib import Path
from typing import Iterator

from imaging_db.errors import InputError
from imaging_db.images.splitters.base import Frame, list_files
from imaging_db.images.splitters.micromanager import micromanager_indices, read_micromanager_tag
from imaging_db.images.splitters.tiff_pages import OME_TIFF_SUFFIXES, TIFF_SUFFIXES, TiffSplitter
from imaging_db.metadata.filename_parsers import parse_sms_name

SUMMARY_FILE = "metadata.txt"


class TifFolderSplitter(TiffSplitter):
    """Yields one frame per ``*.tif`` file of a folder.

    Indices come from each file's MicroManagerMetadata tag when present, else
    from the name ``img_<channel>_t000_p000_z000.tif``; channel indices of
    named files follow the sorted channel names.
    """

    frames_format = "tif_folder"

    @classmethod
    def can_read(cls, path: Path) -> bool:
        """A folder holding ``*.tif`` files, none of them ``*.ome.tif`` (those are ome_tiff's)."""
        if not path.is_dir():
            return False
        files = list_files(path, TIFF_SUFFIXES)
        return bool(files) and not any(p.name.lower().endswith(OME_TIFF_SUFFIXES) for p in files)

    def files(self) -> list[Path]:
        """Return the TIFF files of the folder, in name order."""
        if not self.path.is_dir():
            raise self.error("tif_folder needs a folder of single-frame TIFFs")
        return self.folder_files(TIFF_SUFFIXES)

    def global_metadata(self) -> dict:
        meta: dict = {}
        summary_path = self.path / SUMMARY_FILE
        if summary_path.is_file():
            try:
                summary = json.loads(summary_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise self.error(f"is not valid JSON ({exc})", summary_path) from None
            # A Micro-Manager metadata.txt also holds every frame's metadata: keep the summary.
            if isinstance(summary, dict) and isinstance(summary.get("Summary"), dict):
                summary = summary["Summary"]
            meta["Summary"] = summary
        meta["file_origin"] = str(self.path)
        return meta

    def _channel_indices(self, files: list[Path]) -> dict[str, int]:
        names = set()
        for file in files:
            try:
                names.add(parse_sms_name(file.name)["channel_name"])
            except InputError:
                pass
        return {name: idx for idx, name in enumerate(sorted(names))}

    def frames(self, read_pixels: bool = True) -> Iterator[Frame]:
        files = self.files()
        channel_indices = None
        for file in files:
            with self.open_tiff(file) as opened:
                tif = opened.tif
                if len(tif.pages) != 1:
                    raise self.error(f"holds {len(tif.pages)} pages; tif_folder expects single-frame TIFFs", file)
                page = tif.pages[0]
                opened.check_page(page, 0)
                opened.check_page_data(page, 0)
                try:
                    meta = read_micromanager_tag(page)
                    if meta is not None:
                        channel_idx, slice_idx, time_idx, pos_idx = micromanager_indices(meta)
                        channel_name = str(meta.get("Channel", channel_idx))
                except ValueError as exc:
                    raise self.error(str(exc), file) from None
                if meta is None:
                    try:
                        parsed = parse_sms_name(file.name)
                    except InputError:
                        raise self.error(
                            "has no MicroManagerMetadata tag and its name is not img_<channel>_t000_p000_z000.tif",
                            file,
                        ) from None
                    if channel_indices is None:
                        channel_indices = self._channel_indices(files)
                    meta = {}
                    channel_name = parsed["channel_name"]
                    channel_idx = channel_indices[channel_name]
                    slice_idx, time_idx, pos_idx = parsed["slice_idx"], parsed["time_idx"], parsed["pos_idx"]
                yield self.page_frame(opened, page, 0, read_pixels, (channel_idx, slice_idx, time_idx, pos_idx),
                                      channel_name, meta)
