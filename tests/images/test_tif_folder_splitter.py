"""TifFolderSplitter on folders of single-frame TIFFs, with and without Micro-Manager tags."""

import json

import numpy as np
import pytest
import tifffile

from imaging_db.errors import InputError
from imaging_db.example_data import MM_TAG, mm_frame_metadata, mm_summary, write_tif_folder
from imaging_db.images.file_pixels import FilePixels
from imaging_db.images.splitters import TifFolderSplitter, make_splitter

DATASET = "ML-2018-11-07-09-35-54-0010"

# Written in this order; the names are not sorted, and one holds "_".
CHANNELS = ["GFP_long_pass", "Cy5", "BF"]


def _all_indices(nbr_channels, nbr_slices, nbr_times, nbr_positions):
    return {(c, z, t, p) for c in range(nbr_channels) for z in range(nbr_slices)
            for t in range(nbr_times) for p in range(nbr_positions)}


def _name_indices(source: str) -> tuple[int, int, int]:
    """(time, position, slice) from ``img_<channel>_t000_p000_z000.tif``."""
    stem = source.rsplit("/", 1)[-1].removesuffix(".tif")
    t, p, z = stem.rsplit("_", 3)[1:]
    return int(t[1:]), int(p[1:]), int(z[1:])


class TestWithMicroManagerTags:
    @pytest.fixture
    def folder(self, tmp_path):
        folder = tmp_path / "acq"
        write_tif_folder(folder, CHANNELS, nbr_slices=2, nbr_times=2, nbr_positions=2)
        return folder

    def test_indices_and_names_come_from_the_tags(self, folder):
        frames = list(make_splitter("tif_folder", folder, DATASET).frames())
        assert len(frames) == 3 * 2 * 2 * 2
        assert {f.indices for f in frames} == _all_indices(3, 2, 2, 2)
        for frame in frames:
            # The tag's ChannelIndex keeps acquisition order, unlike sorted names.
            assert frame.channel_name == CHANNELS[frame.channel_idx]

    def test_per_frame_metadata_is_the_tag(self, folder):
        for frame in make_splitter("tif_folder", folder, DATASET).frames(read_pixels=False):
            assert frame.metadata == mm_frame_metadata(*frame.indices, CHANNELS)

    def test_pixels_bit_exact(self, folder, check_pixels):
        check_pixels(list(make_splitter("tif_folder", folder, DATASET).frames()))

    def test_global_metadata_is_metadata_txt_summary(self, folder):
        meta = make_splitter("tif_folder", folder, DATASET).global_metadata()
        assert meta == {"Summary": mm_summary(CHANNELS, 2, 2, 2, (64, 48), "uint16"), "file_origin": str(folder)}

    def test_metadata_txt_is_not_read_as_a_frame(self, folder):
        names = {f.source.rsplit("/", 1)[-1] for f in make_splitter("tif_folder", folder, DATASET).frames(False)}
        assert "metadata.txt" not in names
        assert len(names) == 24

    def test_tag_wins_over_the_name(self, tmp_path):
        folder = tmp_path / "acq"
        folder.mkdir()
        meta = mm_frame_metadata(2, 5, 7, 1, ["a", "b", "c"])
        tifffile.imwrite(folder / "img_zzz_t000_p000_z000.tif", np.zeros((4, 4), np.uint16), metadata=None,
                         extratags=[(MM_TAG, "s", 0, json.dumps(meta), True)])
        (frame,) = make_splitter("tif_folder", folder, DATASET).frames()
        assert frame.indices == (2, 5, 7, 1)
        assert frame.channel_name == "c"

    def test_rgb_uint8(self, tmp_path, check_pixels):
        folder = tmp_path / "acq"
        write_tif_folder(folder, ["BF"], 2, shape=(64, 48, 3), dtype="uint8")
        frames = list(make_splitter("tif_folder", folder, DATASET).frames())
        assert len(frames) == 2
        check_pixels(frames, shape=(64, 48, 3), dtype="uint8")


class TestWithoutTags:
    @pytest.fixture
    def folder(self, tmp_path):
        folder = tmp_path / "acq"
        write_tif_folder(folder, CHANNELS, nbr_slices=3, nbr_times=2, nbr_positions=2,
                         mm_tags=False, metadata_txt=False)
        return folder

    def test_indices_from_names_channels_by_sorted_name(self, folder):
        frames = list(make_splitter("tif_folder", folder, DATASET).frames())
        assert len(frames) == 3 * 3 * 2 * 2
        by_sorted_name = {"BF": 0, "Cy5": 1, "GFP_long_pass": 2}
        for frame in frames:
            assert frame.channel_idx == by_sorted_name[frame.channel_name]
            t, p, z = _name_indices(frame.source)
            assert (frame.time_idx, frame.pos_idx, frame.slice_idx) == (t, p, z)
            assert frame.metadata == {}
        assert {f.channel_name for f in frames} == set(CHANNELS)
        assert {f.indices for f in frames} == _all_indices(3, 3, 2, 2)

    def test_pixels_bit_exact(self, folder, check_pixels):
        frames = list(make_splitter("tif_folder", folder, DATASET).frames())
        # frame_pixels was called with the write-order channel index.
        check_pixels(frames, channel_map={name: c for c, name in enumerate(CHANNELS)})

    def test_global_metadata_without_metadata_txt(self, folder):
        assert make_splitter("tif_folder", folder, DATASET).global_metadata() == {"file_origin": str(folder)}

    def test_badly_named_untagged_file(self, folder):
        tifffile.imwrite(folder / "img_GFP_t000_z000.tif", np.zeros((64, 48), np.uint16), metadata=None)
        with pytest.raises(InputError, match=rf"dataset {DATASET}: .*img_GFP_t000_z000\.tif: has no "
                                             r"MicroManagerMetadata tag and its name is not img_<channel>"):
            list(make_splitter("tif_folder", folder, DATASET).frames(read_pixels=False))

    def test_read_pixels_false(self, folder, page_reads):
        frames = list(make_splitter("tif_folder", folder, DATASET).frames(read_pixels=False))
        assert len(frames) == 36
        assert all(f.pixels is None for f in frames)
        assert page_reads == []


