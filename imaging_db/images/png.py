"""Lossless PNG encoding and decoding of uint8/uint16 grayscale and RGB frames.

Encoding writes the PNG container here and leaves the hard parts to libraries:
each row gets PNG's Sub filter (computed with numpy, a strip of rows at a
time, so the working memory stays small whatever the frame size) and the
filtered rows are deflated by ISA-L (``isal``) at its level 3 by default. On
fluorescence frames that is about 2.5 times faster than OpenCV's fastest PNG
setting and a little smaller (``benchmarks/png_settings.py`` measures both).
An explicit zlib level 0-9 uses the standard zlib instead. Both compressors
release the GIL, so frames encode in parallel threads.

Decoding reads PNGs of that layout itself: the IDAT stream is inflated by
ISA-L (which releases the GIL) a strip of rows at a time, and the Sub filter
is undone with numpy straight into the caller's array (a running sum along
each row, modulo 256, byte by byte; 16-bit samples land byte-swapped to the
native order as they are written). That is about twice as fast as OpenCV
(``benchmarks/bench_api.py`` measures the floor). Any other PNG (other
filters, interlaced, palette, other bit depths or chunks: the original
imagingDB's OpenCV-written frames) goes to OpenCV, imported only then.
"""

import struct
import sys
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
# Decoding inflates at most about this many bytes of rows at a time (a whole frame of the usual sizes:
# each call into ISA-L costs a copy of the compressed data left, so fewer, larger steps are faster).
_INFLATE_BYTES = 8 * 2**20
_IHDR_END = 8 + 8 + 13 + 4  # signature, IHDR length and type, its 13 bytes, its CRC


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
    layout = _own_layout(data)
    if layout is not None:
        shape, dtype, _ = layout
        pixels = np.empty(shape, dtype=dtype)
        if _inflate_into(data, layout, pixels):
            return pixels
    return _decode_opencv(data, what)


def decode_png_into(data: bytes, out: np.ndarray, what: str = "PNG") -> np.ndarray:
    """Decode PNG bytes into ``out``, a writable array (or view) of the frame's shape and dtype.

    Returns ``out``; or, when the PNG holds pixels of another shape or dtype,
    those pixels, with ``out`` untouched (the caller says what it expected).

    Raises
    ------
    IntegrityError
        If the bytes are not a decodable PNG.
    """
    layout = _own_layout(data)
    if layout is not None:
        shape, dtype, _ = layout
        if shape != out.shape or dtype != out.dtype or not out.flags.c_contiguous:
            pixels = decode_png(data, what)
            if pixels.shape == out.shape and pixels.dtype == out.dtype:
                out[...] = pixels
                return out
            return pixels
        if _inflate_into(data, layout, out):
            return out
    pixels = _decode_opencv(data, what)
    if pixels.shape != out.shape or pixels.dtype != out.dtype:
        return pixels
    out[...] = pixels
    return out


def _own_layout(data: bytes) -> tuple[tuple[int, ...], np.dtype, list[tuple[int, int]]] | None:
    """``(shape, dtype, IDAT spans)`` of a PNG laid out as ``png_pieces`` writes them, else None.

    That is: grey or RGB, 8 or 16 bits, not interlaced, only IHDR, IDAT and
    IEND chunks, every CRC right. Anything else is left to OpenCV, which
    decides what it holds or that it is unreadable.
    """
    view = memoryview(data)
    if len(view) < _IHDR_END or view[:8] != PNG_SIGNATURE or view[8:16] != b"\0\0\0\rIHDR":
        return None
    width, height, depth, color, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", view, 16)
    if (not 0 < width <= MAX_SIDE or not 0 < height <= MAX_SIDE or depth not in (8, 16)
            or color not in (_GRAY, _RGB) or compression or filtering or interlace
            or isal_zlib.crc32(view[12:29]) != struct.unpack_from(">I", view, 29)[0]):
        return None
    spans, pos = [], _IHDR_END
    while True:
        if pos + 12 > len(view):
            return None
        length, kind = struct.unpack_from(">I4s", view, pos)
        end = pos + 8 + length
        if end + 4 > len(view) or isal_zlib.crc32(view[pos + 4:end]) != struct.unpack_from(">I", view, end)[0]:
            return None
        if kind == b"IEND":
            break
        if kind != b"IDAT" or (spans and spans[-1][1] != pos - 4):  # IDAT chunks must be consecutive
            return None
        spans.append((pos + 8, end))
        pos = end + 4
    if not spans or length:
        return None
    shape = (height, width) if color == _GRAY else (height, width, 3)
    return shape, np.dtype(np.uint8 if depth == 8 else ">u2").newbyteorder("="), spans


def _inflate_into(data: bytes, layout: tuple, out: np.ndarray) -> bool:
    """Inflate and unfilter a PNG of ``_own_layout`` into ``out``; False (out partly written) if it is not ours after all.

    Not ours: a row with another filter than Sub, or a compressed stream that
    is not exactly the rows (too short, too long, bad checksum). OpenCV then
    decides.
    """
    shape, dtype, spans = layout
    height, width = shape[:2]
    channels = 1 if len(shape) == 2 else 3
    sample = dtype.itemsize
    pixel_bytes = channels * sample
    row_bytes = 1 + width * pixel_bytes
    strip_rows = max(1, min(height, _INFLATE_BYTES // row_bytes))
    # Each row's bytes, as (pixel, channel, sample byte), in PNG's big-endian order: a little-endian
    # array's bytes are walked in reverse within each sample, so the swap costs nothing.
    target = out.reshape(height, width, channels).view(np.uint8).reshape(height, width, channels, sample)
    if sample > 1 and sys.byteorder == "little":
        target = target[..., ::-1]
    view = memoryview(data)
    pending = view[spans[0][0]:spans[0][1]] if len(spans) == 1 else b"".join(view[a:b] for a, b in spans)
    inflater = isal_zlib.decompressobj()
    try:
        for first in range(0, height, strip_rows):
            rows = min(strip_rows, height - first)
            raw = inflater.decompress(pending, rows * row_bytes)
            pending = inflater.unconsumed_tail
            if len(raw) != rows * row_bytes:
                return False
            filtered = np.frombuffer(raw, dtype=np.uint8).reshape(rows, row_bytes)
            if (filtered[:, 0] != _FILTER_SUB).any():
                return False
            # Sub: each byte plus the same byte of the pixel to its left, modulo 256: a running sum per byte.
            np.cumsum(filtered[:, 1:].reshape(rows, width, channels, sample), axis=1, dtype=np.uint8,
                      out=target[first:first + rows])
        tail = inflater.decompress(pending) + inflater.flush()
    except isal_zlib.error:
        return False
    return not tail and inflater.eof and not inflater.unused_data


def _decode_opencv(data: bytes, what: str) -> np.ndarray:
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
