"""Export a selection of frames as standard microscopy images: an OME-Zarr or an OME-TIFF per position.

    frame rows -> FrameGrid (t, c, z of each frame) -> read_frames(then=decode) -> one image per position

The stored PNGs are the default download (``png``); the formats here
re-package the same pixels, bit for bit, for viewers and analysis tools:

- ``ome-zarr``: ``<id>_p<NNN>.ome.zarr``, an OME-NGFF 0.5 image (Zarr v3),
  axes t, c, z, y, x (time, channel, space; micrometers), one chunk per
  (t, c, z) plane, channel names in its ``omero`` metadata and the physical
  sizes in its scale. Written with zarr-python, its metadata built and
  validated by yaozarrs' NGFF models.
- ``tiff``: ``<id>_p<NNN>.ome.tif``, an OME-TIFF written by tifffile, axes
  TCZYX, channel names and physical sizes in its OME-XML (Fiji opens it as a
  hyperstack). BigTIFF when it would pass 4 GB.

Frames are fetched, verified and decoded on the read path's worker threads
(:func:`imaging_db.pipeline.frame_reader.read_frames`), and each is written as
it comes: memory holds the frames in flight, whatever the dataset's size.
A new format is one writer function and one line in :data:`EXPORT_FORMATS`.

This module imports numpy, zarr and tifffile only when an export runs, so
that ``data_downloader`` starts as fast as before.
"""

import importlib.util
import itertools
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from imaging_db.database.records import DatasetInfo, FrameRow
from imaging_db.errors import InputError, StorageError
from imaging_db.filestorage import DataStorage
from imaging_db.pipeline.frame_reader import read_frames

logger = logging.getLogger(__name__)

# The default download: the stored PNGs as they are (written by the downloader itself).
STORED_FORMAT = "png"

