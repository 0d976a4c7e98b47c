"""Splitters: read an image file or folder and yield its 2D frames one at a time."""

from pathlib import Path

from imaging_db.errors import InputError
from imaging_db.images.splitters.base import Frame, Splitter
from imaging_db.images.splitters.ometif_splitter import OmeTiffSplitter
from imaging_db.images.splitters.tif_folder_splitter import TifFolderSplitter
from imaging_db.images.splitters.tif_id_splitter import TifIdSplitter

SPLITTERS: dict[str, type[Splitter]] = {
    "ome_tiff": OmeTiffSplitter,
    "tif_folder": TifFolderSplitter,
    "tif_id": TifIdSplitter,
}


def make_splitter(frames_format: str, path: Path, dataset_serial: str,
                  positions: list[int] | None = None) -> Splitter:
    """Return the splitter for ``frames_format`` reading ``path``.

    Raises
    ------
    InputError
        On an unknown format, or positions given for a format without them.
    """
    try:
        cls = SPLITTERS[frames_format]
    except KeyError:
        raise InputError(f"unknown frames_format {frames_format!r}; choose one of {sorted(SPLITTERS)}") from None
    return cls(path, dataset_serial, positions)


__all__ = ["Frame", "Splitter", "SPLITTERS", "make_splitter"]
