"""TifIdSplitter on ImageJ hyperstacks and plain multi-page TIFFs."""

import numpy as np
import pytest
import tifffile

from imaging_db.errors import InputError
from imaging_db.example_data import frame_pixels, write_imagej_stack
from imaging_db.images.file_pixels import FilePixels
from imaging_db.images.splitters import make_splitter

DATASET = "ML-2018-11-07-09-35-54-0010"


def _hyperstack_order(nbr_channels, nbr_slices, nbr_times, nbr_positions=1):
    """ImageJ page order: channel fastest, then slice, position, time."""
    return [(c, z, t, p) for t in range(nbr_times) for p in range(nbr_positions)
            for z in range(nbr_slices) for c in range(nbr_channels)]


def _drop_all_but_first_ifd(path):
    """Unlink every IFD after the first, as ImageJ writes hyperstacks over 4 GB (data stays contiguous)."""
    with tifffile.TiffFile(path) as tif:
        first = tif.pages[0]
        next_ifd_pointer = first.offset + 2 + 12 * len(first.tags)
        assert not tif.is_bigtiff
    with open(path, "r+b") as handle:
        handle.seek(next_ifd_pointer)
        handle.write(b"\0\0\0\0")


class TestHyperstack:
    @pytest.fixture
    def stack(self, tmp_path):
        return write_imagej_stack(tmp_path / "stack.tif", nbr_channels=2, nbr_slices=3, nbr_times=2,
                                  channel_names=["DAPI", "GFP_2"])

    def test_order_channel_fastest_then_slice_then_time(self, stack):
        frames = list(make_splitter("tif_id", stack, DATASET).frames())
        assert [f.indices for f in frames] == _hyperstack_order(2, 3, 2)
        assert [f.page for f in frames] == list(range(12))

    def test_channel_names_from_info_chnames(self, stack):
        frames = list(make_splitter("tif_id", stack, DATASET).frames(read_pixels=False))
        assert [f.channel_name for f in frames[:4]] == ["DAPI", "GFP_2", "DAPI", "GFP_2"]
        assert all(f.metadata == {} for f in frames)

    def test_channel_names_default_to_indices(self, tmp_path):
        path = write_imagej_stack(tmp_path / "s.tif", 3, 1)
        frames = list(make_splitter("tif_id", path, DATASET).frames(read_pixels=False))
        assert [f.channel_name for f in frames] == ["0", "1", "2"]

    def test_pixels_bit_exact(self, stack, check_pixels):
        check_pixels(list(make_splitter("tif_id", stack, DATASET).frames()))

    def test_global_metadata_has_imagej_fields_and_info(self, stack):
        meta = make_splitter("tif_id", stack, DATASET).global_metadata()
        assert meta["channels"] == 2
        assert meta["slices"] == 3
        assert meta["frames"] == 2
        assert meta["images"] == 12
        assert meta["Info"] == {"ChNames": ["DAPI", "GFP_2"]}
        assert meta["file_origin"] == str(stack)
        assert "ImageJ" in meta

    def test_read_pixels_false(self, stack, page_reads):
        frames = list(make_splitter("tif_id", stack, DATASET).frames(read_pixels=False))
        assert len(frames) == 12
        assert all(f.pixels is None for f in frames)
        assert page_reads == []

    def test_pixels_stay_in_the_file_until_encoded(self, tmp_path, page_reads):
        path = write_imagej_stack(tmp_path / "big.tif", 2, 20, 3)
        frames = make_splitter("tif_id", path, DATASET).frames()
        first, second = next(frames), next(frames)
        frames.close()
        assert (first.indices, second.indices) == ((0, 0, 0, 0), (1, 0, 0, 0))
        assert page_reads == []
        assert isinstance(second.pixels, FilePixels)
        np.testing.assert_array_equal(np.asarray(second.pixels), frame_pixels(*second.indices, (64, 48)))

    def test_positions_in_the_description(self, tmp_path, check_pixels):
        order = _hyperstack_order(2, 2, 2, nbr_positions=2)
        stack = np.stack([frame_pixels(*idx, (64, 48)) for idx in order])
        path = tmp_path / "pos.tif"
        tifffile.imwrite(path, stack, metadata=None,
                         description="ImageJ=1.53t\nimages=16\nchannels=2\nslices=2\npositions=2\nframes=2\n")
        frames = list(make_splitter("tif_id", path, DATASET).frames())
        assert [f.indices for f in frames] == order
        check_pixels(frames)

    def test_rgb_uint8(self, tmp_path, check_pixels):
        path = write_imagej_stack(tmp_path / "rgb.tif", 1, 3, 2, shape=(64, 48, 3), dtype="uint8")
        frames = list(make_splitter("tif_id", path, DATASET).frames())
        assert [f.indices for f in frames] == _hyperstack_order(1, 3, 2)
        assert all(f.pixels.shape == (64, 48, 3) for f in frames)
        check_pixels(frames, shape=(64, 48, 3), dtype="uint8")

    def test_uint8_gray(self, tmp_path, check_pixels):
        path = write_imagej_stack(tmp_path / "u8.tif", 2, 2, dtype="uint8")
        check_pixels(list(make_splitter("tif_id", path, DATASET).frames()), dtype="uint8")


