"""OME-XML in OME-TIFF files: which page of which file holds which plane, and the metadata it gives.

Files written by Bio-Formats (bfconvert), aicsimageio/bioio, tifffile and
vendor exports carry no per-page tags: their first page's ImageDescription
holds OME-XML whose ``Image`` elements (one per position) say, through
``DimensionOrder``, ``SizeC/Z/T`` and ``TiffData`` blocks, which IFD of
which file holds each (channel, slice, time) plane. The XML is read with
``ome-types`` (the OME data model, pydantic classes), imported only when
such a file is read, as it takes a few tenths of a second.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import tifffile

from imaging_db.images.splitters.base import printable_path

# Plane attributes kept as a frame's metadata: (ome-types field, OME attribute, unit field or None).
_PLANE_ATTRIBUTES = (
    ("the_c", "TheC", None),
    ("the_z", "TheZ", None),
    ("the_t", "TheT", None),
    ("delta_t", "DeltaT", "delta_t_unit"),
    ("exposure_time", "ExposureTime", "exposure_time_unit"),
    ("position_x", "PositionX", "position_x_unit"),
    ("position_y", "PositionY", "position_y_unit"),
    ("position_z", "PositionZ", "position_z_unit"),
)
# Pixels attributes kept in the global metadata, each with its unit when the value is given.
_PIXELS_ATTRIBUTES = (
    ("physical_size_x", "PhysicalSizeX", "physical_size_x_unit"),
    ("physical_size_y", "PhysicalSizeY", "physical_size_y_unit"),
    ("physical_size_z", "PhysicalSizeZ", "physical_size_z_unit"),
    ("time_increment", "TimeIncrement", "time_increment_unit"),
)


class OmeXmlError(ValueError):
    """The OME-XML of a file cannot be read or does not describe its pages; the message says why."""

    def __init__(self, problem: str, source: Path | None = None):
        super().__init__(problem)
        self.source = source


@dataclass(frozen=True)
class OmePlane:
    """Where one page's frame belongs, as its OME-XML says."""

    channel_idx: int
    slice_idx: int
    time_idx: int
    pos_idx: int
    channel_name: str
    metadata: dict = field(hash=False, compare=False)

    @property
    def indices(self) -> tuple[int, int, int, int]:
        return (self.channel_idx, self.slice_idx, self.time_idx, self.pos_idx)


def _plain(value):
    """An ome-types value as JSON can hold it: enums (units, types) by their OME text."""
    return getattr(value, "value", value)


def _with_units(obj, attributes) -> dict:
    """The attributes of ``obj`` that are given, each followed by its unit."""
    found = {}
    for name, key, unit in attributes:
        value = getattr(obj, name, None)
        if value is None:
            continue
        found[key] = _plain(value)
        if unit is not None and getattr(obj, unit, None) is not None:
            found[f"{key}Unit"] = _plain(getattr(obj, unit))
    return found


def read_ome(path: Path):
    """The parsed OME-XML of a TIFF file's first page (an ``ome_types.OME``), or None if it has none.

    Raises
    ------
    OmeXmlError
        If the file cannot be opened or its OME-XML cannot be parsed.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            text = page.description if page.is_ome else None
    except Exception as exc:  # noqa: BLE001 - reading the pages later reports the damage itself
        raise OmeXmlError(f"not a readable TIFF ({type(exc).__name__}: {exc})", path) from None
    if text is None:
        return None
    import ome_types  # noqa: PLC0415 - a few tenths of a second, paid only when an OME-XML is read

    try:
        with warnings.catch_warnings():
            # xsdata warns of a value it cannot convert, then pydantic raises on it: the error says it once.
            warnings.simplefilter("ignore")
            return ome_types.from_xml(text)
    except Exception as exc:  # noqa: BLE001 - pydantic, xsdata and lxml each raise their own errors
        first_line = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first_line[:3])
        raise OmeXmlError(f"its OME-XML cannot be read ({type(exc).__name__}: {detail})", path) from None


def _nbr_channels(pixels) -> int:
    """Channels as imaging_db counts them: an RGB channel (SamplesPerPixel 3) is one channel of 3 samples."""
    channels = pixels.channels
    if channels and sum(c.samples_per_pixel or 1 for c in channels) == pixels.size_c:
        return len(channels)
    return pixels.size_c


def channel_names(pixels) -> list[str]:
    """Each channel's Name, else its index as text."""
    nbr = _nbr_channels(pixels)
    channels = pixels.channels if len(pixels.channels) == nbr else []
    return [(channels[c].name if channels and channels[c].name else str(c)) for c in range(nbr)]


def _sizes(pixels) -> dict[str, int]:
    return {"C": _nbr_channels(pixels), "Z": pixels.size_z, "T": pixels.size_t}


def _order(pixels) -> str:
    """The plane order, fastest first: "ZCT" for DimensionOrder XYZCT."""
    return _plain(pixels.dimension_order)[2:]


