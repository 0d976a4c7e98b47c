"""data_downloader --format ome-zarr | tiff: one image per position, read back by readers imaging_db does not write with.

The OME-Zarr is read with tensorstore (its own C++ Zarr v3 implementation,
not zarr-python) and its metadata parsed from zarr.json here; the OME-TIFF
with tifffile's reader, its OME-XML parsed here with ElementTree. Every pixel
is compared with the source's, and the axes, channel names and physical
sizes with what the acquisition says. Each test runs on each database
(SQLite, PostgreSQL) and storage (local folder, S3 on moto).
"""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tensorstore as ts
import tifffile

from imaging_db.example_data import frame_pixels, write_imagej_stack, write_mm_ometiff
from imaging_db.filestorage import make_storage
from tests.cli.test_end_to_end import SHAPE, download, upload, write_config, write_csv

ID = "ML-2018-11-07-09-35-54-0010"
FILE_ID = "ML-2018-11-08-10-00-00-0011"
CHANNELS = ["GFP", "Cy5 far red"]
NBR_SLICES, NBR_TIMES, NBR_POSITIONS = 3, 2, 2
# What the Micro-Manager acquisition of example_data records: z-step_um in its summary, PixelSizeUm per frame.
Z_STEP, PIXEL_SIZE = 1.5, 0.325


@pytest.fixture
def mm_dataset(tmp_path, login_file, storage_spec):
    """A Micro-Manager OME-TIFF acquisition (2 channels, 3 slices, 2 times, 2 positions) uploaded as ID."""
    write_mm_ometiff(tmp_path / "acq", CHANNELS, NBR_SLICES, NBR_TIMES, NBR_POSITIONS, shape=SHAPE,
                     max_pages_per_file=5)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff")
    assert upload(write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}]), config,
                  login_file) == 0


def _json(capsys) -> dict:
    captured = capsys.readouterr()
    assert captured.err == ""
    return json.loads(captured.out)


def read_ome_zarr(path):
    """The image of an OME-Zarr (NGFF 0.5) group: its ``ome`` attributes, array metadata and pixels (tensorstore)."""
    group = json.loads((path / "zarr.json").read_text())
    assert group["zarr_format"] == 3 and group["node_type"] == "group"
    ome = group["attributes"]["ome"]
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    (dataset,) = multiscale["datasets"]
    array_meta = json.loads((path / dataset["path"] / "zarr.json").read_text())
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / dataset["path"])}},
                    open=True, read=True).result()
    return group["attributes"], array_meta, store.read().result()


def test_ome_zarr_every_pixel_axes_channels_scales(tmp_path, login_file, storage_spec, mm_dataset, capsys):
    capsys.readouterr()
    dest = tmp_path / "dl"
    assert download(ID, dest, login_file, storage_spec, "--format", "ome-zarr", "--json") == 0
    document = _json(capsys)
    names = [f"{ID}_p000.ome.zarr", f"{ID}_p001.ome.zarr"]
    assert document["command"] == "data_downloader" and document["ok"] and document["exit_status"] == 0
    assert (document["dataset_id"], document["format"], document["nbr_frames"]) == (ID, "ome-zarr", 24)
    assert document["folder"] == str(dest / ID)
    assert document["files"] == ["global_metadata.json", "frames_meta.csv", *names]
    on_disk = sum(p.stat().st_size for name in names for p in (dest / ID / name).rglob("*") if p.is_file())
    assert document["bytes"] == on_disk > 0 and document["seconds"] > 0
    assert sorted(p.name for p in (dest / ID).iterdir()) == sorted(document["files"])

    for p, name in enumerate(names):
        attrs, array_meta, pixels = read_ome_zarr(dest / ID / name)
        ome = attrs["ome"]
        (multiscale,) = ome["multiscales"]
        assert multiscale["axes"] == [
            {"name": "t", "type": "time", "unit": "second"}, {"name": "c", "type": "channel"},
            {"name": "z", "type": "space", "unit": "micrometer"}, {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}]
        (transform,) = multiscale["datasets"][0]["coordinateTransformations"]
        assert transform == {"type": "scale", "scale": [1.0, 1.0, Z_STEP, PIXEL_SIZE, PIXEL_SIZE]}
        assert [channel["label"] for channel in ome["omero"]["channels"]] == CHANNELS
        assert all(channel["window"]["max"] == 65535 for channel in ome["omero"]["channels"])
        assert attrs["imaging_db"] == {"dataset_id": ID, "pos_idx": p, "time_idx": [0, 1], "channel_idx": [0, 1],
                                       "slice_idx": [0, 1, 2], "channel_names": CHANNELS}
        # One chunk per (t, c, z) plane, dimension names as the axes.
        assert array_meta["shape"] == [NBR_TIMES, len(CHANNELS), NBR_SLICES, *SHAPE]
        assert array_meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 1, 1, *SHAPE]
        assert array_meta["dimension_names"] == ["t", "c", "z", "y", "x"]
        assert pixels.dtype == np.uint16 and pixels.shape == (NBR_TIMES, len(CHANNELS), NBR_SLICES, *SHAPE)
        for t in range(NBR_TIMES):
            for c in range(len(CHANNELS)):
                for z in range(NBR_SLICES):
                    assert np.array_equal(pixels[t, c, z], frame_pixels(c, z, t, p, SHAPE)), (t, c, z, p)


