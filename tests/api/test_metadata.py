"""find_datasets, global_meta and frames_meta as pandas/dict, and get_file for file datasets."""

import datetime
import hashlib
import os

import numpy as np
import pandas as pd
import pytest

import imaging_db
from imaging_db.errors import InputError, IntegrityError, NotFoundError
from imaging_db.filestorage import make_storage
from tests.api.conftest import CHANNELS, FILE_ID, ID, NBR_POSITIONS, NBR_SLICES, NBR_TIMES, SHAPE, upload

FRAMES_META_COLUMNS = ["channel_idx", "slice_idx", "time_idx", "pos_idx", "channel_name", "file_name", "sha256",
                       "metadata_json"]


@pytest.fixture
def file_source(tmp_path):
    source = tmp_path / "Plate1_17_SEC61B_stack_PyProcessed.csv"
    source.write_bytes(b"peptide,intensity\n" + np.random.default_rng(3).bytes(200_000))
    return source


@pytest.fixture
def with_file(tmp_path, db, login_file, storage_spec, file_source):
    """The connection ``db``, whose database also holds a file dataset, child of ID."""
    upload(tmp_path, login_file, storage_spec, [{"dataset_id": FILE_ID, "file_name": str(file_source),
                                                  "description": "mass spec", "parent_dataset_id": ID}],
           upload_type="file", filename_parser="parse_ml_name", microscope="Orbitrap")
    return db


def test_global_meta(local_db, acquisition):
    folder, _ = acquisition
    meta = local_db.global_meta(ID)
    assert {k: meta[k] for k in ("dataset_serial", "description", "microscope", "frames", "parent_dataset_id",
                                 "storage_dir", "nbr_frames", "im_width", "im_height", "im_colors", "bit_depth",
                                 "nbr_slices", "nbr_channels", "nbr_timepoints", "nbr_positions")} == {
        "dataset_serial": ID, "description": "kidney tissue", "microscope": "Leica DMi8", "frames": True,
        "parent_dataset_id": None, "storage_dir": f"raw_frames/{ID}", "nbr_frames": 24, "im_width": SHAPE[1],
        "im_height": SHAPE[0], "im_colors": 1, "bit_depth": "uint16", "nbr_slices": NBR_SLICES,
        "nbr_channels": len(CHANNELS), "nbr_timepoints": NBR_TIMES, "nbr_positions": NBR_POSITIONS}
    assert meta["date_time"] == datetime.datetime(2018, 11, 7, 9, 35, 54)
    assert meta["metadata_json"]["ChNames"] == CHANNELS
    assert meta["metadata_json"]["file_origin"] == str(folder)


def test_frames_meta(local_db):
    frames = local_db.frames_meta(ID)
    assert isinstance(frames, pd.DataFrame)
    assert list(frames.columns) == FRAMES_META_COLUMNS
    assert len(frames) == 24
    # Ordered by position, time, channel, slice.
    order = list(zip(frames.pos_idx, frames.time_idx, frames.channel_idx, frames.slice_idx))
    assert order == sorted(order) and len(set(order)) == 24
    for row in frames.itertuples():
        meta = row.metadata_json
        assert isinstance(meta, dict)
        assert (meta["ChannelIndex"], meta["SliceIndex"], meta["FrameIndex"], meta["PositionIndex"]) == (
            row.channel_idx, row.slice_idx, row.time_idx, row.pos_idx)
        assert row.channel_name == CHANNELS[row.channel_idx] == meta["Channel"]
        assert row.file_name == f"im_c{row.channel_idx:03d}_z{row.slice_idx:03d}_t{row.time_idx:03d}_p{row.pos_idx:03d}.png"
        assert len(row.sha256) == 64
    some = local_db.frames_meta(ID, channels=["Cy5 far red"], slices=[0, 2], times=[1])
    assert list(some.columns) == FRAMES_META_COLUMNS
    assert sorted(zip(some.pos_idx, some.slice_idx)) == [(0, 0), (0, 2), (1, 0), (1, 2)]
    assert set(some.channel_name) == {"Cy5 far red"} and set(some.time_idx) == {1}


def test_frames_meta_checksums_are_the_stored_objects(db, storage_spec):
    storage = make_storage(storage_spec["storage"], storage_spec["storage_access"],
                           s3_endpoint_url=storage_spec["s3_endpoint_url"])
    for row in db.frames_meta(ID, positions=[1], times=[0]).itertuples():
        assert hashlib.sha256(storage.get(f"raw_frames/{ID}/{row.file_name}")).hexdigest() == row.sha256


