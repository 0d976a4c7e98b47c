"""FilePixels: frames left in their file and read in strips when encoded, as the arrays they stand for."""

import numpy as np
import pytest
import tifffile

from imaging_db.errors import InputError
from imaging_db.example_data import frame_pixels, write_mm_ometiff
from imaging_db.images import png as png_module
from imaging_db.images.file_pixels import FilePixels
from imaging_db.images.pixels import ArrayPixels
from imaging_db.images.png import decode_png, encode_png
from imaging_db.images.splitters import make_splitter

DATASET = "ML-2018-11-07-09-35-54-0010"
WHERE = f"dataset {DATASET}: x.raw: page 3"


def _raw_file(tmp_path, pixels: np.ndarray, byteorder: str, header: bytes = b"HEADER") -> FilePixels:
    """Write pixels after a header, in a byte order; return the FilePixels describing them."""
    file_dtype = pixels.dtype.newbyteorder(byteorder)
    path = tmp_path / "x.raw"
    path.write_bytes(header + pixels.astype(file_dtype).tobytes() + b"TRAILER")
    return FilePixels(path, len(header), pixels.shape, file_dtype, WHERE)


CASES = [((40, 56), "uint16"), ((40, 56), "uint8"), ((17, 9, 3), "uint16"), ((17, 9, 3), "uint8"), ((1, 1), "uint16")]


class TestFilePixels:
    @pytest.mark.parametrize("byteorder", ["<", ">"])
    @pytest.mark.parametrize("shape, dtype", CASES)
    def test_reads_the_frame(self, tmp_path, shape, dtype, byteorder):
        pixels = frame_pixels(1, 2, 0, 0, shape, dtype)
        source = _raw_file(tmp_path, pixels, byteorder)
        assert (source.shape, source.dtype, source.ndim, source.nbytes) == \
               (pixels.shape, pixels.dtype, pixels.ndim, pixels.nbytes)
        read = np.asarray(source)
        assert read.dtype == pixels.dtype and read.dtype.isnative
        np.testing.assert_array_equal(read, pixels)

    def test_reader_fills_rows_from_any_row(self, tmp_path):
        pixels = frame_pixels(0, 0, 0, 0, (30, 20), "uint16")
        source = _raw_file(tmp_path, pixels, ">")
        out = np.empty((7, 20), dtype=source.file_dtype)
        with source.reader() as read:
            read(11, out)
        np.testing.assert_array_equal(out, pixels[11:18])

    def test_truncated_file_names_dataset_file_and_page(self, tmp_path):
        pixels = frame_pixels(0, 0, 0, 0, (30, 20), "uint16")
        source = _raw_file(tmp_path, pixels, "<")
        source.path.write_bytes(source.path.read_bytes()[:600])
        with pytest.raises(InputError, match=rf"^{WHERE}: cannot read pixels \(the file ends at byte 600, "
                                             r"inside the frame's 1200 bytes from offset 6\)$"):
            np.asarray(source)

    def test_missing_file(self, tmp_path):
        source = FilePixels(tmp_path / "gone.tif", 0, (4, 4), np.dtype("<u2"), WHERE)
        with pytest.raises(InputError, match=rf"^{WHERE}: cannot read pixels \(No such file or directory\)$"):
            np.asarray(source)


class TestEncodingFromTheFile:
    @pytest.mark.parametrize("strip_bytes", [1, 500, 256 * 1024])
    @pytest.mark.parametrize("byteorder", ["<", ">"])
    @pytest.mark.parametrize("shape, dtype", CASES)
    def test_same_png_as_from_the_array(self, tmp_path, shape, dtype, byteorder, strip_bytes, monkeypatch):
        monkeypatch.setattr(png_module, "_STRIP_BYTES", strip_bytes)
        pixels = frame_pixels(2, 1, 0, 0, shape, dtype, smooth=len(shape) == 2 and shape[0] > 1)
        png = encode_png(_raw_file(tmp_path, pixels, byteorder))
        assert png == encode_png(pixels)
        np.testing.assert_array_equal(decode_png(png), pixels)

    def test_truncated_file_fails_the_encoding(self, tmp_path):
        pixels = frame_pixels(0, 0, 0, 0, (30, 20), "uint16")
        source = _raw_file(tmp_path, pixels, "<", header=b"")
        source.path.write_bytes(source.path.read_bytes()[:1000])
        with pytest.raises(InputError, match=rf"^{WHERE}: cannot read pixels \(the file ends at byte 1000"):
            encode_png(source)


class TestSplittersChoose:
    def test_compressed_pages_are_read_as_arrays(self, tmp_path):
        """Pages that are not stored plainly (here zlib-compressed) are decoded by tifffile as before."""
        path = tmp_path / "stack.tif"
        stack = np.stack([frame_pixels(0, z, 0, 0, (32, 24)) for z in range(3)])
        tifffile.imwrite(path, stack, imagej=True, compression="zlib", metadata={"axes": "ZYX"})
        frames = list(make_splitter("tif_id", path, DATASET).frames())
        assert [type(f.pixels) for f in frames] == [ArrayPixels] * 3
        for frame in frames:
            assert frame.pixels.held_bytes == frame.pixels.nbytes == stack[0].nbytes
            np.testing.assert_array_equal(frame.pixels, stack[frame.slice_idx])

    def test_micro_manager_pages_upload_from_the_file(self, tmp_path):
        (path,) = write_mm_ometiff(tmp_path / "acq", ["GFP"], nbr_slices=2, nbr_times=1, nbr_positions=1)
        for frame in make_splitter("ome_tiff", path, DATASET).frames():
            assert isinstance(frame.pixels, FilePixels) and frame.pixels.held_bytes == 0
            np.testing.assert_array_equal(decode_png(encode_png(frame.pixels)), frame_pixels(*frame.indices, (64, 48)))


class TestBoundedMemory:
    def test_encoding_from_the_file_never_holds_the_frame(self, tmp_path):
        """A 2048x2048 uint16 frame (8 MB) streams through strip buffers: the peak is a fraction of the frame.

        About 2.5 MB: three 256 KB strip buffers, one IDAT chunk being joined and the compressor's output.
        """
        import tracemalloc

        pixels = frame_pixels(0, 0, 0, 0, (2048, 2048), "uint16", smooth=True)
        source = _raw_file(tmp_path, pixels, "<")
        del pixels
        tracemalloc.start()
        try:
            size = sum(len(piece) for piece in png_module.png_pieces(source))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert size > 1_000_000
        assert peak < 4_000_000, f"peak {peak} bytes while encoding an 8 MB frame"

    def test_encoding_an_array_is_bounded_by_the_strips_too(self, tmp_path):
        import tracemalloc

        pixels = frame_pixels(0, 0, 0, 0, (2048, 2048), "uint16", smooth=True)
        tracemalloc.start()
        try:
            for _ in png_module.png_pieces(pixels):
                pass
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4_000_000, f"peak {peak} bytes beyond the 8 MB frame itself"