def test_ome_zarr_of_a_selection(tmp_path, login_file, storage_spec, mm_dataset):
    dest = tmp_path / "dl"
    assert download(ID, dest, login_file, storage_spec, "--format", "ome-zarr", "-c", "Cy5 far red",
                    "-z", "0", "2", "-t", "1", "-p", "1") == 0
    assert sorted(p.name for p in (dest / ID).iterdir()) == [
        f"{ID}_p001.ome.zarr", "frames_meta.csv", "global_metadata.json"]
    attrs, _, pixels = read_ome_zarr(dest / ID / f"{ID}_p001.ome.zarr")
    assert [channel["label"] for channel in attrs["ome"]["omero"]["channels"]] == ["Cy5 far red"]
    # The array's indices map back to the dataset's index values.
    assert attrs["imaging_db"]["time_idx"] == [1] and attrs["imaging_db"]["slice_idx"] == [0, 2]
    assert pixels.shape == (1, 1, 2, *SHAPE)
    for i, z in enumerate((0, 2)):
        assert np.array_equal(pixels[0, 0, i], frame_pixels(1, z, 1, 1, SHAPE))


def _ome_xml(path) -> ET.Element:
    with tifffile.TiffFile(path) as tif:
        return ET.fromstring(tif.ome_metadata)


def test_ome_tiff_every_pixel_axes_channels_sizes(tmp_path, login_file, storage_spec, mm_dataset, capsys):
    capsys.readouterr()
    dest = tmp_path / "dl"
    assert download(ID, dest, login_file, storage_spec, "--format", "tiff", "--json", "-t", "1") == 0
    document = _json(capsys)
    names = [f"{ID}_p000.ome.tif", f"{ID}_p001.ome.tif"]
    assert document["format"] == "tiff" and document["nbr_frames"] == 12 and document["files"][2:] == names
    assert document["bytes"] == sum((dest / ID / name).stat().st_size for name in names)
    for p, name in enumerate(names):
        with tifffile.TiffFile(dest / ID / name) as tif:
            assert tif.is_ome and not tif.is_bigtiff
            series = tif.series[0]
            # One time point: tifffile's series squeezes it away (the OME-XML below says SizeT 1).
            assert series.axes == "CZYX" and series.get_axes(squeeze=False).startswith("TCZYX")
            assert series.shape == (len(CHANNELS), NBR_SLICES, *SHAPE)
            pixels = series.asarray().reshape(1, len(CHANNELS), NBR_SLICES, *SHAPE)
            # Uncompressed and contiguous, as every TIFF reader (and ImageJ's own) reads it.
            assert all(page.compression == 1 for page in tif.pages)
        for c in range(len(CHANNELS)):
            for z in range(NBR_SLICES):
                assert np.array_equal(pixels[0, c, z], frame_pixels(c, z, 1, p, SHAPE)), (c, z, p)
        root = _ome_xml(dest / ID / name)
        ns = {"ome": root.tag[1:].split("}")[0]}
        pixels_element = root.find("ome:Image/ome:Pixels", ns)
        assert pixels_element.get("DimensionOrder") == "XYZCT"
        assert (pixels_element.get("SizeT"), pixels_element.get("SizeC"), pixels_element.get("SizeZ")) == (
            "1", "2", "3")
        assert pixels_element.get("Type") == "uint16"
        assert float(pixels_element.get("PhysicalSizeX")) == PIXEL_SIZE == float(pixels_element.get("PhysicalSizeY"))
        assert float(pixels_element.get("PhysicalSizeZ")) == Z_STEP
        assert pixels_element.get("PhysicalSizeXUnit") in (None, "µm")
        assert [ch.get("Name") for ch in pixels_element.findall("ome:Channel", ns)] == CHANNELS