class TestContiguousImageJData:
    """ImageJ writes only the first IFD of large hyperstacks; the other images follow it contiguously."""

    @pytest.mark.parametrize("byteorder", ["<", ">"])  # ImageJ writes big-endian by default
    def test_images_beyond_the_first_ifd(self, tmp_path, byteorder, check_pixels):
        path = tmp_path / "large.tif"
        order = _hyperstack_order(2, 3, 1)
        stack = np.stack([frame_pixels(*idx, (64, 48)) for idx in order]).reshape(1, 3, 2, 64, 48)
        tifffile.imwrite(path, stack, imagej=True, byteorder=byteorder, metadata={"axes": "TZCYX"})
        _drop_all_but_first_ifd(path)
        with tifffile.TiffFile(path) as tif:
            assert len(tif.pages) == 1

        frames = list(make_splitter("tif_id", path, DATASET).frames())
        assert [f.indices for f in frames] == order
        check_pixels(frames)

    def test_whole_number_float32_big_endian(self, tmp_path, check_pixels):
        path = tmp_path / "large.tif"
        stack = np.stack([frame_pixels(0, z, 0, 0, (64, 48)) for z in range(3)]).astype(np.float32)
        tifffile.imwrite(path, stack, imagej=True, byteorder=">", metadata={"axes": "ZYX"})
        _drop_all_but_first_ifd(path)
        frames = list(make_splitter("tif_id", path, DATASET).frames())
        assert len(frames) == 3
        check_pixels(frames)


class TestFloat32:
    def test_whole_numbers_become_uint16_bit_exact(self, tmp_path, check_pixels):
        path = write_imagej_stack(tmp_path / "f.tif", 2, 3, dtype="float32")
        with tifffile.TiffFile(path) as tif:
            assert tif.pages[0].dtype == np.float32
        frames = list(make_splitter("tif_id", path, DATASET).frames())
        assert all(f.pixels.dtype == np.uint16 for f in frames)
        check_pixels(frames)

    @pytest.mark.parametrize("value, shown", [(0.5, "min 0.5, max 1"), (-1.0, "min -1, max"),
                                              (70000.0, "max 70000"), (np.inf, "max 1, 1 NaN or infinite"),
                                              (np.nan, "min 1, max 1, 1 NaN or infinite")])
    def test_other_values_are_rejected(self, tmp_path, value, shown):
        stack = np.ones((2, 8, 8), np.float32)
        stack[1, 3, 4] = value
        path = tmp_path / "f.tif"
        tifffile.imwrite(path, stack, imagej=True)
        frames = make_splitter("tif_id", path, DATASET).frames()
        assert next(frames).pixels.dtype == np.uint16  # page 0 is fine
        with pytest.raises(InputError, match=rf"{DATASET}: .*f\.tif: page 1: float32 pixels are not whole "
                                             rf"numbers within 0\.\.65535 \(.*{shown}.*convert the stack to 16 bit"):
            next(frames)


