"""PNG encoding: bit-exact round trips, and files that any PNG reader reads the same way."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from imaging_db.errors import InputError, IntegrityError
from imaging_db.example_data import frame_pixels
from imaging_db.images import png as png_module
from imaging_db.images.png import decode_png, encode_png

SHAPE = (64, 48)

CASES = {
    "uint8-gray": (SHAPE, "uint8"),
    "uint16-gray": (SHAPE, "uint16"),
    "uint8-rgb": ((*SHAPE, 3), "uint8"),
    "uint16-rgb": ((*SHAPE, 3), "uint16"),
}


def _pixels(case: str) -> np.ndarray:
    shape, dtype = CASES[case]
    return frame_pixels(1, 2, 3, 4, shape, dtype)


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + data) == crc, f"bad CRC in chunk {kind}"
        chunks.append((kind, data))
        pos += 12 + length
    return chunks


def _ihdr(png: bytes) -> dict:
    kind, data = _chunks(png)[0]
    assert kind == b"IHDR"
    width, height, depth, color, _compression, _filtering, interlace = struct.unpack(">IIBBBBB", data)
    return {"width": width, "height": height, "bit_depth": depth, "color_type": color, "interlace": interlace}


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _decode_by_spec(png: bytes) -> np.ndarray:
    """Decode a non-interlaced gray/RGB 8/16-bit PNG straight from the specification.

    Independent of OpenCV and Pillow, so it also checks 16-bit RGB, which Pillow reduces to 8 bits.
    """
    header = _ihdr(png)
    assert header["interlace"] == 0
    channels = {0: 1, 2: 3}[header["color_type"]]
    sample_bytes = header["bit_depth"] // 8
    bpp = channels * sample_bytes
    width, height = header["width"], header["height"]
    stride = width * bpp
    raw = zlib.decompress(b"".join(data for kind, data in _chunks(png) if kind == b"IDAT"))
    assert len(raw) == height * (stride + 1)
    rows, previous = [], bytearray(stride)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for x in range(stride):
            left = row[x - bpp] if x >= bpp else 0
            up = previous[x]
            up_left = previous[x - bpp] if x >= bpp else 0
            predictor = {0: 0, 1: left, 2: up, 3: (left + up) // 2, 4: _paeth(left, up, up_left)}[kind]
            row[x] = (row[x] + predictor) & 0xFF
        rows.append(bytes(row))
        previous = row
    dtype = ">u2" if sample_bytes == 2 else "u1"  # PNG samples are big-endian
    pixels = np.frombuffer(b"".join(rows), dtype=dtype).reshape(height, width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels


class TestRoundTrip:
    @pytest.mark.parametrize("case", list(CASES))
    def test_bit_exact(self, case):
        pixels = _pixels(case)
        back = decode_png(encode_png(pixels))
        assert back.dtype == pixels.dtype
        assert back.shape == pixels.shape
        np.testing.assert_array_equal(back, pixels)

    @pytest.mark.parametrize("compression", [0, 9])
    def test_any_compression_level_is_lossless(self, compression):
        pixels = _pixels("uint16-rgb")
        np.testing.assert_array_equal(decode_png(encode_png(pixels, compression=compression)), pixels)

    def test_higher_compression_is_smaller_on_smooth_images(self):
        pixels = frame_pixels(0, 0, 0, 0, SHAPE, "uint16", smooth=True)
        assert len(encode_png(pixels, compression=9)) < len(encode_png(pixels, compression=0))

    def test_non_contiguous_input(self):
        pixels = frame_pixels(0, 0, 0, 0, (48, 64), "uint16").T  # a transposed view
        assert not pixels.flags.c_contiguous
        np.testing.assert_array_equal(decode_png(encode_png(pixels)), pixels)

    def test_encoding_does_not_modify_the_input(self):
        pixels = _pixels("uint8-rgb")
        before = pixels.copy()
        encode_png(pixels)
        np.testing.assert_array_equal(pixels, before)

    @pytest.mark.parametrize("strip_bytes", [1, 100, 1000])
    @pytest.mark.parametrize("case", list(CASES))
    def test_strip_boundaries(self, case, strip_bytes, monkeypatch):
        """Rows are filtered a strip at a time: strips of one row, a few rows and a partial last strip."""
        monkeypatch.setattr(png_module, "_STRIP_BYTES", strip_bytes)
        pixels = _pixels(case)
        png = encode_png(pixels)
        np.testing.assert_array_equal(_decode_by_spec(png), pixels)
        np.testing.assert_array_equal(decode_png(png), pixels)

    @pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (1, 1, 3), (2, 1, 3), (1, 5, 3)])
    @pytest.mark.parametrize("dtype", ["uint8", "uint16"])
    def test_tiny_frames(self, shape, dtype):
        pixels = frame_pixels(0, 1, 0, 0, shape, dtype)
        png = encode_png(pixels)
        np.testing.assert_array_equal(_decode_by_spec(png), pixels)
        np.testing.assert_array_equal(decode_png(png), pixels)

    @pytest.mark.parametrize("dtype", ["uint8", "uint16"])
    def test_frame_of_many_strips(self, dtype):
        pixels = frame_pixels(0, 1, 0, 0, (1500, 1100), dtype, smooth=True)
        np.testing.assert_array_equal(decode_png(encode_png(pixels)), pixels)
        with Image.open(io.BytesIO(encode_png(pixels))) as image:
            np.testing.assert_array_equal(np.asarray(image).astype(pixels.dtype), pixels)

    def test_default_compresses_like_zlib_level_9_or_better(self):
        """The fast default stays within 2% of the smallest zlib output on fluorescence-like frames."""
        pixels = frame_pixels(0, 0, 0, 0, (256, 256), "uint16", smooth=True)
        default, level_9, stored = (len(encode_png(pixels, level)) for level in (None, 9, 0))
        assert default < 0.7 * stored
        assert default < 1.02 * level_9

    def test_level_0_stores_the_filtered_rows_uncompressed(self):
        pixels = _pixels("uint16-gray")
        idat = b"".join(data for kind, data in _chunks(encode_png(pixels, compression=0)) if kind == b"IDAT")
        raw = zlib.decompress(idat)
        assert len(raw) == SHAPE[0] * (1 + 2 * SHAPE[1])
        assert len(idat) > len(raw)  # stored blocks: nothing compressed

    def test_extreme_values(self):
        pixels = np.zeros(SHAPE, dtype=np.uint16)
        pixels[0, 0], pixels[-1, -1], pixels[10, 10] = 65535, 1, 256
        np.testing.assert_array_equal(decode_png(encode_png(pixels)), pixels)


class TestIndependentReaders:
    @pytest.mark.parametrize("case", list(CASES))
    def test_header_says_what_the_pixels_are(self, case):
        pixels = _pixels(case)
        header = _ihdr(encode_png(pixels))
        assert (header["height"], header["width"]) == SHAPE
        assert header["bit_depth"] == (16 if pixels.dtype == np.uint16 else 8)
        assert header["color_type"] == (2 if pixels.ndim == 3 else 0)  # 2 = truecolor RGB, 0 = grayscale

    @pytest.mark.parametrize("case", list(CASES))
    def test_spec_decoder_reads_the_same_pixels_in_rgb_order(self, case):
        pixels = _pixels(case)
        np.testing.assert_array_equal(_decode_by_spec(encode_png(pixels)), pixels)

    @pytest.mark.parametrize("case", ["uint8-gray", "uint16-gray", "uint8-rgb"])
    def test_pillow_reads_the_same_pixels_in_rgb_order(self, case):
        pixels = _pixels(case)
        with Image.open(io.BytesIO(encode_png(pixels))) as image:
            assert image.format == "PNG"
            read = np.asarray(image)
        np.testing.assert_array_equal(read.astype(pixels.dtype), pixels)
        assert read.shape == pixels.shape

    def test_pure_red_is_red(self):
        pixels = np.zeros((*SHAPE, 3), dtype=np.uint8)
        pixels[..., 0] = 255
        with Image.open(io.BytesIO(encode_png(pixels))) as image:
            assert image.mode == "RGB"
            assert image.getpixel((0, 0)) == (255, 0, 0)

    def test_pillow_png_decodes(self):
        pixels = _pixels("uint8-rgb")
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        np.testing.assert_array_equal(decode_png(buffer.getvalue()), pixels)


class TestErrors:
    @pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int16", "int8", "uint32", "bool"])
    def test_unsupported_dtype(self, dtype):
        with pytest.raises(InputError, match=f"cannot store {dtype} pixels as PNG: only uint8 and uint16"):
            encode_png(np.zeros(SHAPE, dtype=dtype))

    @pytest.mark.parametrize("shape", [(*SHAPE, 4), (*SHAPE, 2), (*SHAPE, 1), (3, *SHAPE), (2, 3, *SHAPE), (64,)])
    def test_unsupported_shape(self, shape):
        with pytest.raises(InputError, match=r"cannot store a frame of shape .* need 2D grayscale or RGB"):
            encode_png(np.zeros(shape, dtype=np.uint16))

    def test_4_channel_message_names_the_shape(self):
        with pytest.raises(InputError, match=r"shape \(64, 48, 4\)"):
            encode_png(np.zeros((*SHAPE, 4), dtype=np.uint8))

    def test_3d_stack_message_names_the_shape(self):
        with pytest.raises(InputError, match=r"shape \(5, 64, 48\)"):
            encode_png(np.zeros((5, *SHAPE), dtype=np.uint16))

    @pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0, 3)])
    def test_empty_frame(self, shape):
        with pytest.raises(InputError, match=r"cannot store an empty frame of shape"):
            encode_png(np.zeros(shape, dtype=np.uint16))

    @pytest.mark.parametrize("data", [b"", b"not a png at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
    def test_decoding_garbage_raises_integrity_error(self, data):
        with pytest.raises(IntegrityError, match="frame x is not a readable PNG"):
            decode_png(data, what="frame x")

    def test_truncated_png_raises_integrity_error(self):
        png = encode_png(_pixels("uint16-gray"))
        with pytest.raises(IntegrityError, match="not a readable PNG"):
            decode_png(png[: len(png) // 3])