def test_uint8_stack_without_sizes(tmp_path, login_file, storage_spec):
    """An ImageJ stack records no physical size: scales fall back to 1.0; 8-bit pixels stay 8-bit."""
    write_imagej_stack(tmp_path / "stack.tif", nbr_channels=2, nbr_slices=3, nbr_times=1, shape=SHAPE,
                       dtype="uint8", channel_names=["BF", "GFP"])
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="tif_id")
    assert upload(write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "stack.tif")}]), config,
                  login_file) == 0
    assert download(ID, tmp_path / "zarr", login_file, storage_spec, "--format", "ome-zarr", "--no-metadata") == 0
    assert download(ID, tmp_path / "tiff", login_file, storage_spec, "--format", "tiff", "--no-metadata") == 0
    attrs, _, pixels = read_ome_zarr(tmp_path / "zarr" / ID / f"{ID}_p000.ome.zarr")
    scale = attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0] * 5
    assert [channel["label"] for channel in attrs["ome"]["omero"]["channels"]] == ["BF", "GFP"]
    with tifffile.TiffFile(tmp_path / "tiff" / ID / f"{ID}_p000.ome.tif") as tif:
        assert tif.series[0].axes == "CZYX" and tif.series[0].get_axes(squeeze=False).startswith("TCZYX")
        from_tiff = tif.series[0].asarray().reshape(1, 2, 3, *SHAPE)
    pixels_element = _ome_xml(tmp_path / "tiff" / ID / f"{ID}_p000.ome.tif").find("{*}Image/{*}Pixels")
    assert pixels_element.get("PhysicalSizeX") is None
    for got in (pixels, from_tiff):
        assert got.dtype == np.uint8 and got.shape == (1, 2, 3, *SHAPE)
        for c in range(2):
            for z in range(3):
                assert np.array_equal(got[0, c, z], frame_pixels(c, z, 0, 0, SHAPE, "uint8"))


# --------------------------------------------------------------------------- bad input: one line, nothing written
def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("data_downloader: error: ")
    return line


@pytest.mark.parametrize("format", ["ome-zarr", "tiff"])
def test_file_dataset_is_refused(tmp_path, login_file, local_spec, format, capsys):
    source = tmp_path / "notes.pdf"
    source.write_bytes(b"%PDF-1.4 not frames")
    config = write_config(tmp_path, local_spec, upload_type="file")
    assert upload(write_csv(tmp_path, [{"dataset_id": FILE_ID, "file_name": str(source)}]), config, login_file) == 0
    capsys.readouterr()
    assert download(FILE_ID, tmp_path / "dl", login_file, local_spec, "--format", format) == 1
    line = _one_error_line(capsys)
    assert f"dataset {FILE_ID} is a file dataset: --format {format} exports frames" in line
    assert not (tmp_path / "dl").exists()


