"""Connection.export (OME-Zarr, OME-TIFF) and frames_meta(frame_metadata=True), on each database and storage.

The OME-Zarr is read with tensorstore and its zarr.json parsed here, the
OME-TIFF with tifffile's reader: not what imaging_db writes them with.
"""

import csv
import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from imaging_db.cli import data_downloader
from imaging_db.errors import InputError, NotFoundError
from imaging_db.example_data import mm_frame_metadata
from imaging_db.pipeline.frame_metadata import column_order
from tests.api.conftest import CHANNELS, FILE_ID, ID, NBR_POSITIONS, NBR_SLICES, NBR_TIMES, SHAPE, upload


def _zarr_pixels(path) -> np.ndarray:
    # A test tool of requirements-dev.txt only: the API's core tests also run where only the package's
    # dependencies are installed (tests/test_dependency_ranges.py).
    ts = pytest.importorskip("tensorstore")
    return ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / "0")}},
                   open=True, read=True).result().read().result()


def test_export_ome_zarr_bit_exact(tmp_path, db, acquisition):
    _, pages = acquisition
    folder = db.export(ID, tmp_path / "out", channels=["Cy5 far red"], times=[1])
    assert folder == tmp_path / "out" / ID
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["global_metadata.json", "frames_meta.csv", *(f"{ID}_p{p:03d}.ome.zarr" for p in range(NBR_POSITIONS))])
    for p in range(NBR_POSITIONS):
        image = folder / f"{ID}_p{p:03d}.ome.zarr"
        ome = json.loads((image / "zarr.json").read_text())["attributes"]["ome"]
        assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["t", "c", "z", "y", "x"]
        assert [c["label"] for c in ome["omero"]["channels"]] == ["Cy5 far red"]
        pixels = _zarr_pixels(image)
        assert pixels.shape == (1, 1, NBR_SLICES, *SHAPE)
        for z in range(NBR_SLICES):
            assert np.array_equal(pixels[0, 0, z], pages[(1, z, 1, p)]), (z, p)


def test_export_ome_tiff_bit_exact(tmp_path, db, acquisition):
    _, pages = acquisition
    folder = db.export(ID, tmp_path / "out", format="tiff", positions=1, metadata=False)
    assert [p.name for p in folder.iterdir()] == [f"{ID}_p001.ome.tif"]
    with tifffile.TiffFile(folder / f"{ID}_p001.ome.tif") as tif:
        assert tif.is_ome and tif.series[0].axes == "TCZYX"
        pixels = tif.series[0].asarray()
        assert "Cy5 far red" in tif.ome_metadata
    assert pixels.shape == (NBR_TIMES, len(CHANNELS), NBR_SLICES, *SHAPE)
    for t in range(NBR_TIMES):
        for c in range(len(CHANNELS)):
            for z in range(NBR_SLICES):
                assert np.array_equal(pixels[t, c, z], pages[(c, z, t, 1)]), (t, c, z)


def test_export_errors(tmp_path, local_db, local_spec, login_file):
    (tmp_path / "out" / ID).mkdir(parents=True)
    with pytest.raises(InputError, match=rf"dataset {ID}: .* already exists; refusing to overwrite it"):
        local_db.export(ID, tmp_path / "out")
    with pytest.raises(InputError, match=r"unknown format 'zarr'; choose one of png, ome-zarr, tiff"):
        local_db.export(ID, tmp_path / "other", format="zarr")
    with pytest.raises(NotFoundError, match=rf"dataset {ID}: no frames with slice 9"):
        local_db.export(ID, tmp_path / "other", slices=[9])
    assert not (tmp_path / "other").exists()
    source = tmp_path / "notes.pdf"
    source.write_bytes(b"%PDF-1.4")
    upload(tmp_path, login_file, local_spec, [{"dataset_id": FILE_ID, "file_name": str(source)}], upload_type="file")
    with pytest.raises(InputError, match=rf"dataset {FILE_ID} is a file dataset: --format ome-zarr exports frames"):
        local_db.export(FILE_ID, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_frames_meta_frame_metadata_matches_the_csv(tmp_path, db, login_file, storage_spec):
    table = db.frames_meta(ID, channels="GFP", slices=[0, 2], frame_metadata=True)
    plain = db.frames_meta(ID, channels="GFP", slices=[0, 2])
    fixed = list(plain.columns)
    assert list(table.columns[:len(fixed)]) == fixed
    pd.testing.assert_frame_equal(table[fixed], plain)
    expected = [mm_frame_metadata(0, z, t, p, CHANNELS) for p in range(NBR_POSITIONS) for t in range(NBR_TIMES)
                for z in (0, 2)]
    assert list(table.columns[len(fixed):]) == column_order(expected[0])
    # Values keep their types.
    assert table["ElapsedTime-ms"].tolist() == [meta["ElapsedTime-ms"] for meta in expected]
    assert table["ZPositionUm"].dtype == np.float64 and table["BitDepth"].tolist() == [16] * len(expected)
    assert table["UUID"].tolist() == [meta["UUID"] for meta in expected]

    # The CLI's --frame-metadata gives the same columns (less the metadata_json dicts), the same values as text.
    args = ["--id", ID, "--dest", str(tmp_path / "dl"), "--login", str(login_file), "--no-progress",
            "--no-download", "--frame-metadata", "-c", "GFP", "-z", "0", "2"]
    assert data_downloader.main(args) == 0
    with open(tmp_path / "dl" / ID / "frames_meta.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == [c for c in table.columns if c != "metadata_json"]
    assert [float(row["ElapsedTime-ms"]) for row in rows] == table["ElapsedTime-ms"].tolist()
    assert [row["UUID"] for row in rows] == table["UUID"].tolist()
