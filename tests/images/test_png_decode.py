"""PNG decoding: imaging_db's own PNGs decode bit for bit as OpenCV and Pillow read them, others go to OpenCV."""

import io
import struct
import sys
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from imaging_db.errors import IntegrityError
from imaging_db.images import png as png_module
from imaging_db.images.png import decode_png, decode_png_into, encode_png

SHAPES = [(1, 1), (1, 7), (7, 1), (3, 5), (64, 48), (33, 131), (257, 1031)]


def _random(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(0, info.max, size=shape, endpoint=True, dtype=dtype)


def _opencv(data: bytes) -> np.ndarray:
    """What decode_png gave when it always used OpenCV: RGB in that order (OpenCV reads BGR)."""
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    return pixels[..., ::-1] if pixels.ndim == 3 and pixels.shape[2] == 3 else pixels


def _pillow(data: bytes, dtype: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        if image.mode == "RGB" or dtype == "uint8":
            return np.asarray(image)
        return np.asarray(image).astype(dtype)  # Pillow reads 16-bit grey as I;16 / I


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(header: bytes, rows: bytes, *extra: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + b"".join(extra) + _chunk(b"IDAT", zlib.compress(rows)) \
        + _chunk(b"IEND", b"")


@pytest.fixture
def no_opencv(monkeypatch):
    """Fail if OpenCV's decoder is asked for anything."""

    def refuse(data, what):
        raise AssertionError("OpenCV used for an imaging_db PNG")

    monkeypatch.setattr(png_module, "_decode_opencv", refuse)


class TestOwnPngs:
    @pytest.mark.parametrize("dtype", ["uint8", "uint16"])
    @pytest.mark.parametrize("rgb", [False, True], ids=["grey", "rgb"])
    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
    def test_as_opencv_and_pillow(self, shape, rgb, dtype, no_opencv):
        pixels = _random((*shape, 3) if rgb else shape, dtype)
        data = encode_png(pixels)
        decoded = decode_png(data)
        assert decoded.dtype == pixels.dtype and decoded.shape == pixels.shape
        np.testing.assert_array_equal(decoded, pixels)
        np.testing.assert_array_equal(decoded, _opencv(data))
        if rgb and dtype == "uint16":  # Pillow reads 16-bit RGB as 8-bit: its high bytes
            np.testing.assert_array_equal(decoded >> 8, _pillow(data, dtype))
        else:
            np.testing.assert_array_equal(decoded, _pillow(data, dtype))

    @pytest.mark.parametrize("compression", [0, 1, 9, None])
    def test_every_compression_level(self, compression, no_opencv):
        pixels = _random((40, 56), "uint16", seed=3)
        np.testing.assert_array_equal(decode_png(encode_png(pixels, compression)), pixels)

    def test_many_idat_chunks_and_strips(self, monkeypatch, no_opencv):
        monkeypatch.setattr(png_module, "_INFLATE_BYTES", 1000)  # several strips, of uneven size
        pixels = _random((301, 1033, 3), "uint16", seed=4)
        data = encode_png(pixels)
        assert data.count(b"IDAT") > 3
        np.testing.assert_array_equal(decode_png(data), pixels)

    def test_smooth_and_constant_frames(self, no_opencv):
        ramp = np.add.outer(np.arange(200), np.arange(300)).astype(np.uint16) * 97
        for pixels in (ramp, np.zeros((50, 60), np.uint16), np.full((50, 60, 3), 255, np.uint8)):
            np.testing.assert_array_equal(decode_png(encode_png(pixels)), pixels)

    def test_very_wide_frame(self, no_opencv):
        pixels = _random((2, 300_001), "uint16", seed=5)
        np.testing.assert_array_equal(decode_png(encode_png(pixels)), pixels)


class TestDecodeInto:
    def test_into_a_view_of_a_stack(self, no_opencv):
        stack = np.zeros((3, 40, 56), dtype=np.uint16)
        pixels = _random((40, 56), "uint16", seed=6)
        view = stack[1]
        assert decode_png_into(encode_png(pixels), view) is view
        np.testing.assert_array_equal(stack[1], pixels)
        assert not stack[0].any() and not stack[2].any()

    def test_returns_out(self, no_opencv):
        out = np.empty((40, 56, 3), dtype=np.uint8)
        assert decode_png_into(encode_png(_random((40, 56, 3), "uint8")), out) is out

    @pytest.mark.parametrize("shape, dtype", [((40, 56), "uint8"), ((56, 40), "uint16"), ((40, 56, 3), "uint16")])
    def test_other_shape_or_dtype_leaves_out_untouched(self, shape, dtype):
        out = np.zeros((40, 56), dtype=np.uint16)
        pixels = _random(shape, dtype)
        got = decode_png_into(encode_png(pixels), out)
        assert got is not out and not out.any()
        np.testing.assert_array_equal(got, pixels)
        assert got.dtype == pixels.dtype

    def test_non_contiguous_out(self):
        out = np.zeros((56, 40), dtype=np.uint16).T
        pixels = _random((40, 56), "uint16")
        assert decode_png_into(encode_png(pixels), out) is out
        np.testing.assert_array_equal(out, pixels)

    def test_foreign_png_into(self):
        pixels = _random((40, 56), "uint16")
        out = np.empty_like(pixels)
        assert decode_png_into(cv2.imencode(".png", pixels)[1].tobytes(), out) is out
        np.testing.assert_array_equal(out, pixels)


class TestOtherPngs:
    """PNGs not laid out as imaging_db writes them decode as OpenCV decodes them."""

    @pytest.mark.parametrize("dtype", ["uint8", "uint16"])
    @pytest.mark.parametrize("rgb", [False, True], ids=["grey", "rgb"])
    @pytest.mark.parametrize("level", [0, 3, 9])
    def test_opencv_written(self, dtype, rgb, level):
        pixels = _random((37, 53, 3) if rgb else (37, 53), dtype)
        # OpenCV picks a filter per row (adaptive), as the original imagingDB's frames have; channels reversed.
        ok, data = cv2.imencode(".png", pixels[..., ::-1] if rgb else pixels, [cv2.IMWRITE_PNG_COMPRESSION, level])
        data = data.tobytes()
        np.testing.assert_array_equal(decode_png(data), pixels)

    def test_pillow_written(self):
        pixels = _random((37, 53, 3), "uint8")
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        np.testing.assert_array_equal(decode_png(buffer.getvalue()), pixels)

    @pytest.mark.parametrize("filter_type", [0, 2, 3, 4])
    def test_other_filter_in_one_row(self, filter_type):
        pixels = _random((6, 5), "uint16", seed=filter_type)
        rows = bytearray(zlib.decompress(_idat(encode_png(pixels))))
        # Row 3 stored unfiltered (type 0) decodes the same whatever filter type the others claim only if
        # handled per row: make row 3 unfiltered, the rest Sub, and check both decoders agree.
        row_bytes = 1 + 5 * 2
        big = pixels.astype(">u2").view(np.uint8).reshape(6, 10)
        rows[3 * row_bytes:4 * row_bytes] = bytes([0]) + big[3].tobytes()
        if filter_type:
            rows[3 * row_bytes] = filter_type
            rows[3 * row_bytes + 1:4 * row_bytes] = _filter(filter_type, big[3], big[2], 2)
        data = _png(struct.pack(">IIBBBBB", 5, 6, 16, 0, 0, 0, 0), bytes(rows))
        np.testing.assert_array_equal(decode_png(data), _opencv(data))
        np.testing.assert_array_equal(decode_png(data), pixels)

    def test_ancillary_chunk_goes_to_opencv(self, monkeypatch):
        pixels = _random((6, 5), "uint8")
        rows = zlib.decompress(_idat(encode_png(pixels)))
        data = _png(struct.pack(">IIBBBBB", 5, 6, 8, 0, 0, 0, 0), rows, _chunk(b"tEXt", b"k\0v"))
        np.testing.assert_array_equal(decode_png(data), pixels)

    @pytest.mark.parametrize("depth, color", [(1, 0), (4, 0), (8, 3), (8, 4), (8, 6), (16, 6)])
    def test_other_layouts_as_opencv(self, depth, color):
        pixels = _random((9, 11, 4) if color == 6 else (9, 11), "uint16" if depth == 16 else "uint8")
        if color == 6:
            data = cv2.imencode(".png", pixels)[1].tobytes()
        else:
            image = Image.fromarray(pixels.astype(np.uint8))
            image = {1: image.convert("1"), 4: image.convert("L"), 8: image}[depth] if color == 0 else image
            if color == 3:
                image = image.convert("P")
            if color == 4:
                image = image.convert("LA")
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            data = buffer.getvalue()
        np.testing.assert_array_equal(decode_png(data), _opencv(data))

    def test_interlaced(self):
        pixels = _random((20, 30), "uint8")
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", interlace=1)  # Pillow may ignore; then still a PNG
        np.testing.assert_array_equal(decode_png(buffer.getvalue()), pixels)
        rows = zlib.decompress(_idat(encode_png(pixels)))
        assert png_module._own_layout(_png(struct.pack(">IIBBBBB", 30, 20, 8, 0, 0, 0, 1), rows)) is None


def _idat(data: bytes) -> bytes:
    pos, found = 8, []
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            found.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    return b"".join(found)


def _filter(kind: int, row: np.ndarray, above: np.ndarray, bpp: int) -> bytes:
    row, above = row.astype(int), above.astype(int)
    left = np.concatenate([np.zeros(bpp, int), row[:-bpp]])
    upper_left = np.concatenate([np.zeros(bpp, int), above[:-bpp]])
    if kind == 2:
        predicted = above
    elif kind == 3:
        predicted = (left + above) // 2
    else:
        p = left + above - upper_left
        pa, pb, pc = abs(p - left), abs(p - above), abs(p - upper_left)
        predicted = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, upper_left))
    return bytes(((row - predicted) % 256).astype(np.uint8))


class TestCorrupt:
    """Damaged PNGs raise the same IntegrityError as before, whatever the decoder."""

    @pytest.fixture
    def data(self) -> bytes:
        return encode_png(_random((64, 48), "uint16", seed=7))

    @pytest.mark.parametrize("cut", [0, 8, 20, 33, 60, 200, -20, -12, -1])
    def test_truncated(self, data, cut):
        with pytest.raises(IntegrityError, match="^frame x is not a readable PNG$"):
            decode_png(data[:cut], what="frame x")

    @pytest.mark.parametrize("where", [40, 100, 1000, 3000])
    def test_flipped_byte_in_compressed_data(self, data, where):
        damaged = bytearray(data)
        damaged[where] ^= 0x55
        with pytest.raises(IntegrityError, match="^frame x is not a readable PNG$"):
            decode_png(bytes(damaged), what="frame x")

    def test_damaged_stream_with_good_crc(self, data):
        rows = bytearray(zlib.decompress(_idat(data)))
        short = _png(struct.pack(">IIBBBBB", 48, 64, 16, 0, 0, 0, 0), bytes(rows[:-100]))
        with pytest.raises(IntegrityError, match="^frame x is not a readable PNG$"):
            decode_png(short, what="frame x")

    def test_corrupt_into(self, data):
        out = np.zeros((64, 48), np.uint16)
        with pytest.raises(IntegrityError, match="^frame x is not a readable PNG$"):
            decode_png_into(data[:len(data) // 2], out, what="frame x")


def test_own_pngs_do_not_load_opencv(tmp_path):
    import subprocess

    pixels = _random((30, 40), "uint16")
    (tmp_path / "f.png").write_bytes(encode_png(pixels))
    code = ("import sys; import numpy as np; from imaging_db.images.png import decode_png; "
            f"decode_png(open({str(tmp_path / 'f.png')!r}, 'rb').read()); print('cv2' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
