"""Choosing a splitter: each format's can_read, frames_format omitted or "auto", and the registry."""

import logging
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import tifffile

from imaging_db.errors import InputError
from imaging_db.example_data import write_imagej_stack, write_mm_ometiff, write_tif_folder
from imaging_db.images.splitters import (
    SPLITTERS,
    Frame,
    OmeTiffSplitter,
    Splitter,
    TifFolderSplitter,
    TifIdSplitter,
    make_splitter,
    splitter_names,
)

DATASET = "ML-2018-11-07-09-35-54-0010"


def _ome_file(tmp_path: Path) -> Path:
    (path,) = write_mm_ometiff(tmp_path / "acq", ["GFP"], nbr_slices=2, nbr_times=1, nbr_positions=1)
    return path


def _ome_folder(tmp_path: Path) -> Path:
    write_mm_ometiff(tmp_path / "acq", ["DAPI", "GFP"], nbr_slices=1, nbr_times=1, nbr_positions=2)
    return tmp_path / "acq"


def _tif_folder(tmp_path: Path) -> Path:
    write_tif_folder(tmp_path / "seq", ["DAPI", "GFP"], nbr_slices=2)
    return tmp_path / "seq"


def _named_tif_folder(tmp_path: Path) -> Path:
    """Indices from the file names only: no MicroManagerMetadata tags, no metadata.txt."""
    write_tif_folder(tmp_path / "seq", ["GFP"], nbr_slices=2, mm_tags=False, metadata_txt=False)
    return tmp_path / "seq"


def _hyperstack(tmp_path: Path) -> Path:
    return write_imagej_stack(tmp_path / "stack.tif", nbr_channels=2, nbr_slices=2)


def _plain_stack(tmp_path: Path) -> Path:
    """A multi-page TIFF without any metadata: tif_id reads it as a z-stack."""
    path = tmp_path / "plain.TIFF"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), metadata=None, photometric="minisblack")
    return path


# What each input is, and which formats can read it.
INPUTS = {
    "ome_file": (_ome_file, "ome_tiff"),
    "ome_folder": (_ome_folder, "ome_tiff"),
    "tif_folder": (_tif_folder, "tif_folder"),
    "named_tif_folder": (_named_tif_folder, "tif_folder"),
    "hyperstack": (_hyperstack, "tif_id"),
    "plain_stack": (_plain_stack, "tif_id"),
}


class TestCanRead:
    @pytest.mark.parametrize("kind", list(INPUTS))
    def test_exactly_the_right_format_reads_each_input(self, tmp_path, kind):
        write, frames_format = INPUTS[kind]
        path = write(tmp_path)
        assert {name for name, cls in SPLITTERS.items() if cls.can_read(path)} == {frames_format}

    def test_a_single_file_of_a_micro_manager_folder_is_ome_tiff(self, tmp_path):
        files = write_mm_ometiff(tmp_path / "acq", ["GFP"], nbr_slices=4, nbr_times=1, nbr_positions=1,
                                 max_pages_per_file=2)
        assert OmeTiffSplitter.can_read(files[1])  # a continuation file: no OME-XML, tags on every page
        assert not TifIdSplitter.can_read(files[1])

    def test_ome_tiff_without_micro_manager_tags_is_ome_tiff(self, tmp_path):
        """Its indices are in its OME-XML, which ome_tiff follows (issue 11): never read as a tif_id z-stack."""
        path = tmp_path / "bioformats.ome.tif"
        tifffile.imwrite(path, np.zeros((2, 3, 8, 8), np.uint16), ome=True, metadata={"axes": "CZYX"})
        assert [cls for cls in SPLITTERS.values() if cls.can_read(path)] == [OmeTiffSplitter]

    @pytest.mark.parametrize("cls", [OmeTiffSplitter, TifFolderSplitter, TifIdSplitter])
    def test_what_no_format_reads(self, tmp_path, cls):
        (tmp_path / "empty").mkdir()
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "a.txt").write_text("no images")
        (tmp_path / "garbage.tif").write_bytes(b"not a TIFF at all")
        tifffile.imwrite(tmp_path / "image.png", np.zeros((4, 4), np.uint8))  # a TIFF, but not by its name
        for path in ["empty", "notes", "garbage.tif", "image.png", "missing.tif"]:
            assert not cls.can_read(tmp_path / path), path

    def test_a_damaged_tiff_is_left_to_reading_to_report(self, tmp_path, caplog):
        """What tifffile logs while can_read looks goes to debug; the chosen splitter names the damage."""
        path = _hyperstack(tmp_path)
        path.write_bytes(path.read_bytes()[:200])
        with caplog.at_level("DEBUG"):
            splitter = make_splitter("auto", path, DATASET)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert type(splitter) is TifIdSplitter
        with pytest.raises(InputError, match=r"is a damaged TIFF, cut short\?"):
            list(splitter.frames(read_pixels=False))


