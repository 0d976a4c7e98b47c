"""The download pipeline as a library: selections, the folder written, and what happens on failure."""

import datetime
import hashlib

import pytest

from imaging_db.database.db_ops import DatasetRecord
from imaging_db.database.records import DatasetInfo, FramesLayout
from imaging_db.errors import StorageError
from imaging_db.pipeline.download import Downloader, FrameSelection
from imaging_db.pipeline.stores import DatasetStorages

ID = "ML-2018-11-07-09-35-54-0010"


@pytest.mark.parametrize("channels, expected", [
    (None, (None, None)),
    (["0", "2"], ([0, 2], None)),
    ([1], ([1], None)),
    (["GFP", "1"], (None, ["GFP", "1"])),
    ([" Cy5 "], (None, ["Cy5"])),
])
def test_channels_are_indices_only_when_all_are_integers(channels, expected):
    assert FrameSelection(channels=channels).channel_filter() == expected


def test_selection_description():
    assert FrameSelection().describe() == "no filter"
    assert FrameSelection(channels=["GFP"], slices=[1, 2]).describe() == "channels ['GFP'], slices [1, 2]"


def test_global_metadata_flattens_the_record():
    layout = FramesLayout(nbr_frames=2, im_width=5, im_height=4, im_colors=1, bit_depth="uint16", nbr_slices=2,
                          nbr_channels=1, nbr_timepoints=1, nbr_positions=1)
    info = DatasetInfo(ID, frames=True, date_time=datetime.datetime(2018, 11, 7, 9, 35, 54), description="d",
                       microscope="m", parent_serial="ML-2018-11-07-09-35-54-0009", storage_dir=f"raw_frames/{ID}",
                       layout=layout, metadata={"a": 1})
    meta = info.global_metadata()
    assert meta == {
        "dataset_serial": ID, "description": "d", "microscope": "m", "frames": True,
        "date_time": datetime.datetime(2018, 11, 7, 9, 35, 54),
        "parent_dataset_id": "ML-2018-11-07-09-35-54-0009", "storage_dir": f"raw_frames/{ID}", "nbr_frames": 2,
        "im_width": 5, "im_height": 4, "im_colors": 1, "bit_depth": "uint16", "nbr_slices": 2, "nbr_channels": 1,
        "nbr_timepoints": 1, "nbr_positions": 1, "metadata_json": {"a": 1},
    }
    # The order of the frames_global columns, as global_metadata.json has always listed them.
    assert list(meta)[6:] == ["storage_dir", "nbr_frames", "im_width", "im_height", "im_colors", "bit_depth",
                              "nbr_slices", "nbr_channels", "nbr_timepoints", "nbr_positions", "metadata_json"]
    file_info = DatasetInfo(ID, frames=False, date_time=datetime.datetime(2018, 11, 7), description=None,
                            microscope=None, parent_serial=None, storage_dir=f"raw_files/{ID}", file_name="a.pdf",
                            sha256="ab" * 32, metadata={"file_origin": "/x/a.pdf"})
    assert list(file_info.global_metadata().items())[6:] == [
        ("storage_dir", f"raw_files/{ID}"), ("file_name", "a.pdf"), ("metadata_json", {"file_origin": "/x/a.pdf"}),
        ("sha256", "ab" * 32)]


def test_failed_fetch_leaves_no_folder(tmp_path, database, storage):
    """A frame missing from storage stops the download; neither <dest>/<id> nor a temporary folder remains."""
    rows = []
    for z in range(6):
        key = f"im_c000_z{z:03d}_t000_p000.png"
        data = b"png-%d" % z
        rows.append({"channel_idx": 0, "slice_idx": z, "time_idx": 0, "pos_idx": 0, "channel_name": "GFP",
                     "file_name": key, "sha256": hashlib.sha256(data).hexdigest(), "metadata_json": {}})
        if z != 4:
            storage.put(f"raw_frames/{ID}/{key}", data)
    database.insert_frames_dataset(
        DatasetRecord(ID, datetime.datetime(2018, 11, 7, 9, 35, 54), frames=True),
        {"storage_dir": f"raw_frames/{ID}", "nbr_frames": 6, "im_width": 1, "im_height": 1, "im_colors": 1,
         "bit_depth": "uint8", "nbr_slices": 6, "nbr_channels": 1, "nbr_timepoints": 1, "nbr_positions": 1,
         "metadata_json": {}},
        rows,
    )
    downloader = Downloader(database, DatasetStorages.fixed(storage), nbr_workers=2, progress=False)
    with pytest.raises(LookupError, match="im_c000_z004_t000_p000.png"):
        downloader.download(ID, tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []
    result = downloader.download(ID, tmp_path / "dl2", FrameSelection(slices=[0, 5]))
    assert result.nbr_frames == 2 and sorted(result.files)[-2:] == [
        "im_c000_z000_t000_p000.png", "im_c000_z005_t000_p000.png"]
    assert (tmp_path / "dl2" / ID / "im_c000_z005_t000_p000.png").read_bytes() == b"png-5"


def test_unwritable_destination(tmp_path, database, storage):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    database.insert_file_dataset(
        DatasetRecord(ID, datetime.datetime(2018, 11, 7, 9, 35, 54), frames=False),
        {"storage_dir": f"raw_files/{ID}", "file_name": "a.txt", "metadata_json": {}, "sha256": "0" * 64})
    with pytest.raises(StorageError, match=rf"dataset {ID}: cannot create a folder in .*file"):
        Downloader(database, DatasetStorages.fixed(storage), progress=False).download(ID, blocker / "sub")


def test_download_path_imports_only_what_it_needs(tmp_path, imaging_home):
    """Start-up time is most of a small download: no OpenCV, numpy, tifffile, ORM, jsonschema, boto3 or tqdm."""
    import json
    import subprocess
    import sys

    from imaging_db.cli import data_uploader
    from imaging_db.example_data import write_imagej_stack

    write_imagej_stack(tmp_path / "stack.tif", 2, 2, shape=(16, 16))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"upload_type": "frames", "frames_format": "tif_id"}))
    (tmp_path / "files.csv").write_text(f"dataset_id,file_name\n{ID},{tmp_path / 'stack.tif'}\n")
    assert data_uploader.main(["--csv", str(tmp_path / "files.csv"), "--config", str(config)]) == 0
    script = (
        "import sys\n"
        "from imaging_db.cli import data_downloader\n"
        f"code = data_downloader.main(['--id', '{ID}', '--dest', {str(tmp_path / 'dl')!r}, '-c', '1'])\n"
        "heavy = ('cv2', 'numpy', 'tifffile', 'sqlalchemy.orm', 'jsonschema', 'boto3', 'tqdm', "
        "'sqlalchemy.dialects.postgresql')\n"
        "print(code, sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "0 []"
    assert sorted(p.name for p in (tmp_path / "dl" / ID).glob("*.png")) == [
        "im_c001_z000_t000_p000.png", "im_c001_z001_t000_p000.png"]