def plane_indices(pixels, plane: int) -> dict[str, int]:
    """{"C", "Z", "T"} of plane number ``plane`` of an image, in its DimensionOrder."""
    sizes = _sizes(pixels)
    indices = {}
    for axis in _order(pixels):
        indices[axis] = plane % sizes[axis]
        plane //= sizes[axis]
    return indices


def plane_number(pixels, c: int, z: int, t: int) -> int:
    """The plane number of (c, z, t) in an image's DimensionOrder (the inverse of ``plane_indices``)."""
    sizes, indices = _sizes(pixels), {"C": c, "Z": z, "T": t}
    number = 0
    for axis in reversed(_order(pixels)):
        number = number * sizes[axis] + indices[axis]
    return number


class _Files:
    """Which file an OME-XML's TiffData block points at: its own, or another by UUID or FileName."""

    def __init__(self, own: Path, ome, uuids: dict[str, Path]):
        self.own, self.ome, self.uuids = own, ome, uuids

    def target(self, block) -> Path:
        uuid = block.uuid
        if uuid is None or (uuid.value and uuid.value == self.ome.uuid):
            return self.own
        if uuid.value in self.uuids:
            return self.uuids[uuid.value]
        if uuid.file_name:
            # A file renamed since it was written keeps its UUID (matched above); FileName finds the others.
            return self.own.parent / uuid.file_name
        raise OmeXmlError(f"its OME-XML puts planes in a file with UUID {uuid.value} and no FileName, "
                          "which is none of the files read", self.own)


