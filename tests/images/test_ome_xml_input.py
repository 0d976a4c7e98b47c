"""OME-TIFFs without Micro-Manager's tags: planes placed by the OME-XML, as Bio-Formats, bioio and tifffile write it.

The files are written the way those tools write them: tifffile's OME writer
(``ome=True``, one or several series), and a hand-built OME-XML in the first
page's ImageDescription with TiffData blocks, UUIDs and FileNames, as
Bio-Formats' bfconvert writes it. Each is read by the splitter and uploaded
(SQLite and PostgreSQL), checked in the database and downloaded bit for bit.
"""

import json
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile

from imaging_db.errors import InputError
from imaging_db.example_data import frame_pixels, write_mm_ometiff
from imaging_db.images.splitters import SPLITTERS, OmeTiffSplitter, TifIdSplitter, make_splitter
from tests.cli.test_end_to_end import (
    as_dict,
    check_downloaded,
    dataset_rows,
    download,
    upload,
    write_config,
    write_csv,
)

DATASET = "ML-2018-11-07-09-35-54-0010"
SHAPE = (24, 20)
NAMESPACE = "http://www.openmicroscopy.org/Schemas/OME/2016-06"


def _scan(path, **kwargs):
    return list(make_splitter("ome_tiff", path, DATASET, **kwargs).frames(read_pixels=False))


