"""data_downloader --frame-metadata: each frame's own metadata as columns of frames_meta.csv, streamed.

Runs on each database (SQLite, PostgreSQL), where JSON and JSONB hand the
metadata back differently.
"""

import csv
import datetime
import hashlib
import json

import pytest

from imaging_db.database.db_ops import DatasetRecord
from imaging_db.database.frame_metadata_rows import stream_frame_metadata
from imaging_db.example_data import mm_frame_metadata, write_mm_ometiff
from imaging_db.pipeline.download import FRAMES_META_COLUMNS, Downloader, FrameSelection
from imaging_db.pipeline.frame_metadata import column_order, flatten_metadata, write_frames_meta_csv
from imaging_db.pipeline.selection import select_frames
from imaging_db.pipeline.stores import DatasetStorages
from tests.cli.test_end_to_end import SHAPE, download, upload, write_config, write_csv

ID = "ML-2018-11-07-09-35-54-0010"
FIXED = list(FRAMES_META_COLUMNS)


def test_flatten_nested_lists_and_clashes():
    meta = {"Exposure-ms": 50.0, "Camera": {"Binning": 2, "Name": "Andor", "ROI": {"x": 0}}, "Empty": {},
            "ChNames": ["GFP", "Cy5"], "Flag": True, "Nothing": None, "channel_idx": 7, "file_name": "x"}
    assert flatten_metadata(meta) == {
        "Exposure-ms": 50.0, "Camera.Binning": 2, "Camera.Name": "Andor", "Camera.ROI.x": 0, "Empty": "{}",
        "ChNames": '["GFP", "Cy5"]', "Flag": True, "Nothing": None,
        # A key that is also a frames column must not hide it.
        "metadata_json.channel_idx": 7, "metadata_json.file_name": "x"}
    assert flatten_metadata(None) == {} and flatten_metadata({}) == {}


