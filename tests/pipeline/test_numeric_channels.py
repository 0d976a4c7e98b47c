"""Channels named by numbers (laser lines: "488", "561"): `-c 488` and ``channels=[488]`` select by name.

Values are indices only when none of them is a channel name of the dataset
(DESIGN.md, data_downloader ``-c``); the downloader and the Python API share
the rule (pipeline/selection.py). Run on SQLite and PostgreSQL.
"""

import csv

import numpy as np
import pytest

import imaging_db
from imaging_db.errors import SelectionError
from imaging_db.example_data import frame_pixels, write_mm_ometiff
from tests.cli.test_end_to_end import check_downloaded, download, upload, write_config, write_csv

ID = "ML-2018-11-07-09-35-54-0041"
SHAPE = (16, 12)


@pytest.fixture
def local_spec(tmp_path):
    return {"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None}


@pytest.fixture
def uploaded(tmp_path, login_file, local_spec):
    """Upload an acquisition whose channels have the given names (index = place in the list)."""

    def make(channels):
        write_mm_ometiff(tmp_path / "acq", channels, nbr_slices=2, nbr_times=1, nbr_positions=1, shape=SHAPE)
        config = write_config(tmp_path, local_spec, upload_type="frames", frames_format="ome_tiff")
        assert upload(write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}]), config,
                      login_file) == 0

    return make


def _downloaded_channels(tmp_path, login_file, local_spec, *channels) -> set[tuple[int, str]]:
    dest = tmp_path / f"dl_{'_'.join(channels)}"
    assert download(ID, dest, login_file, local_spec, "-c", *channels) == 0
    with open(dest / ID / "frames_meta.csv", newline="") as handle:
        return {(int(row["channel_idx"]), row["channel_name"]) for row in csv.DictReader(handle)}


class TestDownloader:
    def test_number_that_is_a_channel_name_selects_by_name(self, tmp_path, uploaded, login_file, local_spec):
        uploaded(["405", "488", "561"])
        assert _downloaded_channels(tmp_path, login_file, local_spec, "488") == {(1, "488")}
        check_downloaded(tmp_path / "dl_488" / ID, {(1, z, 0, 0): frame_pixels(1, z, 0, 0, SHAPE) for z in range(2)})
        assert _downloaded_channels(tmp_path, login_file, local_spec, "561", "405") == {(2, "561"), (0, "405")}

    def test_numbers_that_are_no_name_are_indices(self, tmp_path, uploaded, login_file, local_spec):
        uploaded(["405", "488", "561"])
        assert _downloaded_channels(tmp_path, login_file, local_spec, "2") == {(2, "561")}

    def test_a_name_wins_over_the_same_index(self, tmp_path, uploaded, login_file, local_spec):
        """Channel 0 is named "1" and channel 1 "0": `-c 0` is the channel named "0", at index 1."""
        uploaded(["1", "0"])
        assert _downloaded_channels(tmp_path, login_file, local_spec, "0") == {(1, "0")}

    def test_a_number_that_is_neither(self, tmp_path, uploaded, login_file, local_spec, capsys):
        uploaded(["405", "488"])
        assert download(ID, tmp_path / "dl", login_file, local_spec, "-c", "640") != 0
        err = capsys.readouterr().err
        assert "no frames with channel 640" in err and "'405', '488'" in err


class TestApi:
    def test_get_stack_and_frames_meta_by_number(self, uploaded, login_file):
        uploaded(["405", "488", "561"])
        with imaging_db.connect(login_file) as db:
            for channels in ([488], 488, ["488"], np.array([488])):
                stack = db.get_stack(ID, channels=channels)
                assert list(stack.coords["channel_name"].values) == ["488"], channels
                assert list(stack.coords["c"].values) == [1]
                np.testing.assert_array_equal(stack.sel(p=0, t=0, c=1, z=1).values, frame_pixels(1, 1, 0, 0, SHAPE))
            table = db.frames_meta(ID, channels=[561, 405])
            assert sorted(set(zip(table["channel_idx"], table["channel_name"]))) == [(0, "405"), (2, "561")]
            assert list(db.get_stack(ID, channels=[2]).coords["channel_name"].values) == ["561"]  # an index

    def test_a_name_wins_over_the_same_index(self, uploaded, login_file):
        uploaded(["1", "0"])
        with imaging_db.connect(login_file) as db:
            stack = db.get_stack(ID, channels=[0], lazy=True)
            assert list(stack.coords["c"].values) == [1] and list(stack.coords["channel_name"].values) == ["0"]
            with pytest.raises(SelectionError, match=rf"dataset {ID}: no frames with channel 7"):
                db.get_stack(ID, channels=[7])
