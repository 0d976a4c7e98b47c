"""Damaged TIFFs are refused while scanning (``frames(read_pixels=False)``), with one error naming the file.

tifffile reads what it can of a damaged file and logs the rest: a file cut
where a page's IFD begins reads as a file with fewer pages. The splitters
check the IFD chain and every page's tags themselves (so the checks hold with
logging disabled) and turn tifffile's reports into the error instead of log lines.
"""

import json
import logging
import re
import struct
import threading

import numpy as np
import pytest
import tifffile

from imaging_db.errors import InputError
from imaging_db.example_data import frame_pixels, write_imagej_stack, write_mm_ometiff
from imaging_db.images.splitters import make_splitter
from imaging_db.images.splitters.base import printable_path
from imaging_db.images.splitters.micromanager import micromanager_indices
from imaging_db.images.splitters.tiff_pages import _DamageReports

DATASET = "ML-2018-11-07-09-35-54-0010"
SHAPE = (16, 24)


def _scan(fmt, path):
    return list(make_splitter(fmt, path, DATASET).frames(read_pixels=False))


@pytest.fixture
def ome_file(tmp_path):
    (path,) = write_mm_ometiff(tmp_path / "acq", ["GFP"], 3, 1, 1, shape=SHAPE)
    return path


def _cut(path, size, name="cut.ome.tif"):
    cut = path.parent / name
    cut.write_bytes(path.read_bytes()[:size])
    return cut


@pytest.fixture(params=[False, True], ids=["logging", "logging-disabled"])
def logging_state(request):
    """Run with tifffile's reports, and with logging disabled (only the splitter's own checks then)."""
    if request.param:
        logging.disable(logging.CRITICAL)
    yield request.param
    logging.disable(logging.NOTSET)


class TestCutShort:
    def test_file_cut_where_a_page_begins(self, ome_file, logging_state):
        with tifffile.TiffFile(ome_file) as tif:
            offset = tif.pages[2].offset
        cut = _cut(ome_file, offset)
        with tifffile.TiffFile(cut) as tif:
            assert len(tif.pages) == 2  # what tifffile alone makes of it: a file of two pages
        with pytest.raises(InputError, match=rf"dataset {DATASET}: .*cut.ome.tif: is a damaged TIFF, cut short\?"):
            _scan("ome_tiff", cut)

    def test_tag_value_beyond_the_end(self, tmp_path, logging_state):
        (one_page,) = write_mm_ometiff(tmp_path / "one", ["GFP"], 1, 1, 1, shape=SHAPE)
        with tifffile.TiffFile(one_page) as tif:
            mm_tag = tif.pages[0].tags[51123]
            end = mm_tag.valueoffset + mm_tag.count // 2  # the first page's MicroManagerMetadata cut in half
        expected = r"cut.ome.tif: is a damaged TIFF, cut short\? \((page 0: only \d+ of its \d+ tags|tifffile: )"
        with pytest.raises(InputError, match=expected):
            _scan("ome_tiff", _cut(one_page, end))

    def test_reports_are_the_error_not_log_lines(self, ome_file, caplog):
        with tifffile.TiffFile(ome_file) as tif:
            offset = tif.pages[1].offset
        with caplog.at_level(logging.WARNING), pytest.raises(InputError, match=r"\(tifffile: <tifffile.TiffPages"):
            _scan("ome_tiff", _cut(ome_file, offset))
        assert [r for r in caplog.records if r.name == "tifffile"] == []

    def test_other_threads_reports_pass(self, tmp_path, caplog):
        reports = _DamageReports(tmp_path / "a.tif")

        def record(message):
            return logging.LogRecord("tifffile", logging.ERROR, __file__, 1, message, None, None)

        damage = "<tifffile.TiffPages @8> invalid page offset 99"
        passed = []
        thread = threading.Thread(target=lambda: passed.append(reports.filter(record(damage))))
        thread.start()
        thread.join()
        assert passed == [True] and reports.problems == []
        assert reports.filter(record(damage)) is False and reports.problems == [damage]
        # tifffile's other warnings, about tags imaging_db does not use, go to debug: no line on stderr
        with caplog.at_level(logging.DEBUG, logger="imaging_db"):
            assert reports.filter(record("<tifffile.TiffTag 296 @8> raised ValueError('7 is not a valid RESUNIT')")) \
                is False
        assert reports.problems == [damage]
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
            (logging.DEBUG, f"{tmp_path / 'a.tif'}: tifffile: <tifffile.TiffTag 296 @8> raised ValueError("
                            "'7 is not a valid RESUNIT')")]

    def test_whole_file_passes(self, ome_file):
        assert len(_scan("ome_tiff", ome_file)) == 3

    def test_imagej_stack_without_its_trailing_ifds_is_read_whole(self, tmp_path):
        """ImageJ writes the pixels first, then the IFDs: without the trailing IFDs the data is all there."""
        stack = write_imagej_stack(tmp_path / "stack.tif", 1, 3, shape=SHAPE)
        with tifffile.TiffFile(stack) as tif:
            offsets = [page.offset for page in tif.pages]
            data_end = tif.pages[-1].dataoffsets[0] + tif.pages[-1].databytecounts[0]
        assert offsets[1] >= data_end
        cut = _cut(stack, offsets[1], "cut.tif")
        assert len(_scan("tif_id", cut)) == 3
        for frame in make_splitter("tif_id", cut, DATASET).frames():
            np.testing.assert_array_equal(frame.pixels, frame_pixels(0, frame.slice_idx, 0, 0, SHAPE))

    def test_imagej_stack_cut_inside_its_pixels(self, tmp_path):
        stack = write_imagej_stack(tmp_path / "stack.tif", 1, 3, shape=SHAPE)
        with tifffile.TiffFile(stack) as tif:
            inside = tif.pages[-1].dataoffsets[0] + 10
        with pytest.raises(InputError, match=r"cut.tif: cannot map its contiguous ImageJ data: the file has"):
            _scan("tif_id", _cut(stack, inside, "cut.tif"))

    def test_strips_shorter_than_the_frame(self, tmp_path):
        """A width damaged in the header would make the frame read bytes beyond its strips."""
        (path,) = write_mm_ometiff(tmp_path / "acq", ["GFP"], 1, 1, 1, shape=SHAPE)
        with tifffile.TiffFile(path) as tif:
            width_tag = tif.pages[0].tags["ImageWidth"]
        data = bytearray(path.read_bytes())
        data[width_tag.offset + 8:width_tag.offset + 10] = struct.pack("<H", 2 * SHAPE[1])
        path.write_bytes(bytes(data))
        with pytest.raises(InputError, match=rf"page 0: its pixel data is {SHAPE[0] * SHAPE[1] * 2} bytes but a "
                                             rf"uint16 frame of shape \({SHAPE[0]}, {2 * SHAPE[1]}\) needs"):
            _scan("ome_tiff", path)

    def test_empty_ifd(self, tmp_path):
        path = tmp_path / "empty.tif"
        path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0) + struct.pack("<I", 0))
        with pytest.raises(InputError, match=r"empty.tif: page 0 holds no image"):
            _scan("tif_id", path)