class TestStreaming:
    def test_frames_are_read_one_file_at_a_time(self, tmp_path, page_reads, monkeypatch):
        folder = tmp_path / "acq"
        write_tif_folder(folder, ["GFP"], nbr_slices=20, mm_tags=False)
        opened = []
        original = tifffile.TiffFile.__init__

        def recording(self, path, *args, **kwargs):
            opened.append(str(path))
            original(self, path, *args, **kwargs)

        monkeypatch.setattr(tifffile.TiffFile, "__init__", recording)
        frames = make_splitter("tif_folder", folder, DATASET).frames()
        first = next(frames)
        assert isinstance(first.pixels, FilePixels)  # read when the frame is encoded
        assert len(opened) == 1 and page_reads == []
        frames.close()


class TestErrors:
    def test_multi_page_file(self, tmp_path):
        folder = tmp_path / "acq"
        write_tif_folder(folder, ["GFP"], 1, mm_tags=False)
        tifffile.imwrite(folder / "img_GFP_t000_p000_z001.tif", np.zeros((2, 8, 8), np.uint16), metadata=None)
        with pytest.raises(InputError, match=rf"{DATASET}: .*img_GFP_t000_p000_z001\.tif: holds 2 pages; "
                                             "tif_folder expects single-frame TIFFs"):
            list(make_splitter("tif_folder", folder, DATASET).frames())

    def test_empty_folder(self, tmp_path):
        (tmp_path / "acq").mkdir()
        (tmp_path / "acq" / "metadata.txt").write_text("{}")
        with pytest.raises(InputError, match=rf"dataset {DATASET}: .*acq: folder holds no \*\.tif files"):
            list(make_splitter("tif_folder", tmp_path / "acq", DATASET).frames())

    def test_a_file_instead_of_a_folder(self, tmp_path):
        path = tmp_path / "img_GFP_t000_p000_z000.tif"
        tifffile.imwrite(path, np.zeros((8, 8), np.uint16))
        with pytest.raises(InputError, match="tif_folder needs a folder of single-frame TIFFs"):
            list(make_splitter("tif_folder", path, DATASET).frames())

    def test_unreadable_tiff(self, tmp_path):
        folder = tmp_path / "acq"
        write_tif_folder(folder, ["GFP"], 1, mm_tags=False)
        (folder / "img_GFP_t000_p000_z001.tif").write_bytes(b"garbage")
        with pytest.raises(InputError, match=r"img_GFP_t000_p000_z001\.tif: not a readable TIFF"):
            list(make_splitter("tif_folder", folder, DATASET).frames())

    def test_invalid_metadata_txt(self, tmp_path):
        folder = tmp_path / "acq"
        write_tif_folder(folder, ["GFP"], 1)
        (folder / "metadata.txt").write_text("{ truncated")
        with pytest.raises(InputError, match=r"metadata\.txt: is not valid JSON"):
            make_splitter("tif_folder", folder, DATASET).global_metadata()

    def test_int32_pixels(self, tmp_path):
        folder = tmp_path / "acq"
        folder.mkdir()
        tifffile.imwrite(folder / "img_GFP_t000_p000_z000.tif", np.zeros((8, 8), np.int32), metadata=None)
        with pytest.raises(InputError, match="page 0 has int32 pixels"):
            list(TifFolderSplitter(folder, DATASET).frames())


def test_broken_tag_is_an_error_not_a_fallback_to_the_name(tmp_path):
    folder = tmp_path / "acq"
    write_tif_folder(folder, ["GFP"], nbr_slices=1, metadata_txt=False)
    tifffile.imwrite(folder / "img_GFP_t000_p000_z001.tif", np.zeros((8, 8), np.uint16), metadata=None,
                     extratags=[(MM_TAG, "s", 0, '{"ChannelIndex": 0, "Slice', True)])
    with pytest.raises(InputError, match=rf"{DATASET}: .*img_GFP_t000_p000_z001\.tif: MicroManagerMetadata tag "
                                         r"\(51123\) is not valid JSON"):
        list(make_splitter("tif_folder", folder, DATASET).frames(read_pixels=False))
