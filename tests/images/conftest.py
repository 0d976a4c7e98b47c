"""Fixtures for the splitter tests: a counter of TIFF page reads, to prove frames stream."""

import numpy as np
import pytest
import tifffile

from imaging_db.example_data import frame_pixels
from imaging_db.images.pixels import Pixels


@pytest.fixture
def page_reads(monkeypatch) -> list[int]:
    """Record the index of every TIFF page whose pixels are decoded, in order."""
    reads: list[int] = []
    for cls in (tifffile.TiffPage, tifffile.TiffFrame):
        original = cls.asarray

        def counting(self, *args, _original=original, **kwargs):
            reads.append(self.index)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "asarray", counting)
    return reads


@pytest.fixture
def check_pixels():
    """Return a function asserting each frame holds exactly ``frame_pixels`` of its indices, as a Pixels."""

    def check(frames, shape=(64, 48), dtype="uint16", seed=0, channel_map=None):
        assert frames
        for frame in frames:
            c = channel_map[frame.channel_name] if channel_map else frame.channel_idx
            expected = frame_pixels(c, frame.slice_idx, frame.time_idx, frame.pos_idx, shape, dtype, seed)
            assert isinstance(frame.pixels, Pixels), frame.where
            assert frame.pixels.dtype == expected.dtype, frame.where
            np.testing.assert_array_equal(frame.pixels, expected, err_msg=frame.where)

    return check