class TestCompressedPages:
    def _write(self, path, pages, compression="zlib"):
        with tifffile.TiffWriter(path) as tif:
            for z, pixels in enumerate(pages):
                meta = {"ChannelIndex": 0, "SliceIndex": z, "FrameIndex": 0, "PositionIndex": 0, "Channel": "GFP"}
                tif.write(pixels, compression=compression, metadata=None,
                          extratags=[(51123, "s", 0, json.dumps(meta), True)])
        return path

    def test_corrupt_data_is_found_by_the_scan(self, tmp_path):
        path = self._write(tmp_path / "a.ome.tif", [frame_pixels(0, z, 0, 0, SHAPE) for z in range(2)])
        with tifffile.TiffFile(path) as tif:
            offset, count = tif.pages[1].dataoffsets[0], tif.pages[1].databytecounts[0]
        data = bytearray(path.read_bytes())
        data[offset:offset + count] = b"\xff" * count
        path.write_bytes(bytes(data))
        with pytest.raises(InputError, match=r"a.ome.tif: page 1: cannot decode its pixels \(error: Error -3"):
            _scan("ome_tiff", path)

    def test_good_pages_are_decoded_in_the_scan_and_again_when_uploaded(self, tmp_path, page_reads):
        pages = [frame_pixels(0, z, 0, 0, SHAPE) for z in range(2)]
        path = self._write(tmp_path / "a.ome.tif", pages)
        frames = _scan("ome_tiff", path)
        assert page_reads == [0, 1]
        assert [(f.shape, f.dtype) for f in frames] == [(SHAPE, np.dtype(np.uint16))] * 2
        for frame in make_splitter("ome_tiff", path, DATASET).frames():
            np.testing.assert_array_equal(frame.pixels, pages[frame.slice_idx])

    def test_unsupported_compressed_page_is_refused_without_decoding(self, tmp_path, page_reads):
        path = self._write(tmp_path / "a.ome.tif", [np.zeros(SHAPE, np.int32)])
        with pytest.raises(InputError, match=r"page 0 has int32 pixels"):
            _scan("ome_tiff", path)
        assert page_reads == []


class TestMicroManagerIndices:
    META = {"ChannelIndex": 0, "SliceIndex": 1, "FrameIndex": 2, "PositionIndex": 3}

    @pytest.mark.parametrize("value, index", [(4, 4), ("4", 4), (4.0, 4), (-1, -1)])
    def test_integers(self, value, index):
        assert micromanager_indices({**self.META, "SliceIndex": value})[1] == index

    @pytest.mark.parametrize("value", [1.5, True, "one", "1.0", [1]])
    def test_not_integers(self, value):
        with pytest.raises(ValueError, match=rf"MicroManagerMetadata SliceIndex = {re.escape(repr(value))} "
                                             "is not an integer"):
            micromanager_indices({**self.META, "SliceIndex": value})


def test_printable_path_shows_bytes_that_are_not_utf8():
    assert printable_path(b"/data/img_G\xffFP.tif".decode("utf-8", "surrogateescape")) == "/data/img_G\\xffFP.tif"
    assert printable_path("/data/café.tif") == "/data/café.tif"
