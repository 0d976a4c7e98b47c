"""OmeTiffSplitter on Micro-Manager style OME-TIFFs written by imaging_db.example_data."""

import json

import numpy as np
import pytest
import tifffile

from imaging_db.errors import InputError
from imaging_db.example_data import MM_TAG, frame_pixels, mm_frame_metadata, mm_summary, write_mm_ometiff
from imaging_db.images.file_pixels import FilePixels
from imaging_db.images.splitters import OmeTiffSplitter, make_splitter

DATASET = "ML-2018-11-07-09-35-54-0010"

CHANNELS = ["DAPI", "GFP"]


def _all_indices(nbr_channels, nbr_slices, nbr_times, positions):
    return {(c, z, t, p) for c in range(nbr_channels) for z in range(nbr_slices)
            for t in range(nbr_times) for p in positions}


class TestSingleFile:
    @pytest.fixture
    def ome_file(self, tmp_path):
        (path,) = write_mm_ometiff(tmp_path / "acq", CHANNELS, nbr_slices=3, nbr_times=2, nbr_positions=1)
        return path

    def test_indices_and_channel_names(self, ome_file):
        frames = list(make_splitter("ome_tiff", ome_file, DATASET).frames())
        assert len(frames) == 2 * 3 * 2
        assert {f.indices for f in frames} == _all_indices(2, 3, 2, [0])
        # Pages are in file order: channel fastest, then slice, then time.
        assert [f.indices for f in frames[:4]] == [(0, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (1, 1, 0, 0)]
        assert [f.page for f in frames] == list(range(12))
        for frame in frames:
            assert frame.channel_name == CHANNELS[frame.channel_idx]
            assert frame.source == str(ome_file)

    def test_per_frame_metadata_is_the_mm_tag(self, ome_file):
        for frame in make_splitter("ome_tiff", ome_file, DATASET).frames(read_pixels=False):
            c, z, t, p = frame.indices
            assert frame.metadata == mm_frame_metadata(c, z, t, p, CHANNELS)

    def test_pixels_bit_exact(self, ome_file, check_pixels):
        check_pixels(list(make_splitter("ome_tiff", ome_file, DATASET).frames()))

    def test_global_metadata_is_ij_info_summary_plus_file_origin(self, ome_file):
        meta = make_splitter("ome_tiff", ome_file, DATASET).global_metadata()
        expected = mm_summary(CHANNELS, 3, 2, 1, (64, 48), "uint16")
        assert meta == {**expected, "file_origin": str(ome_file)}

    def test_read_pixels_false_gives_the_same_frames_without_pixels(self, ome_file):
        splitter = make_splitter("ome_tiff", ome_file, DATASET)
        with_pixels = list(splitter.frames())
        without = list(splitter.frames(read_pixels=False))
        assert all(f.pixels is None for f in without)
        assert [(f.indices, f.channel_name, f.metadata, f.page) for f in without] == \
               [(f.indices, f.channel_name, f.metadata, f.page) for f in with_pixels]

    def test_read_pixels_false_decodes_no_page(self, ome_file, page_reads):
        list(make_splitter("ome_tiff", ome_file, DATASET).frames(read_pixels=False))
        assert page_reads == []

    def test_pixels_stay_in_the_file_until_encoded(self, tmp_path, page_reads):
        """Micro-Manager pages are plain: the splitter hands out where each frame lies, and reads nothing."""
        (path,) = write_mm_ometiff(tmp_path / "acq", CHANNELS, nbr_slices=10, nbr_times=5, nbr_positions=1)
        frames = make_splitter("ome_tiff", path, DATASET).frames()
        first, second = next(frames), next(frames)
        frames.close()
        assert page_reads == []
        assert isinstance(first.pixels, FilePixels) and isinstance(second.pixels, FilePixels)
        assert first.pixels.offset != second.pixels.offset
        assert first.pixels.where == f"dataset {DATASET}: {path}: page 0"
        np.testing.assert_array_equal(np.asarray(second.pixels), frame_pixels(*second.indices, (64, 48)))

    def test_rgb_uint8(self, tmp_path, check_pixels):
        (path,) = write_mm_ometiff(tmp_path / "acq", ["BF"], 2, 1, 1, shape=(64, 48, 3), dtype="uint8")
        frames = list(make_splitter("ome_tiff", path, DATASET).frames())
        assert [f.indices for f in frames] == [(0, 0, 0, 0), (0, 1, 0, 0)]
        check_pixels(frames, shape=(64, 48, 3), dtype="uint8")

    def test_uint8_gray(self, tmp_path, check_pixels):
        (path,) = write_mm_ometiff(tmp_path / "acq", CHANNELS, 2, 1, 1, dtype="uint8")
        check_pixels(list(make_splitter("ome_tiff", path, DATASET).frames()), dtype="uint8")


class TestFolder:
    def test_several_files_per_position_with_padding(self, tmp_path, check_pixels):
        folder = tmp_path / "acq"
        files = write_mm_ometiff(folder, CHANNELS, nbr_slices=3, nbr_times=2, nbr_positions=2,
                                 max_pages_per_file=5, padding=4096)
        assert len(files) == 6  # 12 pages per position in files of 5, 5 and 2
        splitter = make_splitter("ome_tiff", folder, DATASET)
        frames = list(splitter.frames())
        assert len(frames) == 24  # the zero padding adds no phantom pages
        assert {f.indices for f in frames} == _all_indices(2, 3, 2, [0, 1])
        assert {f.source for f in frames} == {str(f) for f in files}
        for frame in frames:
            assert frame.channel_name == CHANNELS[frame.channel_idx]
            assert frame.metadata == mm_frame_metadata(*frame.indices, CHANNELS)
        check_pixels(frames)

    def test_folder_global_metadata(self, tmp_path):
        folder = tmp_path / "acq"
        write_mm_ometiff(folder, CHANNELS, 3, 2, 2, max_pages_per_file=5, prefix="ML")
        meta = make_splitter("ome_tiff", folder, DATASET).global_metadata()
        assert meta == {**mm_summary(CHANNELS, 3, 2, 2, (64, 48), "uint16", prefix="ML"), "file_origin": str(folder)}

    def test_folder_ignores_other_files(self, tmp_path):
        folder = tmp_path / "acq"
        write_mm_ometiff(folder, CHANNELS, 1, 1, 1)
        (folder / "notes.txt").write_text("not an image")
        (folder / "._X_MMStack_1-Pos_000_000.ome.tif").write_bytes(b"macOS resource fork")
        tifffile.imwrite(folder / "preview.tif", np.zeros((4, 4), np.uint8))
        frames = list(make_splitter("ome_tiff", folder, DATASET).frames())
        assert len(frames) == 2

    def test_positions_filter(self, tmp_path, check_pixels):
        folder = tmp_path / "acq"
        write_mm_ometiff(folder, CHANNELS, 2, 2, nbr_positions=3, max_pages_per_file=3)
        frames = list(make_splitter("ome_tiff", folder, DATASET, positions=[0, 2]).frames())
        assert {f.indices for f in frames} == _all_indices(2, 2, 2, [0, 2])
        check_pixels(frames)

    def test_positions_filter_without_pixels(self, tmp_path, page_reads, check_pixels):
        folder = tmp_path / "acq"
        write_mm_ometiff(folder, CHANNELS, 1, 1, nbr_positions=3)
        frames = list(make_splitter("ome_tiff", folder, DATASET, positions=[1]).frames())
        assert [f.indices for f in frames] == [(0, 0, 0, 1), (1, 0, 0, 1)]
        assert page_reads == []  # nothing decoded: the kept frames' pixels are read when encoded
        check_pixels(frames)


class TestMicroManager14:
    def test_slice_index_from_slice(self, tmp_path, check_pixels):
        (path,) = write_mm_ometiff(tmp_path / "acq", CHANNELS, nbr_slices=3, nbr_times=2, nbr_positions=1,
                                   mm_version="1.4")
        frames = list(make_splitter("ome_tiff", path, DATASET).frames())
        assert all("SliceIndex" not in f.metadata for f in frames)
        assert {f.indices for f in frames} == _all_indices(2, 3, 2, [0])
        for frame in frames:
            assert frame.slice_idx == frame.metadata["Slice"]
        check_pixels(frames)


def _write_pages(path, metas, shape=(8, 6)):
    """Write one page per metadata dict; None writes a page without tag 51123.

    No OME-XML (tifffile would add it for a *.ome.tif name): with it, pages without tags are an OME-TIFF
    that ome_tiff reads by its XML (tests/images/test_ome_xml_input.py).
    """
    with tifffile.TiffWriter(path, ome=False) as writer:
        for i, meta in enumerate(metas):
            extratags = [] if meta is None else [(MM_TAG, "s", 0, json.dumps(meta), True)]
            writer.write(np.full(shape, i, np.uint16), photometric="minisblack", metadata=None,
                         contiguous=False, extratags=extratags)
    return path


class TestErrors:
    def test_page_without_mm_tag_names_dataset_file_and_page(self, tmp_path):
        good = {"ChannelIndex": 0, "SliceIndex": 0, "FrameIndex": 0, "PositionIndex": 0, "Channel": "GFP"}
        path = _write_pages(tmp_path / "bad.ome.tif", [good, None, good])
        frames = make_splitter("ome_tiff", path, DATASET).frames()
        assert next(frames).indices == (0, 0, 0, 0)
        with pytest.raises(InputError, match=rf"^dataset {DATASET}: .*bad\.ome\.tif: page 1: "
                                             r"has no MicroManagerMetadata tag \(51123\)$"):
            next(frames)

    def test_missing_tag_is_found_without_reading_pixels(self, tmp_path):
        path = _write_pages(tmp_path / "bad.ome.tif", [None])
        with pytest.raises(InputError, match="page 0: has no MicroManagerMetadata tag"):
            list(make_splitter("ome_tiff", path, DATASET).frames(read_pixels=False))

    @pytest.mark.parametrize("meta, problem", [
        ({"SliceIndex": 0, "FrameIndex": 0}, "lacks ChannelIndex"),
        ({"ChannelIndex": 0, "FrameIndex": 0}, "lacks SliceIndex or Slice"),
        ({"ChannelIndex": "x", "SliceIndex": 0, "FrameIndex": 0}, "ChannelIndex = 'x' is not an integer"),
    ])
    def test_incomplete_mm_tag(self, tmp_path, meta, problem):
        path = _write_pages(tmp_path / "bad.ome.tif", [meta])
        with pytest.raises(InputError, match=rf"{DATASET}: .*bad\.ome\.tif: page 0: MicroManagerMetadata {problem}"):
            list(make_splitter("ome_tiff", path, DATASET).frames(read_pixels=False))

    def test_mm_tag_not_json(self, tmp_path):
        path = tmp_path / "bad.ome.tif"
        tifffile.imwrite(path, np.zeros((4, 4), np.uint16), metadata=None,
                         extratags=[(MM_TAG, "s", 0, "{not json", True)])
        with pytest.raises(InputError, match=r"page 0: MicroManagerMetadata tag \(51123\) is not valid JSON"):
            list(make_splitter("ome_tiff", path, DATASET).frames())

    def test_missing_position_index_defaults_to_zero(self, tmp_path):
        path = _write_pages(tmp_path / "x.ome.tif", [{"ChannelIndex": 1, "Slice": 2, "Frame": 3}])
        (frame,) = make_splitter("ome_tiff", path, DATASET).frames()
        assert frame.indices == (1, 2, 3, 0)
        assert frame.channel_name == "1"  # no Channel key: the index stands in

    def test_not_a_tiff(self, tmp_path):
        path = tmp_path / "x.ome.tif"
        path.write_bytes(b"definitely not a tiff")
        with pytest.raises(InputError, match=rf"{DATASET}: .*x\.ome\.tif: not a readable TIFF"):
            list(make_splitter("ome_tiff", path, DATASET).frames())
        with pytest.raises(InputError, match="not a readable TIFF"):
            make_splitter("ome_tiff", path, DATASET).global_metadata()

    def test_empty_folder(self, tmp_path):
        with pytest.raises(InputError, match=rf"{DATASET}: .*: folder holds no \*\.ome\.tif files"):
            list(make_splitter("ome_tiff", tmp_path, DATASET).frames())

    def test_missing_path(self, tmp_path):
        with pytest.raises(InputError, match="is neither a file nor a folder"):
            list(OmeTiffSplitter(tmp_path / "missing", DATASET).frames())