# Metadata keys giving a pixel's physical size, normalized (lower case, without "-", "_" and spaces), most
# specific first: OME's PhysicalSize* (OME-XML input), Micro-Manager's summary PixelSize_um / z-step_um and
# its frames' PixelSizeUm.
_SIZE_KEYS = {
    "x": ("physicalsizex", "pixelsizeum"),
    "y": ("physicalsizey", "pixelsizeum"),
    "z": ("physicalsizez", "zstepum"),
}
# Keys giving the time between time points: OME's TimeIncrement (unit TimeIncrementUnit, default s),
# Micro-Manager's Interval_ms.
_TIME_KEYS = ("timeincrement", "intervalms")
# Length units as OME writes them, in micrometers.
_MICROMETERS = {"µm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3,
                "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3, "m": 1e6, "meter": 1e6, "å": 1e-4, "angstrom": 1e-4}
# Time units, in seconds.
_SECONDS = {"s": 1.0, "second": 1.0, "ms": 1e-3, "millisecond": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0,
            "minute": 60.0, "h": 3600.0, "hour": 3600.0}
# Display colours of the channels, in order (omero metadata).
_COLOURS = ("00FF00", "FF00FF", "00FFFF", "FF0000", "0000FF", "FFFF00", "FFFFFF")
# A classic TIFF's offsets are 32 bits: past about this size an OME-TIFF is written as BigTIFF.
_CLASSIC_TIFF_BYTES = 2**32 - 2**25


def _normalized(key) -> str:
    return str(key).lower().replace("-", "").replace("_", "").replace(" ", "")


def _find(metadata: dict, names: Sequence[str]) -> tuple[dict, str] | None:
    """The shallowest dict in ``metadata`` (nested dicts searched breadth first) holding one of ``names``.

    Returns that dict and the key found, the earlier of ``names`` first.
    """
    level = [metadata]
    while level:
        for name in names:
            for mapping in level:
                for key in mapping:
                    if _normalized(key) == name:
                        return mapping, key
        level = [value for mapping in level for value in mapping.values() if isinstance(value, dict)]
    return None


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


@dataclass(frozen=True)
class PhysicalSizes:
    """A voxel's size in micrometers and the time between time points in seconds; None where not known."""

    x: float | None = None
    y: float | None = None
    z: float | None = None
    t: float | None = None

    @classmethod
    def from_metadata(cls, *metadata: dict | None) -> "PhysicalSizes":
        """The sizes the metadata give, each from the first of ``metadata`` that has it.

        Keys are matched whatever their case and punctuation, in nested dicts
        too: ``PhysicalSizeX`` (with ``PhysicalSizeXUnit``), ``PixelSizeUm`` or
        ``PixelSize_um``, ``PhysicalSizeZ``, ``z-step_um``, ``TimeIncrement``
        (with ``TimeIncrementUnit``), ``Interval_ms``. A value that is not a
        positive number, or has a unit not known here, is left out.
        """
        sizes = {}
        for axis, names in _SIZE_KEYS.items():
            sizes[axis] = cls._first(metadata, names, _MICROMETERS, "µm")
        sizes["t"] = cls._first(metadata, _TIME_KEYS, _SECONDS, "s")
        return cls(**sizes)

    @staticmethod
    def _first(metadata, names, units: dict[str, float], default_unit: str) -> float | None:
        for meta in metadata:
            if not isinstance(meta, dict):
                continue
            found = _find(meta, names)
            if found is None:
                continue
            mapping, key = found
            value = _positive(mapping[key])
            normalized = _normalized(key)
            if normalized.endswith("um"):
                unit = "µm"
            elif normalized.endswith("ms"):
                unit = "ms"
            else:
                unit = mapping.get(f"{key}Unit", default_unit)
            factor = units.get(str(unit).strip().lower()) if isinstance(unit, str) else None
            if value is not None and factor is not None:
                return value * factor
        return None


@dataclass
class ExportResult:
    """What an export wrote: the image files or folders (names in the download folder) and their bytes on disk."""

    files: list[str]
    nbytes: int


class ExportPlan:
    """Where each selected frame goes: one image per position, of shape (t, c, z, y, x).

    Made before anything is written, so that a selection that cannot be
    exported fails with nothing written.

    Parameters
    ----------
    info : DatasetInfo
        A frames dataset.
    rows : list of FrameRow
        Its selected frames, ordered by position, time, channel and slice.
    format : str
        A name of :data:`EXPORT_FORMATS`, for messages.

    Raises
    ------
    InputError
        If the frames are RGB (not exported: download them as PNG), or the format's libraries are missing.
    NotFoundError
        If the frames selected are not a full grid (the missing ones are named).
    """

    def __init__(self, info: DatasetInfo, rows: list[FrameRow], format: str):
        from imaging_db.api.stack import FrameGrid

        missing = [name for name in EXPORT_FORMATS[format].needs if importlib.util.find_spec(name) is None]
        if missing:
            raise InputError(f"dataset {info.serial}: --format {format} needs {' and '.join(missing)}, which "
                             "this Python lacks: pip install -r requirements.txt (from imaging_db's source)")
        self.info = info
        self.rows = rows
        self.format = format
        if info.layout.im_colors != 1:
            raise InputError(f"dataset {info.serial}: its frames are RGB ({info.layout.im_colors} colours), which "
                             f"--format {format} does not export (it writes grayscale channels); download the "
                             "frames as they are stored (--format png)")
        self.grid = FrameGrid(info, rows)
        self.positions = self.grid.axes["p"]
        self.shape = tuple(len(self.grid.axes[dim]) for dim in ("t", "c", "z")) + self.grid.frame.shape
        self.dtype = self.grid.frame.dtype
        self.channel_names = [name if name is not None else f"channel {idx}"
                              for idx, name in zip(self.grid.axes["c"], self.grid.channel_names)]

    def place(self, row: FrameRow) -> tuple[int, tuple[int, int, int]]:
        """A row's position index value, and its (t, c, z) place in that position's image."""
        p, t, c, z = self.grid.index(row)
        return row.pos_idx, (t, c, z)

    def name(self, position: int, suffix: str) -> str:
        """The file name of a position's image: ``<id>_p<NNN><suffix>``."""
        return f"{self.info.serial}_p{position:03d}{suffix}"

    def indices(self, position: int) -> dict:
        """The dataset's index values along each axis of a position's image, recorded with it."""
        return {"dataset_id": self.info.serial, "pos_idx": position,
                "time_idx": list(self.grid.axes["t"]), "channel_idx": list(self.grid.axes["c"]),
                "slice_idx": list(self.grid.axes["z"]), "channel_names": self.channel_names}


def _folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _decoder(plan: ExportPlan, storage: DataStorage, nbr_workers: int):
    """``then`` for read_frames: the frame's pixels, decoded on the worker, at most ``nbr_workers`` at once."""
    decoding = threading.BoundedSemaphore(nbr_workers)

    def decode(row: FrameRow, data: bytes):
        with decoding:
            return plan.grid.frame.decode(storage, row.file_name, data)

    return decode


def write_ome_zarr(plan: ExportPlan, storage: DataStorage, folder: Path, sizes: PhysicalSizes,
                   nbr_workers: int, progress: bool | None) -> list[str]:
    """Write one OME-Zarr (NGFF 0.5) image per position into ``folder``; return their names.

    Each (t, c, z) plane is one chunk (blosc-zstd, lossless), written by the
    worker thread that decoded it.
    """
    import numpy as np
    from yaozarrs import v05
    from yaozarrs.write.v05 import prepare_image

    serial = plan.info.serial
    top = float(np.iinfo(plan.dtype).max)
    channels = [v05.OmeroChannel(label=name, color=_COLOURS[i % len(_COLOURS)] if len(plan.channel_names) > 1
                                 else "FFFFFF", active=True,
                                 window=v05.OmeroWindow(start=0.0, end=top, min=0.0, max=top))
                for i, name in enumerate(plan.channel_names)]
    axes = [v05.TimeAxis(name="t", unit="second"), v05.ChannelAxis(name="c"),
            v05.SpaceAxis(name="z", unit="micrometer"), v05.SpaceAxis(name="y", unit="micrometer"),
            v05.SpaceAxis(name="x", unit="micrometer")]
    scale = [sizes.t or 1.0, 1.0, sizes.z or 1.0, sizes.y or 1.0, sizes.x or 1.0]
    arrays, names = {}, []
    for position in plan.positions:
        name = plan.name(position, ".ome.zarr")
        image = v05.Image(
            multiscales=[v05.Multiscale(name=f"{serial} position {position}", axes=axes, datasets=[
                v05.Dataset(path="0", coordinateTransformations=[v05.ScaleTransformation(scale=scale)])])],
            omero=v05.Omero(channels=channels, rdefs=v05.OmeroRenderingDefs(model="color")),
        )
        try:
            _, created = prepare_image(folder / name, image, (plan.shape, plan.dtype),
                                       chunks=(1, 1, 1, *plan.shape[3:]), writer="zarr",
                                       compression="blosc-zstd", extra_attributes={"imaging_db": plan.indices(position)})
        except OSError as exc:
            raise StorageError(f"dataset {serial}: cannot create {str(folder / name)!r}: "
                               f"{exc.strerror or exc}") from None
        arrays[position] = created["0"]
        names.append(name)
    decode = _decoder(plan, storage, nbr_workers)

    def write(row: FrameRow, data: bytes) -> None:  # on the read path's worker threads
        pixels = decode(row, data)
        position, place = plan.place(row)
        try:
            arrays[position][place] = pixels
        except OSError as exc:
            raise StorageError(f"dataset {serial}: cannot write frame {row.file_name} into "
                               f"{plan.name(position, '.ome.zarr')}: {exc.strerror or exc}") from None

    for _ in read_frames(storage, plan.info, plan.rows, nbr_workers, progress, then=write, decoding=True):
        pass
    return names


def write_ome_tiff(plan: ExportPlan, storage: DataStorage, folder: Path, sizes: PhysicalSizes,
                   nbr_workers: int, progress: bool | None) -> list[str]:
    """Write one OME-TIFF (axes TCZYX) per position into ``folder``; return their names.

    The pages are handed to tifffile's writer as they are decoded, in
    t, c, z order (the order of the rows), and written uncompressed and
    contiguous, as Fiji and every OME-TIFF reader open them.
    """
    import numpy as np
    import tifffile

    serial = plan.info.serial
    metadata = {"axes": "TCZYX", "Channel": {"Name": plan.channel_names}}
    for axis, size in (("X", sizes.x), ("Y", sizes.y), ("Z", sizes.z)):
        if size is not None:
            metadata[f"PhysicalSize{axis}"] = size
            metadata[f"PhysicalSize{axis}Unit"] = "µm"
    if sizes.t is not None:
        metadata["TimeIncrement"] = sizes.t
        metadata["TimeIncrementUnit"] = "s"
    pages_per_position = math.prod(plan.shape[:3])
    bigtiff = pages_per_position * math.prod(plan.shape[3:]) * np.dtype(plan.dtype).itemsize > _CLASSIC_TIFF_BYTES
    frames = read_frames(storage, plan.info, plan.rows, nbr_workers, progress,
                         then=_decoder(plan, storage, nbr_workers), decoding=True)
    names = []
    try:
        for position in plan.positions:
            name = plan.name(position, ".ome.tif")
            pages = (pixels for _, pixels in itertools.islice(frames, pages_per_position))
            try:
                with tifffile.TiffWriter(folder / name, bigtiff=bigtiff, ome=True) as tif:
                    tif.write(pages, shape=plan.shape, dtype=plan.dtype, photometric="minisblack",
                              metadata={**metadata, "Name": f"{serial} position {position}"})
            except OSError as exc:
                raise StorageError(f"dataset {serial}: cannot write {str(folder / name)!r}: "
                                   f"{exc.strerror or exc}") from None
            names.append(name)
    finally:
        frames.close()
    return names


@dataclass(frozen=True)
class ExportFormat:
    """An export format: its writer and the libraries it needs (imported only when it runs)."""

    write: Callable[..., list[str]]
    needs: tuple[str, ...]


# The export formats. ``data_downloader --format`` offers STORED_FORMAT and these.
EXPORT_FORMATS: dict[str, ExportFormat] = {
    "ome-zarr": ExportFormat(write_ome_zarr, needs=("zarr", "yaozarrs")),
    "tiff": ExportFormat(write_ome_tiff, needs=("tifffile",)),
}
FORMATS = (STORED_FORMAT, *EXPORT_FORMATS)


def check_format(serial: str, format: str, frames: bool) -> None:
    """Refuse an unknown format, or an export of a file dataset.

    Raises
    ------
    InputError
        Naming the formats there are, or saying how to get the file.
    """
    if format not in FORMATS:
        raise InputError(f"dataset {serial}: unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if format != STORED_FORMAT and not frames:
        raise InputError(f"dataset {serial} is a file dataset: --format {format} exports frames; "
                         f"download its file as it is stored (--format {STORED_FORMAT})")


def export_frames(format: str, plan: ExportPlan, storage: DataStorage, folder: Path, sizes: PhysicalSizes,
                  nbr_workers: int = 1, progress: bool | None = None) -> ExportResult:
    """Write the frames of ``plan`` into ``folder`` in ``format`` (a name of :data:`EXPORT_FORMATS`).

    Raises
    ------
    IntegrityError
        If a frame does not match its checksum, or is not a PNG of the dataset's shape and type.
    NotFoundError, StorageError
        If a frame cannot be read, or the images cannot be written.
    """
    names = EXPORT_FORMATS[format].write(plan, storage, folder, sizes, nbr_workers, progress)
    logger.info("dataset %s: %d frame(s) exported as %s: %s", plan.info.serial, len(plan.rows), format,
                ", ".join(names))
    return ExportResult(names, sum(_folder_bytes(folder / name) for name in names))
