"""tif_id on ImageJ hyperstacks larger than 4 GB, whose IFDs ImageJ writes only for the first image."""

import struct

import numpy as np
import pytest
import tifffile

from imaging_db.errors import InputError
from imaging_db.example_data import frame_pixels, write_imagej_stack
from imaging_db.images.file_pixels import FilePixels
from imaging_db.images.splitters import make_splitter

SHAPE = (40, 56)


def cut_ifd_chain(path):
    """Make the first IFD the last, as ImageJ does for big hyperstacks: data stays contiguous."""
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].offset
    data = bytearray(path.read_bytes())
    nbr_tags = struct.unpack_from("<H", data, offset)[0]
    struct.pack_into("<I", data, offset + 2 + 12 * nbr_tags, 0)
    path.write_bytes(bytes(data))


def test_single_ifd_hyperstack_is_read_frame_by_frame(tmp_path):
    path = write_imagej_stack(tmp_path / "big.tif", nbr_channels=2, nbr_slices=3, nbr_times=2, shape=SHAPE)
    cut_ifd_chain(path)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 1 and tif.imagej_metadata["images"] == 12
    frames = list(make_splitter("tif_id", path, "ML-2018-11-07-09-35-54-0010").frames())
    assert [f.indices for f in frames] == [(c, z, t, 0) for t in range(2) for z in range(3) for c in range(2)]
    for frame in frames:
        assert isinstance(frame.pixels, FilePixels) and frame.pixels.dtype == np.uint16
        assert np.array_equal(np.asarray(frame.pixels), frame_pixels(*frame.indices, SHAPE))


def test_single_ifd_hyperstack_truncated_file_is_an_error(tmp_path):
    path = write_imagej_stack(tmp_path / "big.tif", nbr_channels=2, nbr_slices=3, shape=SHAPE)
    cut_ifd_chain(path)
    path.write_bytes(path.read_bytes()[: -SHAPE[0] * SHAPE[1]])  # lose half of the last image
    with pytest.raises(InputError, match=r"ML-2018-11-07-09-35-54-0010: .*big\.tif: cannot map"):
        list(make_splitter("tif_id", path, "ML-2018-11-07-09-35-54-0010").frames())