class OmeLayout:
    """Where every plane of a set of OME-TIFF files lies: (file, IFD) -> OmePlane, and the images' metadata.

    Each ``Image`` is a position. Files whose OME-XML point at each other
    (a multi-file set, each file usually holding the whole XML) share one
    numbering of positions; files that are each an acquisition of their own
    (one OME-XML per file, pointing at itself only) follow one another, so
    a folder of single-position OME-TIFFs gives positions 0, 1, 2...
    Files its OME-XML points at and that were not given (the rest of a
    multi-file set, next to the file given) are read too.

    Parameters
    ----------
    files : list of Path
        The OME-TIFF files given (a file, or a folder's files in name order).

    Raises
    ------
    OmeXmlError
        If an OME-XML cannot be read, points at a file that is not there, or
        two blocks describe one page (or one plane) differently.
    """

    def __init__(self, files: list[Path]):
        self.omes: dict[Path, object] = {}  # each file's parsed OME-XML; None: none, or not read (see below)
        # A file another file's OME-XML points at is described there: its own copy of the XML (Bio-Formats
        # writes the whole XML in every file of a set) is not parsed again, as tifffile does too.
        covered: set[Path] = set()
        pending = list(files)
        while pending:
            path = pending.pop(0)
            if path in self.omes:
                continue
            self.omes[path] = None if path in covered else read_ome(path)
            for *_, target in self._blocks(path):
                if target == path or target in self.omes or target in covered:
                    continue
                if not target.is_file():
                    raise OmeXmlError(f"its OME-XML puts planes in {printable_path(target.name)}, which is not there",
                                      path)
                covered.add(target)
                pending.append(target)
        order = {path: number for number, path in enumerate(files)}
        self.files = sorted(self.omes, key=lambda p: (order.get(p, len(order)), p))
        self.planes: dict[tuple[Path, int], OmePlane] = {}
        self.images: list[tuple[object, object]] = []  # (OME, Image) of each position
        self._place_planes()
        with_planes = {target for target, _ifd in self.planes}
        for path in files:
            if path not in with_planes:
                raise OmeXmlError("neither its own OME-XML nor another file's describes any of its pages", path)

    def _resolver(self, path: Path) -> _Files:
        uuids = {ome.uuid: p for p, ome in self.omes.items() if ome is not None and ome.uuid}
        return _Files(path, self.omes[path], uuids)

    def _blocks(self, path: Path):
        """(image number, Image, TiffData block, target file) of every block of ``path``'s OME-XML."""
        ome = self.omes[path]
        if ome is None:
            return
        resolver = self._resolver(path)
        for number, image in enumerate(ome.images):
            for block in image.pixels.tiff_data_blocks:
                yield number, image, block, resolver.target(block)

    def _groups(self) -> list[list[Path]]:
        """The files in sets whose OME-XMLs point at one another, in file order."""
        parent = {p: p for p in self.files}

        def root(p: Path) -> Path:
            while parent[p] != p:
                p = parent[p]
            return p

        for path in self.files:
            for *_, target in self._blocks(path):
                parent[root(target)] = root(path)
        groups: dict[Path, list[Path]] = {}
        for path in self.files:
            groups.setdefault(root(path), []).append(path)
        return list(groups.values())

    def _place_planes(self) -> None:
        where_indices: dict[tuple[int, int, int, int], tuple[Path, int]] = {}
        for group in self._groups():
            offset = len(self.images)
            described = [p for p in group if self.omes[p] is not None and self.omes[p].images]
            if not described:
                continue
            # Every file of a set usually holds the whole OME-XML: the first one's images are the positions.
            self.images.extend((self.omes[described[0]], image) for image in self.omes[described[0]].images)
            for path in described:
                preceding_planes = 0
                for number, image in enumerate(self.omes[path].images):
                    pixels = image.pixels
                    total = _sizes(pixels)["C"] * pixels.size_z * pixels.size_t
                    blocks = pixels.tiff_data_blocks
                    if not blocks and not pixels.bin_data_blocks and not pixels.metadata_only:
                        # No TiffData: the images' planes follow one another from the first IFD.
                        blocks = [None]
                    planes = self._planes_of(image, offset + number)
                    resolver = self._resolver(path)
                    for block in blocks:
                        if block is None:
                            target, first_ifd, start, count = path, preceding_planes, 0, total
                        else:
                            target = resolver.target(block)
                            start = plane_number(pixels, block.first_c, block.first_z, block.first_t)
                            first_ifd = block.ifd
                            if block.plane_count is not None:
                                count = block.plane_count
                            elif "ifd" in block.model_fields_set:
                                count = 1
                            else:
                                count = total - start
                        if start + count > total:
                            raise OmeXmlError(f"its OME-XML's TiffData (IFD {first_ifd}) goes past the {total} "
                                              f"planes of image {image.id}", path)
                        for k in range(count):
                            plane = planes(start + k)
                            key = (target, first_ifd + k)
                            known = self.planes.get(key)
                            if known is not None and known.indices != plane.indices:
                                raise OmeXmlError(f"its OME-XML puts two planes in IFD {key[1]} of "
                                                  f"{printable_path(target.name)}", path)
                            elsewhere = where_indices.setdefault(plane.indices, key)
                            if elsewhere != key:
                                raise OmeXmlError(
                                    f"its OME-XML puts plane (c, z, t, p) = {plane.indices} in two IFDs "
                                    f"({printable_path(elsewhere[0].name)} IFD {elsewhere[1]}, "
                                    f"{printable_path(target.name)} IFD {key[1]})", path)
                            self.planes[key] = plane
                    preceding_planes += total

    def _planes_of(self, image, pos_idx: int):
        """A function: plane number of ``image`` -> its OmePlane (indices, channel name, Plane attributes)."""
        pixels = image.pixels
        names = channel_names(pixels)
        attributes = {(p.the_c, p.the_z, p.the_t): p for p in pixels.planes}

        def plane(number: int) -> OmePlane:
            idx = plane_indices(pixels, number)
            c, z, t = idx["C"], idx["Z"], idx["T"]
            element = attributes.get((c, z, t))
            meta = _with_units(element, _PLANE_ATTRIBUTES) if element is not None else {}
            meta = {"TheC": c, "TheZ": z, "TheT": t, **meta}
            return OmePlane(c, z, t, pos_idx, names[c], meta)

        return plane

    def pages_of(self, path: Path) -> dict[int, OmePlane]:
        """IFD number -> OmePlane of the pages of ``path`` its OME-XML describes."""
        return {ifd: plane for (target, ifd), plane in self.planes.items() if target == path}

    def global_metadata(self) -> dict:
        """Channel names, pixel sizes and time increments of the images, the first position's at the top.

        ``ChNames``, ``PhysicalSizeX/Y/Z`` and ``TimeIncrement`` (each with
        its ``...Unit``), ``DeltaT`` (per time index, the first position's
        planes at the lowest channel and slice that give one; with
        ``DeltaTUnit``), ``DimensionOrder``, ``Creator``; ``Images`` holds
        the same for every position, with its ID, Name and AcquisitionDate.
        """
        images = [self._image_metadata(ome, image) for ome, image in self.images]
        meta: dict = {}
        if images:
            top = dict(images[0])
            for key in ("ID", "Name", "AcquisitionDate"):
                top.pop(key, None)
            meta.update(top)
            creator = self.images[0][0].creator
            if creator:
                meta["Creator"] = creator
        meta["Images"] = images
        return meta

    @staticmethod
    def _image_metadata(ome, image) -> dict:
        pixels = image.pixels
        meta: dict = {"ID": image.id}
        if image.name:
            meta["Name"] = image.name
        if image.acquisition_date is not None:
            meta["AcquisitionDate"] = image.acquisition_date.isoformat()
        meta["ChNames"] = channel_names(pixels)
        meta.update(_with_units(pixels, _PIXELS_ATTRIBUTES))
        delta_t: dict[int, object] = {}
        unit = None
        for plane in sorted(pixels.planes, key=lambda p: (p.the_t, p.the_c, p.the_z)):
            if plane.delta_t is not None and plane.the_t not in delta_t:
                delta_t[plane.the_t] = plane.delta_t
                unit = unit or _plain(plane.delta_t_unit)
        if delta_t:
            meta["DeltaT"] = [delta_t.get(t) for t in range(pixels.size_t)]
            meta["DeltaTUnit"] = unit
        meta.update({"DimensionOrder": _plain(pixels.dimension_order), "SizeC": _nbr_channels(pixels),
                     "SizeZ": pixels.size_z, "SizeT": pixels.size_t, "SizeX": pixels.size_x,
                     "SizeY": pixels.size_y, "Type": _plain(pixels.type)})
        return meta