class TestPlainMultipageTiff:
    def test_taken_as_a_z_stack(self, tmp_path, check_pixels):
        path = tmp_path / "plain.tif"
        stack = np.stack([frame_pixels(0, z, 0, 0, (64, 48)) for z in range(5)])
        tifffile.imwrite(path, stack)  # tifffile's own shape description, no ImageJ metadata
        with tifffile.TiffFile(path) as tif:
            assert not tif.is_imagej and len(tif.pages) == 5
        splitter = make_splitter("tif_id", path, DATASET)
        frames = list(splitter.frames())
        assert [f.indices for f in frames] == [(0, z, 0, 0) for z in range(5)]
        assert all(f.channel_name == "0" for f in frames)
        check_pixels(frames)
        assert splitter.global_metadata() == {"file_origin": str(path)}

    def test_single_page(self, tmp_path):
        path = tmp_path / "one.tif"
        tifffile.imwrite(path, frame_pixels(0, 0, 0, 0, (64, 48)))
        (frame,) = make_splitter("tif_id", path, DATASET).frames()
        assert frame.indices == (0, 0, 0, 0)


class TestErrors:
    def test_page_count_mismatch(self, tmp_path):
        path = tmp_path / "short.tif"
        tifffile.imwrite(path, np.zeros((6, 8, 8), np.uint16), metadata=None,
                         description="ImageJ=1.53t\nimages=6\nchannels=2\nslices=4\n")
        with pytest.raises(InputError, match=rf"{DATASET}: .*short\.tif: holds 6 images but its ImageDescription "
                                             r"says channels\*slices\*positions\*frames = 2\*4\*1\*1 = 8"):
            list(make_splitter("tif_id", path, DATASET).frames(read_pixels=False))

    @pytest.mark.parametrize("read_pixels", [True, False], ids=["pixels", "scan_only"])
    def test_images_count_beyond_the_data(self, tmp_path, read_pixels):
        """Also the metadata-only scan that validates uploads must catch a file shorter than its header."""
        path = tmp_path / "short.tif"
        tifffile.imwrite(path, np.zeros((6, 8, 8), np.uint16), metadata=None,
                         description="ImageJ=1.53t\nimages=8\nchannels=2\nslices=4\n")
        with pytest.raises(InputError, match=rf"{DATASET}: .*short\.tif: "):
            list(make_splitter("tif_id", path, DATASET).frames(read_pixels=read_pixels))

    @pytest.mark.parametrize("description, problem", [
        ("ImageJ=1.53t\nimages=2\nchannels=0\n", "channels=0 must be at least 1"),
        ("ImageJ=1.53t\nimages=2\nslices=two\n", "slices='two' is not an integer"),
    ])
    def test_bad_counts(self, tmp_path, description, problem):
        path = tmp_path / "bad.tif"
        tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint16), metadata=None, description=description)
        with pytest.raises(InputError, match=f"ImageDescription {problem}"):
            list(make_splitter("tif_id", path, DATASET).frames())

    @pytest.mark.parametrize("dtype", ["int32", "int16", "uint32"])
    def test_unsupported_integer_dtype(self, tmp_path, dtype):
        path = tmp_path / "s.tif"
        tifffile.imwrite(path, np.ones((2, 8, 8), dtype))
        with pytest.raises(InputError, match=rf"{DATASET}: .*s\.tif: page 0 has {dtype} pixels; only uint8, uint16"):
            list(make_splitter("tif_id", path, DATASET).frames())

    def test_float64_with_fractions(self, tmp_path):
        path = tmp_path / "s.tif"
        tifffile.imwrite(path, np.full((2, 8, 8), 2.25))
        with pytest.raises(InputError, match="page 0: float64 pixels are not whole numbers"):
            list(make_splitter("tif_id", path, DATASET).frames())

    def test_four_samples_per_pixel(self, tmp_path):
        path = tmp_path / "rgba.tif"
        tifffile.imwrite(path, np.zeros((2, 8, 8, 4), np.uint8), photometric="rgb", extrasamples=["unassalpha"])
        with pytest.raises(InputError, match=r"page 0 has shape \(8, 8, 4\); only 2D grayscale or RGB"):
            list(make_splitter("tif_id", path, DATASET).frames())

    def test_not_a_file(self, tmp_path):
        with pytest.raises(InputError, match="tif_id needs one multi-page TIFF file"):
            list(make_splitter("tif_id", tmp_path, DATASET).frames())

    def test_not_a_tiff(self, tmp_path):
        path = tmp_path / "x.tif"
        path.write_bytes(b"not a tiff")
        with pytest.raises(InputError, match=rf"{DATASET}: .*x\.tif: not a readable TIFF"):
            list(make_splitter("tif_id", path, DATASET).frames())