def test_rgb_is_refused(tmp_path, login_file, local_spec, capsys):
    write_imagej_stack(tmp_path / "rgb.tif", nbr_channels=1, nbr_slices=2, shape=(*SHAPE, 3), dtype="uint8")
    config = write_config(tmp_path, local_spec, upload_type="frames", frames_format="tif_id")
    assert upload(write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "rgb.tif")}]), config,
                  login_file) == 0
    capsys.readouterr()
    assert download(ID, tmp_path / "dl", login_file, local_spec, "--format", "ome-zarr") == 1
    line = _one_error_line(capsys)
    assert f"dataset {ID}: its frames are RGB" in line and "--format png" in line
    assert not (tmp_path / "dl").exists()
    # As they are stored, they download.
    assert download(ID, tmp_path / "dl", login_file, local_spec) == 0


def test_existing_destination_is_refused(tmp_path, login_file, storage_spec, mm_dataset, capsys):
    (tmp_path / "dl" / ID).mkdir(parents=True)
    (tmp_path / "dl" / ID / "mine.txt").write_text("keep")
    capsys.readouterr()
    assert download(ID, tmp_path / "dl", login_file, storage_spec, "--format", "tiff") == 1
    assert "already exists; refusing to overwrite it" in _one_error_line(capsys)
    assert [p.name for p in (tmp_path / "dl").iterdir()] == [ID]
    assert [p.name for p in (tmp_path / "dl" / ID).iterdir()] == ["mine.txt"]


def test_unknown_format_is_a_usage_error(tmp_path, login_file, local_spec, capsys):
    with pytest.raises(SystemExit) as exit_info:
        download(ID, tmp_path / "dl", login_file, local_spec, "--format", "jpeg")
    assert exit_info.value.code == 2
    assert "invalid choice: 'jpeg'" in capsys.readouterr().err


@pytest.mark.parametrize("format", ["ome-zarr", "tiff"])
def test_corrupt_frame_leaves_nothing(tmp_path, login_file, local_spec, format, capsys):
    """A frame that fails its checksum half-way stops the export: no folder, no partial image left."""
    write_mm_ometiff(tmp_path / "acq", CHANNELS, NBR_SLICES, NBR_TIMES, 1, shape=SHAPE)
    config = write_config(tmp_path, local_spec, upload_type="frames", frames_format="ome_tiff")
    assert upload(write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}]), config,
                  login_file) == 0
    storage = make_storage("local", local_spec["storage_access"])
    key = f"raw_frames/{ID}/im_c001_z002_t001_p000.png"
    damaged = bytearray(storage.get(key))
    damaged[-20] ^= 0xFF
    path = next(p for p in (tmp_path / "storage").rglob("im_c001_z002_t001_p000.png"))
    path.chmod(0o644)
    path.write_bytes(bytes(damaged))
    capsys.readouterr()
    assert download(ID, tmp_path / "dl", login_file, local_spec, "--format", format) == 1
    line = _one_error_line(capsys)
    assert "im_c001_z002_t001_p000.png" in line and "corrupt" in line
    assert list((tmp_path / "dl").iterdir()) == []


def test_not_a_full_grid_is_refused(tmp_path, login_file, local_spec, capsys):
    """Positions with different numbers of time points: one image per position would have holes."""
    write_mm_ometiff(tmp_path / "a", CHANNELS, 1, 2, 1, shape=SHAPE)
    config = write_config(tmp_path, local_spec, upload_type="frames", frames_format="ome_tiff")
    assert upload(write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "a")}]), config,
                  login_file) == 0
    import sqlalchemy as sa

    from imaging_db.database.connection import load_login
    from imaging_db.database.schema import frames

    engine = sa.create_engine(load_login(login_file))
    with engine.begin() as conn:
        conn.execute(frames.delete().where(frames.c.file_name == "im_c001_z000_t001_p000.png"))
    engine.dispose()
    capsys.readouterr()
    assert download(ID, tmp_path / "dl", login_file, local_spec, "--format", "ome-zarr") == 1
    line = _one_error_line(capsys)
    assert "not a full grid" in line and "(p 0, t 1, c 1, z 0)" in line
    assert not (tmp_path / "dl").exists()


@pytest.fixture
def local_spec(tmp_path) -> dict:
    return {"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None}