def test_find_datasets(with_file):
    found = with_file.find_datasets()
    assert list(found.columns) == [
        "dataset_id", "date_time", "microscope", "description", "frames", "nbr_frames", "channels",
        "parent_dataset_id", "im_width", "im_height", "im_colors", "bit_depth", "nbr_slices", "nbr_channels",
        "nbr_timepoints", "nbr_positions"]
    assert found.dataset_id.tolist() == [ID, FILE_ID]
    frames_row, file_row = found.iloc[0], found.iloc[1]
    assert frames_row.date_time == pd.Timestamp(2018, 11, 7, 9, 35, 54)
    assert (frames_row.microscope, frames_row.description, frames_row.frames) == ("Leica DMi8", "kidney tissue", True)
    assert (frames_row.nbr_frames, frames_row.nbr_channels, frames_row.nbr_slices, frames_row.nbr_timepoints,
            frames_row.nbr_positions, frames_row.im_width, frames_row.im_height) == (24, 2, 3, 2, 2, SHAPE[1], SHAPE[0])
    assert frames_row.channels == CHANNELS and frames_row.bit_depth == "uint16"
    assert pd.isna(frames_row.parent_dataset_id)
    assert (file_row.frames, file_row.parent_dataset_id, file_row.microscope) == (False, ID, "Orbitrap")
    assert pd.isna(file_row.nbr_frames) and file_row.channels is None
    assert str(found.nbr_frames.dtype) == "Int64"

    assert with_file.find_datasets(parent=ID).dataset_id.tolist() == [FILE_ID]
    assert with_file.find_datasets(microscope="leica", start_date="2018-11-07",
                                   end_date="2018-11-07").dataset_id.tolist() == [ID]
    assert with_file.find_datasets(meta={"protein_name": "SEC61B"}).dataset_id.tolist() == [FILE_ID]
    assert with_file.find_datasets(project_id="ML", meta=["Exposure-ms>20", "PositionName=Pos001"]).dataset_id.tolist() == [ID]
    none = with_file.find_datasets(description="liver")
    assert none.empty and list(none.columns) == list(found.columns)
    with pytest.raises(InputError, match="start_date '2018-13-01' is not a valid date"):
        with_file.find_datasets(start_date="2018-13-01")


def test_get_file(with_file, file_source, tmp_path, storage_spec):
    path = with_file.get_file(FILE_ID, tmp_path / "downloads")
    assert path == tmp_path / "downloads" / file_source.name
    assert path.read_bytes() == file_source.read_bytes()
    assert sorted(os.listdir(tmp_path / "downloads")) == [file_source.name]
    with pytest.raises(InputError, match=rf"dataset {FILE_ID}: .*{file_source.name} already exists; refusing to "
                                         "overwrite it"):
        with_file.get_file(FILE_ID, tmp_path / "downloads")
    assert path.read_bytes() == file_source.read_bytes()
    with pytest.raises(InputError, match=rf"dataset {ID} is a frames dataset: read its frames with get_stack"):
        with_file.get_file(ID, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(InputError, match=rf"dataset {FILE_ID} is a file dataset: it has no frames to stack; "
                                         "get its file with get_file"):
        with_file.get_stack(FILE_ID)
    with pytest.raises(InputError, match=rf"dataset {FILE_ID} is a file dataset: it has no frames to list"):
        with_file.frames_meta(FILE_ID)
    meta = with_file.global_meta(FILE_ID)
    assert (meta["file_name"], meta["frames"], meta["parent_dataset_id"]) == (file_source.name, False, ID)
    assert meta["sha256"] == hashlib.sha256(file_source.read_bytes()).hexdigest()
    assert meta["metadata_json"]["protein_name"] == "SEC61B"


def test_a_corrupt_file_is_refused_and_nothing_is_left(with_file, file_source, tmp_path, storage_spec):
    storage = make_storage(storage_spec["storage"], storage_spec["storage_access"],
                           s3_endpoint_url=storage_spec["s3_endpoint_url"])
    key = f"raw_files/{FILE_ID}/{file_source.name}"
    storage.delete(key)
    storage.put(key, file_source.read_bytes()[:-1])
    with pytest.raises(IntegrityError, match=rf"dataset {FILE_ID}: file {file_source.name} in .* is corrupt"):
        with_file.get_file(FILE_ID, tmp_path / "downloads")
    assert os.listdir(tmp_path / "downloads") == []
    storage.delete(key)
    with pytest.raises(NotFoundError, match="is missing from"):
        with_file.get_file(FILE_ID, tmp_path / "downloads")
    assert os.listdir(tmp_path / "downloads") == []


def test_the_connection(login_file, local_db):
    assert repr(local_db).startswith("imaging_db.Connection(")
    import sqlalchemy as sa

    with local_db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM frames")).scalar() == 24
    with imaging_db.connect(login_file) as db:
        assert db.global_meta(ID)["nbr_frames"] == 24
