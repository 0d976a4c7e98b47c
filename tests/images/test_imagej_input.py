"""tif_id on ImageJ/Fiji hyperstacks: channel names from Labels, pixel size and frame interval, and its notes.

Files are written as Fiji saves them (tifffile's ImageJ writer: ``Labels``,
``unit``, ``spacing``, ``finterval``, the resolution tags), read by the
splitter, and uploaded (SQLite and PostgreSQL), checked in the database
and downloaded bit for bit.
"""

import json

import numpy as np
import pytest
import tifffile

from imaging_db.example_data import frame_pixels
from imaging_db.images.splitters import Splitter, make_splitter
from tests.cli.test_end_to_end import as_dict, check_downloaded, dataset_rows, download, upload, write_config, write_csv

DATASET = "ML-2018-11-07-09-35-54-0010"
SHAPE = (24, 20)


def write_hyperstack(path, nbr_channels=2, nbr_slices=3, nbr_times=2, labels=None, resolution=(1 / 0.25, 1 / 0.5),
                     **metadata):
    """An ImageJ hyperstack (TZCYX: pages channel fastest) of ``frame_pixels``, with ``Labels`` and calibration."""
    stack = np.stack([np.stack([np.stack([frame_pixels(c, z, t, 0, SHAPE) for c in range(nbr_channels)])
                                for z in range(nbr_slices)]) for t in range(nbr_times)])
    metadata = {"axes": "TZCYX", **metadata}
    if labels is not None:
        metadata["Labels"] = labels
    tifffile.imwrite(path, stack, imagej=True, photometric="minisblack", resolution=resolution, metadata=metadata)
    return path


def _frames(path, read_pixels=False):
    return list(make_splitter("tif_id", path, DATASET).frames(read_pixels=read_pixels))


class TestLabels:
    def test_labels_repeating_per_slice_and_time_name_the_channels(self, tmp_path, check_pixels):
        path = write_hyperstack(tmp_path / "stack.tif", labels=["GFP", "488"] * 6)
        frames = _frames(path, read_pixels=True)
        assert {(f.channel_idx, f.channel_name) for f in frames} == {(0, "GFP"), (1, "488")}
        check_pixels(frames, shape=SHAPE)

    def test_labels_changing_along_z_are_not_channel_names(self, tmp_path):
        """A label per image (a file name per slice, as an image sequence gives) names no channel."""
        labels = [f"img_{i:03d}.tif" for i in range(12)]
        path = write_hyperstack(tmp_path / "stack.tif", labels=labels)
        assert {(f.channel_idx, f.channel_name) for f in _frames(path)} == {(0, "0"), (1, "1")}
        assert make_splitter("tif_id", path, DATASET).global_metadata()["Labels"] == labels

    def test_one_channel_with_one_label_throughout(self, tmp_path):
        path = write_hyperstack(tmp_path / "stack.tif", nbr_channels=1, labels=["DAPI"] * 6)
        assert {f.channel_name for f in _frames(path)} == {"DAPI"}

    def test_first_line_of_a_label(self, tmp_path):
        """Fiji shows a label up to its first line break; what follows is a note about the image."""
        labels = [f"{name}\nexposure {i} ms" for i in range(6) for name in ("GFP", "RFP")]
        path = write_hyperstack(tmp_path / "stack.tif", labels=labels)
        assert {f.channel_name for f in _frames(path)} == {"GFP", "RFP"}

    @pytest.mark.parametrize("labels", [["GFP", "GFP"] * 6, ["GFP", ""] * 6, ["GFP"]])
    def test_labels_that_cannot_name_the_channels(self, tmp_path, labels):
        """The same label for two channels, a blank one, or fewer labels than channels: indices instead."""
        path = write_hyperstack(tmp_path / "stack.tif", labels=labels)
        assert {f.channel_name for f in _frames(path)} == {"0", "1"}

    def test_micro_manager_chnames_come_first(self, tmp_path):
        path = write_hyperstack(tmp_path / "stack.tif", labels=["a", "b"] * 6,
                                Info=json.dumps({"ChNames": ["DAPI", "GFP"]}))
        assert {f.channel_name for f in _frames(path)} == {"DAPI", "GFP"}


