"""Lossless PNG encoding and decoding of uint8/uint16 grayscale and RGB frames.

Encoding writes the PNG container here and leaves the hard parts to libraries:
each row gets PNG's Sub filter (computed with numpy, a strip of rows at a
time, so the working memory stays small whatever the frame size) and the
filtered rows are deflated by ISA-L (``isal``) at its level 3 by default. On
fluorescence frames that is about 2.5 times faster than OpenCV's fastest PNG
setting and a little smaller (``benchmarks/png_settings.py`` measures both).
An explicit zlib level 0-9 uses the standard zlib instead. Both compressors
release the GIL, so frames encode in parallel threads.

Decoding uses OpenCV, imported only when needed.
"""

import struct
import zlib
from typing import Iterator

import numpy as np
from isal import isal_zlib

from imaging_db.errors import InputError, IntegrityError
from imaging_db.images.pixels import Pixels, as_pixels

STORABLE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))
# PNG (and the im_width/im_height columns) take at most 2**31 - 1 pixels on a side.
MAX_SIDE = 2**31 - 1

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_ISAL_LEVEL = 3
# PNG colour types and filter types (PNG specification, sections 11.2.2 and 9.2)
_GRAY, _RGB = 0, 2
_FILTER_SUB = 1
# Rows are filtered and fed to the compressor in strips of about this many bytes,
# and the compressed data is written in IDAT chunks of about _IDAT_BYTES.
_STRIP_BYTES = 256 * 1024
_IDAT_BYTES = 256 * 1024


def storable_dtype(dtype: np.dtype) -> bool:
    """Whether PNG stores samples of this dtype as they are: uint8 or uint16, native byte order.

    With ``storable_shape``, PNG's rule: encode_png and the splitters' checks both ask these two.
    """
    return dtype in STORABLE_DTYPES


def storable_shape(shape: tuple[int, ...]) -> bool:
    """Whether PNG stores a frame of this shape: ``(height, width)`` grayscale or ``(height, width, 3)`` RGB."""
    return len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)


def _chunk(kind: bytes, *pieces: bytes) -> list[bytes]:
    """Return a PNG chunk whose data are ``pieces`` joined, as a list of pieces (joined once, by the caller)."""
    crc = isal_zlib.crc32(kind)
    for piece in pieces:
        crc = isal_zlib.crc32(piece, crc)
    return [struct.pack(">I", sum(len(piece) for piece in pieces)), kind, *pieces, struct.pack(">I", crc)]


def _check_storable(pixels: Pixels) -> int:
    """Return the number of channels of a storable frame, or raise InputError."""
    if not storable_dtype(pixels.dtype):
        raise InputError(f"cannot store {pixels.dtype} pixels as PNG: only uint8 and uint16")
    if not storable_shape(pixels.shape):
        raise InputError(f"cannot store a frame of shape {pixels.shape} as PNG: need 2D grayscale or RGB")
    return 1 if len(pixels.shape) == 2 else 3


def encode_png(pixels: np.ndarray | Pixels, compression: int | None = None) -> bytes:
    """Encode a frame as PNG, bit-exactly.

    Parameters
    ----------
    pixels : numpy.ndarray or Pixels
        ``(height, width)`` grayscale or ``(height, width, 3)`` RGB, uint8 or
        uint16; read a strip of rows at a time (pixels left in a file too).
    compression : int, optional
        zlib level 0-9 (standard zlib); default ISA-L level 3, the fastest.

    Raises
    ------
    InputError
        On an unsupported shape or dtype, an empty frame, or pixels whose file cannot be read.
    """
    return b"".join(png_pieces(pixels, compression))


def png_pieces(pixels: np.ndarray | Pixels, compression: int | None = None) -> Iterator[bytes]:
    """Encode a frame as PNG, as an iterator over the pieces of the file, in order.

    The compressed rows come out as they are produced, in IDAT chunks of
    about _IDAT_BYTES, so a caller that writes them away holds no whole PNG.
    Parameters and errors as for ``encode_png``; shape and dtype are checked
    before the iterator is returned.
    """
    pixels = as_pixels(pixels)
    channels = _check_storable(pixels)
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise InputError(f"cannot store an empty frame of shape {pixels.shape} as PNG")
    return _pieces(pixels, channels, compression)


def _pieces(pixels: Pixels, channels: int, compression: int | None) -> Iterator[bytes]:
    height, width = pixels.shape[:2]
    sample = pixels.dtype.itemsize
    header = struct.pack(">IIBBBBB", width, height, 8 * sample, _GRAY if channels == 1 else _RGB, 0, 0, 0)
    yield b"".join([PNG_SIGNATURE, *_chunk(b"IHDR", header)])
    if compression is None:
        compressor = isal_zlib.compressobj(DEFAULT_ISAL_LEVEL)
    else:
        compressor = zlib.compressobj(int(compression))
    pixel_bytes = channels * sample
    row_bytes = width * pixel_bytes
    strip_rows = max(1, min(height, _STRIP_BYTES // row_bytes))
    # PNG stores samples big-endian; a strip is read into this buffer in that order.
    big_endian = np.empty((strip_rows, *pixels.shape[1:]), dtype=pixels.dtype.newbyteorder(">"))
    source_rows = big_endian.view(np.uint8).reshape(strip_rows, row_bytes)
    filtered = np.empty((strip_rows, 1 + row_bytes), dtype=np.uint8)
    filtered[:, 0] = _FILTER_SUB
    pending: list[bytes] = []
    pending_bytes = 0
    with pixels.rows() as read_rows:
        for first in range(0, height, strip_rows):
            rows = min(strip_rows, height - first)
            read_rows(first, big_endian[:rows])
            raw, out = source_rows[:rows], filtered[:rows]
            # Sub: each byte minus the same byte of the pixel to its left, modulo 256.
            out[:, 1:1 + pixel_bytes] = raw[:, :pixel_bytes]
            np.subtract(raw[:, pixel_bytes:], raw[:, :-pixel_bytes], out=out[:, 1 + pixel_bytes:])
            piece = compressor.compress(out)
            if piece:
                pending.append(piece)
                pending_bytes += len(piece)
            if pending_bytes >= _IDAT_BYTES:
                yield b"".join(_chunk(b"IDAT", *pending))
                pending, pending_bytes = [], 0
    pending.append(compressor.flush())
    yield b"".join([*_chunk(b"IDAT", *pending), *_chunk(b"IEND")])


def decode_png(data: bytes, what: str = "PNG") -> np.ndarray:
    """Decode PNG bytes into ``(height, width)`` or ``(height, width, 3)`` RGB pixels.

    Raises
    ------
    IntegrityError
        If the bytes are not a decodable PNG.
    """
    import cv2  # imported here: uploads and downloads never decode

    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV asserts instead of returning None on an empty buffer
        pixels = None
    if pixels is None:
        raise IntegrityError(f"{what} is not a readable PNG")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])  # OpenCV returns BGR order
    return pixels