class TestAuto:
    @pytest.mark.parametrize("frames_format", [None, "auto"])
    @pytest.mark.parametrize("kind", list(INPUTS))
    def test_chooses_the_format_that_reads_it(self, tmp_path, kind, frames_format):
        write, expected = INPUTS[kind]
        path = write(tmp_path)
        splitter = make_splitter(frames_format, path, DATASET)
        assert type(splitter) is SPLITTERS[expected]
        assert list(splitter.frames(read_pixels=False))

    def test_positions_go_to_the_chosen_splitter(self, tmp_path):
        assert make_splitter("auto", _ome_folder(tmp_path), DATASET, positions=[1]).positions == [1]
        with pytest.raises(InputError, match=r"positions can only be chosen for ome_tiff, not tif_id"):
            make_splitter("auto", _hyperstack(tmp_path), DATASET, positions=[1])

    def test_no_format_fits(self, tmp_path):
        path = tmp_path / "notes.txt"
        path.write_text("no images")
        with pytest.raises(InputError, match=rf"^dataset {DATASET}: {re.escape(str(path))}: no frames_format can read it; "
                                             r"choose one of \['ome_tiff', 'tif_folder', 'tif_id'\]$"):
            make_splitter(None, path, DATASET)

    def test_several_formats_fit(self, tmp_path, monkeypatch):
        monkeypatch.setitem(SPLITTERS, "any_tiff", _AnyTiff)
        path = _hyperstack(tmp_path)
        with pytest.raises(InputError, match=rf"^dataset {DATASET}: {re.escape(str(path))}: several frames_formats can read it "
                                             r"\(any_tiff, tif_id\); set frames_format to the right one$"):
            make_splitter("auto", path, DATASET)


class _AnyTiff(Splitter):
    """A toy format that claims every TIFF file."""

    frames_format = "any_tiff"

    @classmethod
    def can_read(cls, path: Path) -> bool:
        return path.suffix == ".tif"

    def global_metadata(self) -> dict:
        return {"file_origin": str(self.path)}

    def frames(self, read_pixels: bool = True) -> Iterator[Frame]:
        yield Frame(0, 0, 0, 0, "0", {}, str(self.path), 0)


class _Toy(_AnyTiff):
    """A toy format of its own: files named *.toy."""

    frames_format = "toy"

    @classmethod
    def can_read(cls, path: Path) -> bool:
        return path.suffix == ".toy"


class TestRegistry:
    def test_names_come_from_the_registry(self):
        assert splitter_names() == sorted(SPLITTERS) == ["ome_tiff", "tif_folder", "tif_id"]

    def test_a_registered_format_is_seen_everywhere(self, tmp_path, monkeypatch):
        monkeypatch.setitem(SPLITTERS, "toy", _Toy)
        assert splitter_names() == ["ome_tiff", "tif_folder", "tif_id", "toy"]
        path = tmp_path / "a.toy"
        path.write_text("toy frames")
        assert type(make_splitter("toy", path, DATASET)) is _Toy
        assert type(make_splitter("auto", path, DATASET)) is _Toy
        with pytest.raises(InputError, match=r"unknown frames_format 'czi'; choose one of "
                                             r"\['ome_tiff', 'tif_folder', 'tif_id', 'toy'\]"):
            make_splitter("czi", path, DATASET)
