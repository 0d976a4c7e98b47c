"""Pixels: the one pixel type frames carry, in memory (ArrayPixels) or left in the file (FilePixels)."""

import numpy as np
import pytest

from imaging_db.example_data import frame_pixels
from imaging_db.images.file_pixels import FilePixels
from imaging_db.images.pixels import ArrayPixels, Pixels, as_pixels
from imaging_db.images.png import storable_dtype, storable_shape

SHAPES = [(30, 20), (9, 7, 3)]


def _both(tmp_path, pixels: np.ndarray, byteorder: str) -> list[Pixels]:
    """The same frame as an ArrayPixels and as a FilePixels in ``byteorder``."""
    path = tmp_path / "x.raw"
    path.write_bytes(b"HEAD" + pixels.astype(pixels.dtype.newbyteorder(byteorder)).tobytes())
    return [ArrayPixels(pixels), FilePixels(path, 4, pixels.shape, pixels.dtype.newbyteorder(byteorder), "x")]


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("shape", SHAPES)
class TestEveryKind:
    def test_describes_the_frame(self, tmp_path, shape, dtype, byteorder):
        pixels = frame_pixels(0, 1, 0, 0, shape, dtype)
        for source in _both(tmp_path, pixels, byteorder):
            assert (source.shape, source.dtype, source.ndim, source.nbytes) == \
                   (pixels.shape, pixels.dtype, pixels.ndim, pixels.nbytes), source
            assert source.dtype.isnative
            np.testing.assert_array_equal(source.read(), pixels)
            np.testing.assert_array_equal(np.asarray(source), pixels)

    @pytest.mark.parametrize("wanted", ["<", ">"])
    def test_rows_fill_any_byte_order_from_any_row(self, tmp_path, shape, dtype, byteorder, wanted):
        pixels = frame_pixels(2, 0, 1, 0, shape, dtype)
        for source in _both(tmp_path, pixels, byteorder):
            out = np.empty((4, *shape[1:]), dtype=pixels.dtype.newbyteorder(wanted))
            with source.rows() as read_rows:
                read_rows(5, out)
                np.testing.assert_array_equal(out, pixels[5:9], err_msg=repr(source))
                read_rows(0, out[:2])  # a shorter strip, as the last one of a frame
                np.testing.assert_array_equal(out[:2], pixels[:2], err_msg=repr(source))


def test_held_bytes_count_only_pixels_in_memory(tmp_path):
    pixels = frame_pixels(0, 0, 0, 0, (30, 20), "uint16")
    in_memory, in_file = _both(tmp_path, pixels, "<")
    assert in_memory.held_bytes == in_memory.nbytes == pixels.nbytes
    assert in_file.held_bytes == 0 and in_file.nbytes == pixels.nbytes


def test_as_pixels_wraps_arrays_once():
    pixels = np.zeros((3, 4), np.uint16)
    wrapped = as_pixels(pixels)
    assert isinstance(wrapped, ArrayPixels) and wrapped.read() is pixels
    assert as_pixels(wrapped) is wrapped


def test_array_conversion_honours_dtype_and_copy():
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    wrapped = ArrayPixels(pixels)
    assert np.asarray(wrapped, dtype=np.float32).dtype == np.float32
    copied = np.array(wrapped, copy=True)
    copied[0, 0] = 7
    assert pixels[0, 0] == 0


@pytest.mark.parametrize("shape, ok", [((4, 5), True), ((4, 5, 3), True), ((4, 5, 1), False),
                                       ((4, 5, 4), False), ((2, 4, 5), False), ((5,), False)])
def test_png_shape_rule(shape, ok):
    assert storable_shape(shape) is ok


@pytest.mark.parametrize("dtype, ok", [
    ("uint8", True), ("uint16", True), (np.dtype("uint16").newbyteorder("S"), False),  # swapped: not native
    ("int16", False), ("float32", False), ("uint32", False),
])
def test_png_dtype_rule(dtype, ok):
    assert storable_dtype(np.dtype(dtype)) is ok