# --------------------------------------------------------------------------- writers
def write_tifffile_ome(path: Path, channels=("GFP", "488"), nbr_slices=3, nbr_times=2, nbr_positions=1,
                       first_position=0) -> Path:
    """tifffile's OME writer: one series (Image) per position, TCZYX, with names, pixel sizes and Plane DeltaT."""
    nc = len(channels)
    with tifffile.TiffWriter(path, ome=True) as writer:
        for p in range(first_position, first_position + nbr_positions):
            stack = np.stack([np.stack([np.stack([frame_pixels(c, z, t, p, SHAPE) for z in range(nbr_slices)])
                                        for c in range(nc)]) for t in range(nbr_times)])
            nbr_planes = nbr_times * nc * nbr_slices
            writer.write(stack, photometric="minisblack", metadata={
                "axes": "TCZYX", "Name": f"Pos{p}", "Channel": {"Name": list(channels)},
                "PhysicalSizeX": 0.325, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.325,
                "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": 1.5, "PhysicalSizeZUnit": "µm",
                "TimeIncrement": 30.0, "TimeIncrementUnit": "s",
                # Planes in the file's order (XYZCT: z fastest, then c, then t).
                "Plane": {"DeltaT": [30.0 * (i // (nc * nbr_slices)) + 0.1 * i for i in range(nbr_planes)],
                          "ExposureTime": [10.0 + (i // nbr_slices) % nc for i in range(nbr_planes)],
                          "ExposureTimeUnit": ["ms"] * nbr_planes},
            })
    return path


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def bioformats_xml(images: list[dict], own_uuid: str, namespace: str = NAMESPACE) -> str:
    """OME-XML as Bio-Formats writes it: one Image per position, a TiffData block per plane with its UUID.

    Each image dict: ``order`` (DimensionOrder), ``channels`` (names, None for no Name), ``sizes`` (z, t),
    ``blocks`` [(c, z, t, ifd, file name, file uuid)] or the text of the TiffData elements, ``planes``
    [(c, z, t, DeltaT in ms, PositionX)].
    """
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>'
             f'<OME xmlns="{namespace}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
             f'UUID="{own_uuid}" Creator="OME Bio-Formats 8.1.0">']
    for number, image in enumerate(images):
        nz, nt = image["sizes"]
        channels = image["channels"]
        parts.append(f'<Image ID="Image:{number}" Name="{image.get("name", f"Series {number}")}">'
                     f'<AcquisitionDate>2018-11-07T09:35:54</AcquisitionDate>'
                     f'<Pixels ID="Pixels:{number}" DimensionOrder="{image["order"]}" Type="uint16" '
                     f'SizeX="{SHAPE[1]}" SizeY="{SHAPE[0]}" SizeC="{len(channels)}" SizeZ="{nz}" SizeT="{nt}" '
                     f'PhysicalSizeX="0.65" PhysicalSizeXUnit="µm" PhysicalSizeY="0.65" PhysicalSizeYUnit="µm" '
                     f'PhysicalSizeZ="2.0" PhysicalSizeZUnit="µm" TimeIncrement="1.5" TimeIncrementUnit="min">')
        for c, name in enumerate(channels):
            named = f' Name="{name}"' if name is not None else ""
            parts.append(f'<Channel ID="Channel:{number}:{c}"{named} SamplesPerPixel="1"><LightPath/></Channel>')
        blocks = image["blocks"]
        if isinstance(blocks, str):
            parts.append(blocks)
        else:
            for c, z, t, ifd, file_name, file_uuid in blocks:
                parts.append(f'<TiffData FirstC="{c}" FirstT="{t}" FirstZ="{z}" IFD="{ifd}" PlaneCount="1">'
                             f'<UUID FileName="{file_name}">{file_uuid}</UUID></TiffData>')
        for c, z, t, delta_t, x in image.get("planes", []):
            parts.append(f'<Plane TheC="{c}" TheT="{t}" TheZ="{z}" DeltaT="{delta_t}" DeltaTUnit="ms" '
                         f'ExposureTime="20.0" ExposureTimeUnit="ms" PositionX="{x}" PositionXUnit="µm"/>')
        parts.append("</Pixels></Image>")
    parts.append("</OME>")
    return "".join(parts)


def write_pages(path: Path, pages: list[np.ndarray], description: str | None) -> Path:
    """A TIFF of these pages, the first one's ImageDescription the OME-XML, no other metadata."""
    with tifffile.TiffWriter(path) as writer:
        for number, pixels in enumerate(pages):
            extra = {"description": description.encode("utf-8")} if number == 0 and description else {}
            writer.write(pixels, photometric="minisblack", metadata=None, contiguous=False, **extra)
    return path


def write_bioformats_file(path: Path, order: str, channels=("DAPI", "488"), nbr_slices=3, nbr_times=1,
                          per_plane_blocks=True, thumbnail=False) -> dict:
    """One position, pages stored z fastest, then c, then t; the XML says so in ``order``.

    With ``per_plane_blocks`` each plane has its TiffData (FirstC/Z/T, IFD, UUID) as bfconvert writes;
    without, one TiffData block gives the first IFD and the plane count (``order`` must then be XYZCT, the
    file's). ``thumbnail`` puts an extra page first, which the XML does not describe. Returns
    {IFD: (c, z, t)} of the described pages.
    """
    nc = len(channels)
    stored = [(c, z, t) for t in range(nbr_times) for c in range(nc) for z in range(nbr_slices)]
    first = 1 if thumbnail else 0
    own = _urn()
    if per_plane_blocks:
        blocks = [(c, z, t, first + i, path.name, own) for i, (c, z, t) in enumerate(stored)]
    else:
        blocks = f'<TiffData IFD="{first}" PlaneCount="{len(stored)}"/>'
    planes = [(c, z, t, 1000.0 * t + 10 * c + z, 100.0 + z) for (c, z, t) in stored]
    xml = bioformats_xml([{"order": order, "channels": list(channels), "sizes": (nbr_slices, nbr_times),
                           "blocks": blocks, "planes": planes}], own)
    pages = ([np.full(SHAPE, 7, np.uint16)] if thumbnail else []) + [frame_pixels(c, z, t, 0, SHAPE)
                                                                   for (c, z, t) in stored]
    write_pages(path, pages, xml)
    return {first + i: plane for i, plane in enumerate(stored)}


def write_bioformats_set(folder: Path, nbr_slices=2, channels=("DAPI", "GFP")) -> list[Path]:
    """A multi-file set as bfconvert writes it: one file per position, each holding the whole OME-XML."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [folder / f"set_s{p}.ome.tif" for p in range(2)]
    uuids = [_urn() for _ in names]
    images = []
    for p, (path, file_uuid) in enumerate(zip(names, uuids)):
        stored = [(c, z) for c in range(len(channels)) for z in range(nbr_slices)]
        images.append({"order": "XYZCT", "channels": list(channels), "sizes": (nbr_slices, 1), "name": f"Pos{p}",
                       "blocks": [(c, z, 0, i, path.name, file_uuid) for i, (c, z) in enumerate(stored)]})
    for p, (path, file_uuid) in enumerate(zip(names, uuids)):
        pages = [frame_pixels(c, z, 0, p, SHAPE) for c in range(len(channels)) for z in range(nbr_slices)]
        write_pages(path, pages, bioformats_xml(images, file_uuid))
    return names


# --------------------------------------------------------------------------- choosing the format
class TestCanRead:
    def test_ome_only_files_are_ome_tiff_not_tif_id(self, tmp_path):
        tifffile_ome = write_tifffile_ome(tmp_path / "a.ome.tif")
        bioformats = tmp_path / "b.ome.tif"
        write_bioformats_file(bioformats, "XYCZT")
        plain_name = tmp_path / "exported.tif"  # an OME-TIFF need not be named *.ome.tif
        shutil.copy(tifffile_ome, plain_name)
        for path in (tifffile_ome, bioformats, plain_name):
            assert {name for name, cls in SPLITTERS.items() if cls.can_read(path)} == {"ome_tiff"}, path
            assert not TifIdSplitter.can_read(path)
            assert type(make_splitter("auto", path, DATASET)) is OmeTiffSplitter

    def test_folder_of_ome_only_files_is_ome_tiff(self, tmp_path):
        write_bioformats_set(tmp_path / "set")
        assert {name for name, cls in SPLITTERS.items() if cls.can_read(tmp_path / "set")} == {"ome_tiff"}


# --------------------------------------------------------------------------- tifffile's OME writer
class TestTifffileOme:
    def test_indices_names_and_pixels(self, tmp_path, check_pixels):
        path = write_tifffile_ome(tmp_path / "a.ome.tif")
        frames = list(make_splitter("ome_tiff", path, DATASET).frames())
        assert sorted(f.indices for f in frames) == sorted(
            (c, z, t, 0) for c in range(2) for z in range(3) for t in range(2))
        assert [f.page for f in frames] == list(range(12))
        assert {(f.channel_idx, f.channel_name) for f in frames} == {(0, "GFP"), (1, "488")}
        check_pixels(frames, shape=SHAPE)

    def test_frame_metadata_is_the_plane_element(self, tmp_path):
        path = write_tifffile_ome(tmp_path / "a.ome.tif")
        frame = _scan(path)[7]  # page 7 of XYZCT with 3 slices and 2 channels: z 1, c 0, t 1
        assert frame.indices == (0, 1, 1, 0)
        assert frame.metadata == {"TheC": 0, "TheZ": 1, "TheT": 1, "DeltaT": pytest.approx(30.7),
                                  "DeltaTUnit": "s", "ExposureTime": 10.0, "ExposureTimeUnit": "ms"}
        json.dumps(frame.metadata)

    def test_global_metadata(self, tmp_path):
        path = write_tifffile_ome(tmp_path / "a.ome.tif")
        meta = make_splitter("ome_tiff", path, DATASET).global_metadata()
        assert meta["ChNames"] == ["GFP", "488"]
        assert (meta["PhysicalSizeX"], meta["PhysicalSizeY"], meta["PhysicalSizeZ"]) == (0.325, 0.325, 1.5)
        assert meta["PhysicalSizeXUnit"] == meta["PhysicalSizeZUnit"] == "µm"
        assert (meta["TimeIncrement"], meta["TimeIncrementUnit"]) == (30.0, "s")
        assert meta["DeltaT"] == [0.0, pytest.approx(30.6)] and meta["DeltaTUnit"] == "s"
        assert (meta["SizeC"], meta["SizeZ"], meta["SizeT"], meta["DimensionOrder"]) == (2, 3, 2, "XYZCT")
        assert meta["Creator"].startswith("tifffile")
        assert [image["Name"] for image in meta["Images"]] == ["Pos0"]
        assert meta["file_origin"] == str(path)
        json.dumps(meta)

    def test_several_series_are_positions(self, tmp_path, check_pixels):
        path = write_tifffile_ome(tmp_path / "a.ome.tif", nbr_positions=3, nbr_times=1)
        splitter = make_splitter("ome_tiff", path, DATASET)
        frames = list(splitter.frames())
        assert len(frames) == 3 * 2 * 3
        assert {f.pos_idx for f in frames} == {0, 1, 2}
        check_pixels(frames, shape=SHAPE)
        assert [image["Name"] for image in splitter.global_metadata()["Images"]] == ["Pos0", "Pos1", "Pos2"]
        assert {f.pos_idx for f in _scan(path, positions=[2])} == {2}
        assert splitter.notes() == []

    def test_folder_of_single_position_files(self, tmp_path, check_pixels):
        """Files that are each an acquisition of their own follow one another as positions."""
        (tmp_path / "acq").mkdir()
        for p in range(3):
            write_tifffile_ome(tmp_path / "acq" / f"pos{p}.ome.tif", nbr_times=1, first_position=p)
        frames = list(make_splitter("ome_tiff", tmp_path / "acq", DATASET).frames())
        assert len(frames) == 3 * 6 and len({f.indices for f in frames}) == 18
        assert [Path(f.source).name for f in frames[::6]] == ["pos0.ome.tif", "pos1.ome.tif", "pos2.ome.tif"]
        check_pixels(frames, shape=SHAPE)

    def test_rgb_is_one_channel(self, tmp_path):
        path = tmp_path / "rgb.ome.tif"
        rgb = np.stack([frame_pixels(0, z, 0, 0, SHAPE + (3,), "uint8") for z in range(2)])
        tifffile.imwrite(path, rgb, ome=True, photometric="rgb", metadata={"axes": "ZYXS", "Channel": {"Name": "BF"}})
        frames = list(make_splitter("ome_tiff", path, DATASET).frames())
        assert [(f.indices, f.channel_name) for f in frames] == [((0, z, 0, 0), "BF") for z in range(2)]
        for frame in frames:
            np.testing.assert_array_equal(np.asarray(frame.pixels), rgb[frame.slice_idx])

    def test_channels_without_names_are_named_by_index(self, tmp_path):
        path = tmp_path / "a.ome.tif"
        tifffile.imwrite(path, np.zeros((2, 3) + SHAPE, np.uint16), ome=True, metadata={"axes": "CZYX"})
        splitter = make_splitter("ome_tiff", path, DATASET)
        assert {(f.channel_idx, f.channel_name) for f in splitter.frames(read_pixels=False)} == {(0, "0"), (1, "1")}
        assert splitter.global_metadata()["ChNames"] == ["0", "1"]


# --------------------------------------------------------------------------- Bio-Formats' OME-XML
class TestBioformatsXml:
    @pytest.mark.parametrize("order", ["XYCZT", "XYZCT", "XYTZC"])
    def test_tiffdata_blocks_place_each_page(self, tmp_path, order, check_pixels):
        """Pages stored z fastest; the XML's per-plane TiffData says where each is, whatever DimensionOrder."""
        path = tmp_path / "bf.ome.tif"
        expected = write_bioformats_file(path, order, nbr_times=2)
        frames = list(make_splitter("ome_tiff", path, DATASET).frames())
        assert {f.page: f.indices[:3] for f in frames} == expected
        assert {(f.channel_idx, f.channel_name) for f in frames} == {(0, "DAPI"), (1, "488")}
        check_pixels(frames, shape=SHAPE)

    @pytest.mark.parametrize("order, stored", [
        ("XYZCT", lambda i: (i // 3 % 2, i % 3, i // 6)),  # z fastest, as the pages are
        ("XYCZT", lambda i: (i % 2, i // 2 % 3, i // 6)),  # c fastest: the same pages mean other planes
    ])
    def test_one_block_follows_dimension_order(self, tmp_path, order, stored):
        path = tmp_path / "bf.ome.tif"
        write_bioformats_file(path, order, nbr_times=2, per_plane_blocks=False)
        frames = _scan(path)
        assert [f.page for f in frames] == list(range(12))
        assert [f.indices[:3] for f in frames] == [stored(i) for i in range(12)]

    def test_plane_attributes_and_global_metadata(self, tmp_path):
        path = tmp_path / "bf.ome.tif"
        write_bioformats_file(path, "XYCZT", nbr_times=2)
        splitter = make_splitter("ome_tiff", path, DATASET)
        by_indices = {f.indices: f.metadata for f in splitter.frames(read_pixels=False)}
        assert by_indices[(1, 2, 1, 0)] == {
            "TheC": 1, "TheZ": 2, "TheT": 1, "DeltaT": 1012.0, "DeltaTUnit": "ms", "ExposureTime": 20.0,
            "ExposureTimeUnit": "ms", "PositionX": 102.0, "PositionXUnit": "µm"}
        meta = splitter.global_metadata()
        assert meta["ChNames"] == ["DAPI", "488"]
        assert (meta["PhysicalSizeX"], meta["PhysicalSizeXUnit"], meta["PhysicalSizeZ"]) == (0.65, "µm", 2.0)
        assert (meta["TimeIncrement"], meta["TimeIncrementUnit"]) == (1.5, "min")
        assert (meta["DeltaT"], meta["DeltaTUnit"]) == ([0.0, 1000.0], "ms")
        assert meta["Creator"] == "OME Bio-Formats 8.1.0"
        assert meta["Images"][0]["AcquisitionDate"] == "2018-11-07T09:35:54"

    def test_older_schema_is_read(self, tmp_path):
        """Zeiss/Leica exports of a few years ago write the 2015-01 schema: converted to 2016-06 (lxml)."""
        path = tmp_path / "old.ome.tif"
        own = _urn()
        xml = bioformats_xml([{"order": "XYZCT", "channels": ["GFP"], "sizes": (2, 1),
                               "blocks": f'<TiffData IFD="0" PlaneCount="2"/>'}], own,
                             namespace="http://www.openmicroscopy.org/Schemas/OME/2015-01")
        write_pages(path, [frame_pixels(0, z, 0, 0, SHAPE) for z in range(2)], xml)
        assert [(f.indices, f.channel_name) for f in _scan(path)] == [((0, z, 0, 0), "GFP") for z in range(2)]

    def test_undescribed_page_is_skipped_with_a_note(self, tmp_path):
        path = tmp_path / "bf.ome.tif"
        expected = write_bioformats_file(path, "XYZCT", per_plane_blocks=False, thumbnail=True)
        splitter = make_splitter("ome_tiff", path, DATASET)
        frames = list(splitter.frames(read_pixels=False))
        assert {f.page: f.indices[:3] for f in frames} == expected and 0 not in expected
        assert splitter.notes() == ["bf.ome.tif: 1 of 7 pages not described by the OME-XML, skipped (pages 0)"]

    def test_renamed_file_is_found_by_its_uuid(self, tmp_path):
        path = tmp_path / "bf.ome.tif"
        expected = write_bioformats_file(path, "XYCZT")
        renamed = path.rename(tmp_path / "renamed.ome.tif")
        assert {f.page: f.indices[:3] for f in _scan(renamed)} == expected


class TestMultiFileSet:
    def test_folder(self, tmp_path, check_pixels):
        files = write_bioformats_set(tmp_path / "set")
        frames = list(make_splitter("ome_tiff", tmp_path / "set", DATASET).frames())
        assert len(frames) == 2 * 2 * 2  # each plane once, though both files describe both
        assert {(Path(f.source).name, f.pos_idx) for f in frames} == {(files[0].name, 0), (files[1].name, 1)}
        check_pixels(frames, shape=SHAPE)

    def test_one_file_given_reads_the_set(self, tmp_path, check_pixels):
        files = write_bioformats_set(tmp_path / "set")
        splitter = make_splitter("ome_tiff", files[1], DATASET)
        frames = list(splitter.frames())
        assert {(Path(f.source).name, f.pos_idx) for f in frames} == {(files[0].name, 0), (files[1].name, 1)}
        check_pixels(frames, shape=SHAPE)
        assert [image["Name"] for image in splitter.global_metadata()["Images"]] == ["Pos0", "Pos1"]

    def test_missing_file_of_the_set(self, tmp_path):
        files = write_bioformats_set(tmp_path / "set")
        files[1].unlink()
        with pytest.raises(InputError, match=rf"^dataset {DATASET}: .*set_s0\.ome\.tif: its OME-XML puts planes "
                                             r"in set_s1\.ome\.tif, which is not there$"):
            _scan(files[0])


class TestErrors:
    def test_ifd_beyond_the_pages(self, tmp_path):
        path = tmp_path / "bf.ome.tif"
        xml = bioformats_xml([{"order": "XYZCT", "channels": ["GFP"], "sizes": (4, 1),
                               "blocks": '<TiffData IFD="0" PlaneCount="4"/>'}], _urn())
        write_pages(path, [frame_pixels(0, z, 0, 0, SHAPE) for z in range(3)], xml)
        with pytest.raises(InputError, match=rf"^dataset {DATASET}: .*bf\.ome\.tif: its OME-XML puts 1 planes in "
                                             r"IFDs from 3 on, but the file has 3 pages$"):
            _scan(path)

    def test_xml_not_following_the_schema(self, tmp_path):
        path = tmp_path / "bf.ome.tif"
        xml = bioformats_xml([{"order": "XYQT", "channels": ["GFP"], "sizes": (1, 1),
                               "blocks": '<TiffData IFD="0" PlaneCount="1"/>'}], _urn())
        write_pages(path, [frame_pixels(0, 0, 0, 0, SHAPE)], xml)
        with pytest.raises(InputError) as raised:
            _scan(path)
        message = str(raised.value)
        assert re.match(rf"^dataset {DATASET}: .*bf\.ome\.tif: its OME-XML cannot be read \(ValidationError: .*"
                        r"dimension_order", message), message
        assert "\n" not in message

    def test_two_planes_in_one_page(self, tmp_path):
        path = tmp_path / "bf.ome.tif"
        own = _urn()
        blocks = [(0, 0, 0, 0, path.name, own), (0, 1, 0, 0, path.name, own)]
        write_pages(path, [frame_pixels(0, 0, 0, 0, SHAPE)] * 2,
                    bioformats_xml([{"order": "XYZCT", "channels": ["GFP"], "sizes": (2, 1), "blocks": blocks}], own))
        with pytest.raises(InputError, match=r"bf\.ome\.tif: its OME-XML puts two planes in IFD 0 of bf\.ome\.tif$"):
            _scan(path)


class TestMicroManagerPrecedence:
    def test_micro_manager_files_read_by_their_tags(self, tmp_path):
        """Micro-Manager's files also carry OME-XML: their tags still decide, and the summary is unchanged."""
        (path,) = write_mm_ometiff(tmp_path / "acq", ["GFP", "488"], nbr_slices=2, nbr_times=1, nbr_positions=1,
                                   shape=SHAPE)
        splitter = make_splitter("ome_tiff", path, DATASET)
        assert splitter.ome_layout() is None
        assert "Images" not in splitter.global_metadata()
        assert all("ChannelIndex" in f.metadata for f in splitter.frames(read_pixels=False))


# --------------------------------------------------------------------------- upload and download
@pytest.fixture
def local_spec(tmp_path):
    return {"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None}


@pytest.mark.parametrize("writer", ["tifffile_positions", "bioformats_xyczt", "bioformats_set"])
def test_upload_and_download_bit_exact(tmp_path, db_url, login_file, local_spec, writer):
    ident = "ML-2018-11-07-09-35-54-0021"
    if writer == "tifffile_positions":
        source = write_tifffile_ome(tmp_path / "in.ome.tif", nbr_positions=2)
        channels, nz, nt, npos = ["GFP", "488"], 3, 2, 2
    elif writer == "bioformats_xyczt":
        source = tmp_path / "in.ome.tif"
        write_bioformats_file(source, "XYCZT", nbr_times=2)
        channels, nz, nt, npos = ["DAPI", "488"], 3, 2, 1
    else:
        write_bioformats_set(tmp_path / "set")
        source = tmp_path / "set"
        channels, nz, nt, npos = ["DAPI", "GFP"], 2, 1, 2
    config = write_config(tmp_path, local_spec, upload_type="frames", microscope="spinning disk")  # auto format
    assert upload(write_csv(tmp_path, [{"dataset_id": ident, "file_name": str(source)}]), config, login_file) == 0

    _data_set, frames_global, frames = dataset_rows(db_url, ident)
    nbr = len(channels) * nz * nt * npos
    assert (frames_global["nbr_frames"], frames_global["nbr_channels"], frames_global["nbr_slices"],
            frames_global["nbr_timepoints"], frames_global["nbr_positions"]) == (nbr, len(channels), nz, nt, npos)
    assert len(frames) == nbr
    assert all(row["channel_name"] == channels[row["channel_idx"]] for row in frames)
    for row in frames:
        meta = as_dict(row["metadata_json"])
        assert (meta["TheC"], meta["TheZ"], meta["TheT"]) == (row["channel_idx"], row["slice_idx"], row["time_idx"])
    global_meta = as_dict(frames_global["metadata_json"])
    assert global_meta["ChNames"] == channels and global_meta["file_origin"] == str(source)
    assert global_meta["PhysicalSizeXUnit"] == "µm" and global_meta["PhysicalSizeX"] in (0.325, 0.65)
    assert len(global_meta["Images"]) == npos

    dest = tmp_path / "dl"
    assert download(ident, dest, login_file, local_spec) == 0
    check_downloaded(dest / ident, {(c, z, t, p): frame_pixels(c, z, t, p, SHAPE) for c in range(len(channels))
                                    for z in range(nz) for t in range(nt) for p in range(npos)})
