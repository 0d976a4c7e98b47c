"""Lossless PNG encoding and decoding of uint8/uint16 grayscale and RGB frames."""

import cv2
import numpy as np

from imaging_db.errors import InputError, IntegrityError

STORABLE_DTYPES = (np.uint8, np.uint16)


def encode_png(pixels: np.ndarray, compression: int | None = None) -> bytes:
    """Encode a frame as PNG, bit-exactly.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(height, width)`` grayscale or ``(height, width, 3)`` RGB, uint8 or uint16.
    compression : int, optional
        zlib level 0-9; default OpenCV's.

    Raises
    ------
    InputError
        On an unsupported shape or dtype.
    """
    if pixels.dtype not in STORABLE_DTYPES:
        raise InputError(f"cannot store {pixels.dtype} pixels as PNG: only uint8 and uint16")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        # OpenCV writes BGR order; flip so the PNG holds true RGB.
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])
    elif pixels.ndim != 2:
        raise InputError(f"cannot store a frame of shape {pixels.shape} as PNG: need 2D grayscale or RGB")
    params = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
    ok, buffer = cv2.imencode(".png", pixels, params)
    if not ok:
        raise InputError(f"OpenCV could not encode a {pixels.dtype} frame of shape {pixels.shape} as PNG")
    return buffer.tobytes()


def decode_png(data: bytes, what: str = "PNG") -> np.ndarray:
    """Decode PNG bytes into ``(height, width)`` or ``(height, width, 3)`` RGB pixels.

    Raises
    ------
    IntegrityError
        If the bytes are not a decodable PNG.
    """
    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV asserts instead of returning None on an empty buffer
        pixels = None
    if pixels is None:
        raise IntegrityError(f"{what} is not a readable PNG")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])
    return pixels
