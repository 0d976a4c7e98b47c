"""Splitters: read an image file or folder and yield its 2D frames one at a time.

``SPLITTERS`` is the one list of frame formats: the names a config may give
as ``frames_format``, the error that lists them and the choice of a format
when none is given all read it. A new format is a ``Splitter`` subclass in
its own module and one line here. ``ALIASES`` holds the original imagingDB's
other names for these formats, which configs written for it still use.
"""

from pathlib import Path

from imaging_db.errors import InputError
from imaging_db.images.splitters.base import Frame, Splitter, printable_path
from imaging_db.images.splitters.ometif_splitter import OmeTiffSplitter
from imaging_db.images.splitters.tif_folder_splitter import TifFolderSplitter
from imaging_db.images.splitters.tif_id_splitter import TifIdSplitter

SPLITTERS: dict[str, type[Splitter]] = {
    "ome_tiff": OmeTiffSplitter,
    "tif_folder": TifFolderSplitter,
    "tif_id": TifIdSplitter,
}
# The original imagingDB's other names for the formats above (its aux_utils.get_splitter_class):
# a config may give them, and is told the name here.
ALIASES: dict[str, str] = {
    "ome_tif": "ome_tiff",
    "tiff": "ome_tiff",
    "tiff_folder": "tif_folder",
    "tiff_id": "tif_id",
    "tif_video": "tif_id",  # the same ImageJ-described stack, under its name until 29 Nov 2018
}
# frames_format None or AUTO_FORMAT: the one splitter whose can_read accepts the path.
AUTO_FORMAT = "auto"


def splitter_names() -> list[str]:
    """The frame formats there are splitters for, sorted."""
    return sorted(SPLITTERS)


def _choose(path: Path, dataset_serial: str) -> str:
    """The name of the one splitter that can read ``path``, or InputError."""
    fitting = [name for name in splitter_names() if SPLITTERS[name].can_read(path)]
    if len(fitting) == 1:
        return fitting[0]
    where = f"dataset {dataset_serial}: {printable_path(path)}"
    if not fitting:
        raise InputError(f"{where}: no frames_format can read it; choose one of {splitter_names()}")
    raise InputError(f"{where}: several frames_formats can read it ({', '.join(fitting)}); "
                     "set frames_format to the right one")


def make_splitter(frames_format: str | None, path: Path, dataset_serial: str,
                  positions: list[int] | None = None) -> Splitter:
    """Return the splitter for ``frames_format`` reading ``path``.

    Parameters
    ----------
    frames_format : str or None
        A name in ``SPLITTERS``; None or ``"auto"`` chooses the one splitter
        whose ``can_read`` accepts ``path``.
    path : Path
        The file or folder to read.
    dataset_serial : str
        The dataset id, for error messages.
    positions : list of int, optional
        Only frames at these positions (formats that support it).

    Raises
    ------
    InputError
        On an unknown format, a path no format or several formats can read
        (with ``auto``), or positions given for a format without them.
    """
    path = Path(path)
    if frames_format is None or frames_format == AUTO_FORMAT:
        frames_format = _choose(path, dataset_serial)
    try:
        cls = SPLITTERS[frames_format]
    except KeyError:
        raise InputError(f"unknown frames_format {frames_format!r}; choose one of {splitter_names()}") from None
    return cls(path, dataset_serial, positions)


__all__ = [
    "ALIASES", "AUTO_FORMAT", "Frame", "SPLITTERS", "Splitter", "OmeTiffSplitter", "TifFolderSplitter", "TifIdSplitter",
    "make_splitter", "splitter_names",
]