def _insert(database, metas: list[dict | None], nbr_slices: int = 1) -> None:
    """A dataset of len(metas) frames (positions x slices) with the given metadata; no objects stored."""
    rows = []
    for n, meta in enumerate(metas):
        p, z = divmod(n, nbr_slices)
        name = f"im_c000_z{z:03d}_t000_p{p:03d}.png"
        rows.append({"channel_idx": 0, "slice_idx": z, "time_idx": 0, "pos_idx": p, "channel_name": "GFP",
                     "file_name": name, "sha256": hashlib.sha256(name.encode()).hexdigest(), "metadata_json": meta})
    database.insert_frames_dataset(
        DatasetRecord(ID, datetime.datetime(2018, 11, 7, 9, 35, 54), frames=True),
        {"storage_dir": f"raw_frames/{ID}", "nbr_frames": len(metas), "im_width": 1, "im_height": 1,
         "im_colors": 1, "bit_depth": "uint8", "nbr_slices": nbr_slices, "nbr_channels": 1, "nbr_timepoints": 1,
         "nbr_positions": len(metas) // nbr_slices, "metadata_json": {}},
        rows)


def _read_csv(path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def test_columns_are_the_union_in_order_and_missing_keys_are_empty(tmp_path, database, storage):
    metas = [
        {"ElapsedTime-ms": 0.0, "Stage": {"X": 1.5, "Y": -2}, "Tags": ["a", "b"]},
        {"ElapsedTime-ms": 12.5, "Exposure-ms": 50, "Stage": {"X": 3.0}, "Note": "ümlaut, \"quoted\"\nline"},
        None,
        {"Exposure-ms": 20, "Dark": False, "Gone": None},
    ]
    _insert(database, metas, nbr_slices=2)
    downloader = Downloader(database, DatasetStorages.fixed(storage), progress=False)
    result = downloader.download(ID, tmp_path / "dl", download=False, frame_metadata=True)
    assert result.files == ["global_metadata.json", "frames_meta.csv"]
    columns, rows = _read_csv(tmp_path / "dl" / ID / "frames_meta.csv")
    # Alphabetical, case aside: the same on SQLite and on PostgreSQL (whose JSONB reorders keys).
    assert columns == FIXED + ["Dark", "ElapsedTime-ms", "Exposure-ms", "Gone", "Note", "Stage.X", "Stage.Y", "Tags"]
    assert [r["file_name"] for r in rows] == ["im_c000_z000_t000_p000.png", "im_c000_z001_t000_p000.png",
                                              "im_c000_z000_t000_p001.png", "im_c000_z001_t000_p001.png"]
    metadata_cells = [{k: v for k, v in r.items() if k not in FIXED} for r in rows]
    assert metadata_cells == [
        {"ElapsedTime-ms": "0.0", "Stage.X": "1.5", "Stage.Y": "-2", "Tags": '["a", "b"]', "Exposure-ms": "",
         "Note": "", "Dark": "", "Gone": ""},
        {"ElapsedTime-ms": "12.5", "Stage.X": "3.0", "Stage.Y": "", "Tags": "", "Exposure-ms": "50",
         "Note": "ümlaut, \"quoted\"\nline", "Dark": "", "Gone": ""},
        dict.fromkeys(["ElapsedTime-ms", "Stage.X", "Stage.Y", "Tags", "Exposure-ms", "Note", "Dark", "Gone"], ""),
        {"ElapsedTime-ms": "", "Stage.X": "", "Stage.Y": "", "Tags": "", "Exposure-ms": "20", "Note": "",
         "Dark": "false", "Gone": "null"},
    ]
    # Nothing but the CSV and the global metadata: the spool file is gone.
    assert sorted(p.name for p in (tmp_path / "dl" / ID).iterdir()) == ["frames_meta.csv", "global_metadata.json"]

    # Without the flag the file is as it always was.
    downloader.download(ID, tmp_path / "plain", download=False)
    assert _read_csv(tmp_path / "plain" / ID / "frames_meta.csv")[0] == FIXED


def test_columns_of_the_selected_frames_only(tmp_path, database, storage):
    _insert(database, [{"A": 1}, {"B": 2}, {"C": 3}, {"D": 4}], nbr_slices=2)
    downloader = Downloader(database, DatasetStorages.fixed(storage), progress=False)
    downloader.download(ID, tmp_path / "dl", FrameSelection(slices=[1]), download=False, frame_metadata=True)
    columns, rows = _read_csv(tmp_path / "dl" / ID / "frames_meta.csv")
    assert columns == FIXED + ["B", "D"]
    assert [(r["B"], r["D"]) for r in rows] == [("2", ""), ("", "4")]


@pytest.mark.parametrize("batch_rows", [1, 2, 1000])
def test_stream_follows_the_rows_in_batches(database, batch_rows):
    """Metadata comes in the rows' order whatever the batch size, skipping frames not selected."""
    metas = [{"n": n} for n in range(12)]
    _insert(database, metas, nbr_slices=4)
    rows = select_frames(database, ID, FrameSelection(slices=[0, 3], positions=[0, 2]))
    stream = stream_frame_metadata(database, ID, rows, batch_rows=batch_rows)
    assert iter(stream) is stream  # a generator: nothing read before asked
    assert list(stream) == [{"n": 0}, {"n": 3}, {"n": 8}, {"n": 11}]
    assert list(stream_frame_metadata(database, ID, [])) == []


def test_stream_is_consumed_once_without_holding_it(tmp_path):
    """The CSV writer reads the metadata once, as it comes, and holds none of it in a list."""
    from imaging_db.database.records import FrameRow

    rows = [FrameRow(0, z, 0, 0, "GFP", f"im_c000_z{z:03d}_t000_p000.png", "0" * 64) for z in range(3)]
    handed_out = []

    def metadata():
        for z in range(3):
            meta = {"z": z, f"only{z}": True}
            handed_out.append(z)
            yield meta

    write_frames_meta_csv(tmp_path / "frames_meta.csv", rows, metadata(), f"dataset {ID}")
    assert handed_out == [0, 1, 2]
    columns, lines = _read_csv(tmp_path / "frames_meta.csv")
    assert columns == FIXED + ["only0", "only1", "only2", "z"]
    assert [line["z"] for line in lines] == ["0", "1", "2"] and lines[2]["only2"] == "true"
    assert [p.name for p in tmp_path.iterdir()] == ["frames_meta.csv"]


def test_micro_manager_frames_through_the_cli(tmp_path, db_url, login_file, storage_spec, capsys):
    channels = ["GFP", "Cy5 far red"]
    write_mm_ometiff(tmp_path / "acq", channels, nbr_slices=2, nbr_times=2, nbr_positions=1, shape=SHAPE)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff")
    assert upload(write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}]), config,
                  login_file) == 0
    capsys.readouterr()
    assert download(ID, tmp_path / "dl", login_file, storage_spec, "--frame-metadata", "-c", "GFP", "-t", "1",
                    "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["nbr_frames"] == 2 and document["format"] == "png"
    columns, rows = _read_csv(tmp_path / "dl" / ID / "frames_meta.csv")
    expected = [mm_frame_metadata(0, z, 1, 0, channels) for z in range(2)]
    assert columns == FIXED + column_order(expected[0])  # 100+ keys
    assert columns[len(FIXED):len(FIXED) + 3] == ["Binning", "BitDepth", "Camera"]
    assert len(columns) > 100
    for row, meta in zip(rows, expected):
        assert (row["channel_name"], row["time_idx"]) == ("GFP", "1")
        assert float(row["ElapsedTime-ms"]) == meta["ElapsedTime-ms"]
        assert float(row["ZPositionUm"]) == meta["ZPositionUm"] and row["Exposure-ms"] == "50.0"
        assert row["UUID"] == meta["UUID"] and row["Camera"] == "Andor"


def test_frame_metadata_needs_the_metadata(tmp_path, database, login_file, capsys):
    from imaging_db.cli import data_downloader

    assert data_downloader.main(["--id", ID, "--dest", str(tmp_path / "dl"), "--login", str(login_file),
                                 "--no-metadata", "--frame-metadata"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"data_downloader: error: dataset {ID}: --frame-metadata adds columns to frames_meta.csv, "
                    "which --no-metadata leaves out; give one of them")
    assert not (tmp_path / "dl").exists()
