"""make_splitter, and what every splitter shares (Frame, pixel checks, Micro-Manager tag parsing)."""

import numpy as np
import pytest

from imaging_db.errors import InputError
from imaging_db.images.splitters import (
    SPLITTERS,
    Frame,
    OmeTiffSplitter,
    TifFolderSplitter,
    TifIdSplitter,
    make_splitter,
)
from imaging_db.images.splitters.micromanager import micromanager_indices, parse_json_tag

DATASET = "ML-2018-11-07-09-35-54-0010"


class TestMakeSplitter:
    @pytest.mark.parametrize("frames_format, cls", [
        ("ome_tiff", OmeTiffSplitter), ("tif_folder", TifFolderSplitter), ("tif_id", TifIdSplitter),
    ])
    def test_known_formats(self, tmp_path, frames_format, cls):
        splitter = make_splitter(frames_format, tmp_path / "x", DATASET)
        assert type(splitter) is cls
        assert splitter.frames_format == frames_format
        assert splitter.dataset_serial == DATASET

    def test_unknown_format(self, tmp_path):
        with pytest.raises(InputError, match=r"unknown frames_format 'czi'; choose one of "
                                             r"\['ome_tiff', 'tif_folder', 'tif_id'\]"):
            make_splitter("czi", tmp_path, DATASET)

    @pytest.mark.parametrize("frames_format", ["tif_folder", "tif_id"])
    def test_positions_only_for_ome_tiff(self, tmp_path, frames_format):
        with pytest.raises(InputError, match=rf"dataset {DATASET}: positions can only be chosen for ome_tiff, "
                                             rf"not {frames_format}"):
            make_splitter(frames_format, tmp_path, DATASET, positions=[0])

    def test_positions_accepted_for_ome_tiff(self, tmp_path):
        assert make_splitter("ome_tiff", tmp_path, DATASET, positions=[1, 2]).positions == [1, 2]

    def test_registry_is_complete(self):
        assert set(SPLITTERS) == {"ome_tiff", "tif_folder", "tif_id"}


class TestFrame:
    def test_indices_and_where(self):
        frame = Frame(channel_idx=1, slice_idx=2, time_idx=3, pos_idx=4, channel_name="GFP",
                      metadata={}, source="/data/a.tif", page=7)
        assert frame.indices == (1, 2, 3, 4)
        assert frame.where == "file /data/a.tif page 7"
        assert frame.pixels is None


class TestStorable:
    @pytest.fixture
    def splitter(self, tmp_path):
        return TifIdSplitter(tmp_path / "s.tif", DATASET)

    @pytest.mark.parametrize("dtype", ["uint8", "uint16"])
    def test_passes_storable_pixels_through(self, splitter, dtype):
        pixels = np.arange(12, dtype=dtype).reshape(3, 4)
        assert splitter.storable(pixels, "f.tif", 0) is pixels

    def test_squeezes_a_single_sample(self, splitter):
        pixels = np.arange(12, dtype=np.uint16).reshape(3, 4, 1)
        np.testing.assert_array_equal(splitter.storable(pixels, "f.tif", 0), pixels[:, :, 0])

    @pytest.mark.parametrize("dtype", [">u2", ">f4"])
    def test_big_endian_becomes_native_with_the_same_values(self, splitter, dtype):
        pixels = np.array([[0, 1, 256], [4095, 65535, 7]], dtype=dtype)
        out = splitter.storable(pixels, "f.tif", 0)
        assert out.dtype == np.uint16 and out.dtype.isnative
        np.testing.assert_array_equal(out, [[0, 1, 256], [4095, 65535, 7]])

    def test_error_names_dataset_file_and_page(self, splitter):
        with pytest.raises(InputError, match=rf"^dataset {DATASET}: f\.tif: page 3 has int32 pixels"):
            splitter.storable(np.zeros((2, 2), np.int32), "f.tif", 3)

    def test_3d_stack_is_not_a_frame(self, splitter):
        with pytest.raises(InputError, match=r"page 0 has shape \(2, 3, 4\); only 2D grayscale or RGB"):
            splitter.storable(np.zeros((2, 3, 4), np.uint16), "f.tif", 0)


class TestMicroManagerTag:
    def test_parse_json_tag(self):
        assert parse_json_tag(None, "tag") is None
        assert parse_json_tag({"a": 1}, "tag") == {"a": 1}
        assert parse_json_tag(b'{"a": 1}\x00', "tag") == {"a": 1}
        assert parse_json_tag('{"a": 1}', "tag") == {"a": 1}

    @pytest.mark.parametrize("value, problem", [("{bad", "tag is not valid JSON"),
                                                ("[1, 2]", "tag does not hold a JSON object"),
                                                (42, "tag does not hold a JSON object")])
    def test_parse_json_tag_errors(self, value, problem):
        with pytest.raises(ValueError, match=problem):
            parse_json_tag(value, "tag")

    def test_mm2_indices(self):
        meta = {"ChannelIndex": 1, "SliceIndex": 2, "FrameIndex": 3, "PositionIndex": 4, "Slice": 9, "Frame": 9}
        assert micromanager_indices(meta) == (1, 2, 3, 4)

    def test_mm14_indices(self):
        assert micromanager_indices({"ChannelIndex": 1, "Slice": 2, "Frame": 3}) == (1, 2, 3, 0)

    def test_null_index_falls_back(self):
        assert micromanager_indices({"ChannelIndex": 0, "SliceIndex": None, "Slice": 5, "FrameIndex": 1}) == \
               (0, 5, 1, 0)

    def test_missing_index(self):
        with pytest.raises(ValueError, match="lacks FrameIndex or Frame"):
            micromanager_indices({"ChannelIndex": 0, "SliceIndex": 0})