class TestCalibration:
    def test_pixel_size_z_step_and_frame_interval(self, tmp_path):
        path = write_hyperstack(tmp_path / "stack.tif", unit="um", spacing=1.5, finterval=30.0, tunit="sec")
        meta = make_splitter("tif_id", path, DATASET).global_metadata()
        assert meta["PhysicalSizeX"] == pytest.approx(0.25) and meta["PhysicalSizeY"] == pytest.approx(0.5)
        assert meta["PhysicalSizeXUnit"] == meta["PhysicalSizeYUnit"] == meta["PhysicalSizeZUnit"] == "µm"
        assert meta["PhysicalSizeZ"] == 1.5
        assert (meta["TimeIncrement"], meta["TimeIncrementUnit"]) == (30.0, "s")
        # ImageJ's own keys stay as they were written.
        assert (meta["unit"], meta["spacing"], meta["finterval"]) == ("um", 1.5, 30.0)
        json.dumps(meta)

    def test_other_units_as_written(self, tmp_path):
        path = write_hyperstack(tmp_path / "stack.tif", unit="nm", finterval=2.0, tunit="min")
        meta = make_splitter("tif_id", path, DATASET).global_metadata()
        assert (meta["PhysicalSizeX"], meta["PhysicalSizeXUnit"]) == (pytest.approx(0.25), "nm")
        assert "PhysicalSizeZ" not in meta
        assert (meta["TimeIncrement"], meta["TimeIncrementUnit"]) == (2.0, "min")

    def test_frame_interval_without_unit(self, tmp_path):
        path = write_hyperstack(tmp_path / "stack.tif", finterval=0.5)
        meta = make_splitter("tif_id", path, DATASET).global_metadata()
        assert meta["TimeIncrement"] == 0.5 and "TimeIncrementUnit" not in meta

    def test_no_unit_no_pixel_size(self, tmp_path):
        """Without an ImageJ unit the resolution tags are a print setting (dots per inch), not a pixel size."""
        path = write_hyperstack(tmp_path / "stack.tif", resolution=(72, 72))
        meta = make_splitter("tif_id", path, DATASET).global_metadata()
        assert not [key for key in meta if key.startswith(("PhysicalSize", "TimeIncrement"))]


class TestNotes:
    def test_default_is_no_note(self, tmp_path):
        class Quiet(Splitter):
            can_read = classmethod(lambda cls, path: False)
            global_metadata = frames = lambda self, *args: None

        assert Quiet(tmp_path, DATASET).notes() == []

    def test_pages_without_metadata_taken_as_slices(self, tmp_path):
        path = tmp_path / "plain.tif"
        tifffile.imwrite(path, np.stack([frame_pixels(0, z, 0, 0, SHAPE) for z in range(12)]), metadata=None,
                         photometric="minisblack")
        splitter = make_splitter("tif_id", path, DATASET)
        assert splitter.notes() == ["no ImageJ/OME metadata: 12 pages taken as 12 slices"]  # before reading
        frames = list(splitter.frames())
        assert [f.indices for f in frames] == [(0, z, 0, 0) for z in range(12)]
        assert splitter.notes() == ["no ImageJ/OME metadata: 12 pages taken as 12 slices"]

    def test_ome_tiff_forced_through_tif_id(self, tmp_path):
        path = tmp_path / "a.ome.tif"
        tifffile.imwrite(path, np.zeros((4,) + SHAPE, np.uint16), ome=True, metadata={"axes": "TYX"})
        splitter = make_splitter("tif_id", path, DATASET)
        assert splitter.notes() == ["tif_id does not follow OME-XML: 4 pages taken as 4 slices "
                                    "(frames_format ome_tiff reads its layout)"]

    def test_no_note_for_a_hyperstack_or_a_single_page(self, tmp_path):
        single = tmp_path / "single.tif"
        tifffile.imwrite(single, frame_pixels(0, 0, 0, 0, SHAPE), metadata=None)
        hyperstack = write_hyperstack(tmp_path / "stack.tif")
        for path in (single, hyperstack):
            splitter = make_splitter("tif_id", path, DATASET)
            list(splitter.frames(read_pixels=False))
            assert splitter.notes() == [], path


@pytest.fixture
def local_spec(tmp_path):
    return {"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None}


def test_upload_and_download_bit_exact(tmp_path, db_url, login_file, local_spec):
    ident = "ML-2018-11-07-09-35-54-0031"
    path = write_hyperstack(tmp_path / "stack.tif", labels=["GFP", "488"] * 6, unit="micron", spacing=2.0,
                            finterval=10.0, tunit="sec")
    config = write_config(tmp_path, local_spec, upload_type="frames", frames_format="tif_id", microscope="Fiji")
    assert upload(write_csv(tmp_path, [{"dataset_id": ident, "file_name": str(path)}]), config, login_file) == 0

    _data_set, frames_global, frames = dataset_rows(db_url, ident)
    assert (frames_global["nbr_frames"], frames_global["nbr_channels"], frames_global["nbr_slices"],
            frames_global["nbr_timepoints"]) == (12, 2, 3, 2)
    assert {(row["channel_idx"], row["channel_name"]) for row in frames} == {(0, "GFP"), (1, "488")}
    meta = as_dict(frames_global["metadata_json"])
    assert meta["PhysicalSizeX"] == pytest.approx(0.25) and meta["PhysicalSizeXUnit"] == "µm"
    assert (meta["PhysicalSizeZ"], meta["TimeIncrement"], meta["TimeIncrementUnit"]) == (2.0, 10.0, "s")
    assert meta["Labels"] == ["GFP", "488"] * 6

    dest = tmp_path / "dl"
    assert download(ident, dest, login_file, local_spec, "-c", "488") == 0
    check_downloaded(dest / ident, {(1, z, t, 0): frame_pixels(1, z, t, 0, SHAPE) for z in range(3) for t in range(2)})
