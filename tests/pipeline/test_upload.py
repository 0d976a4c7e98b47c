"""The upload pipeline as a library: results, precedence of settings, failures at commit, request counts."""

import json
import threading
import time

import pytest

from imaging_db.errors import DatabaseError, InputError, StorageError
from imaging_db.example_data import frame_pixels, write_mm_ometiff, write_tif_folder
from imaging_db.filestorage import DataStorage
from imaging_db.pipeline.upload import DatasetResult, upload_from_csv
from tests.cli.test_end_to_end import ID, ID2, SHAPE, check_downloaded, query, write_csv

ID3 = "ML-2018-11-07-09-35-54-0012"


@pytest.fixture
def setup(tmp_path, db_url, login_file, storage_spec):
    def make(config_extra=None, **csv_rows):
        config = {"upload_type": "frames", "frames_format": "ome_tiff", **storage_spec, **(config_extra or {})}
        config = {k: v for k, v in config.items() if v is not None}
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        return path
    return make


def test_results_in_csv_order_with_refusals(tmp_path, setup, login_file, db_url):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 2, 1, 1, shape=SHAPE)
    config = setup()
    assert upload_from_csv(write_csv(tmp_path, [{"dataset_id": ID2, "file_name": str(tmp_path / "acq")}]),
                           login_file, config, progress=False)[0].ok
    rows = [{"dataset_id": d, "file_name": str(tmp_path / "acq")} for d in (ID3, ID2, ID)]
    results = upload_from_csv(write_csv(tmp_path, rows, "all.csv"), login_file, config, progress=False)
    assert [r.dataset_serial for r in results] == [ID3, ID2, ID]
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.startswith(f"dataset {ID2} is already in the database")
    assert results[0].nbr_frames == 2 and results[0].raw_bytes == 2 * SHAPE[0] * SHAPE[1] * 2
    assert 0 < results[0].stored_bytes and results[0].seconds > 0


def test_commit_failure_keeps_frames_for_override(tmp_path, setup, login_file, db_url, monkeypatch):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 3, 1, 1, shape=SHAPE)
    config = setup()
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    from imaging_db.database.db_ops import Database

    real_insert = Database.insert_frames_dataset

    def lost_connection(self, *args):
        raise DatabaseError("database x: server closed the connection unexpectedly")

    monkeypatch.setattr(Database, "insert_frames_dataset", lost_connection)
    (result,) = upload_from_csv(csv_path, login_file, config, progress=False)
    assert not result.ok and "server closed the connection" in result.error and "--override" in result.error
    monkeypatch.setattr(Database, "insert_frames_dataset", real_insert)
    (result,) = upload_from_csv(csv_path, login_file, config, override=True, progress=False)
    assert result.ok and result.skipped_frames == 3
    assert query(db_url, "SELECT count(*) AS n FROM frames")[0]["n"] == 3


def test_parent_failing_in_the_same_csv(tmp_path, setup, login_file, db_url, monkeypatch):
    folder = tmp_path / "tifs"
    write_tif_folder(folder, ["GFP"], nbr_slices=2, shape=SHAPE)
    config = setup({"frames_format": "tif_folder"})
    ok_folder = tmp_path / "ok"
    write_tif_folder(ok_folder, ["GFP"], nbr_slices=1, shape=SHAPE)
    csv_path = write_csv(tmp_path, [
        {"dataset_id": ID, "file_name": str(folder)},
        {"dataset_id": ID2, "file_name": str(ok_folder), "parent_dataset_id": ID},
    ])
    # The parent fails while uploading, after validation: its storage refuses one frame.
    from imaging_db.filestorage.local_storage import LocalDataStorage
    from imaging_db.filestorage.s3_storage import S3DataStorage

    def refusing(real):
        def put(self, key, *args):
            if key.startswith(f"raw_frames/{ID}/") and key.endswith("z001_t000_p000.png"):
                raise StorageError(f"writing {key} failed: 503 Slow Down")
            return real(self, key, *args)
        return put

    monkeypatch.setattr(LocalDataStorage, "put_stream", refusing(LocalDataStorage.put_stream))
    monkeypatch.setattr(S3DataStorage, "put", refusing(S3DataStorage.put))
    parent, child = upload_from_csv(csv_path, login_file, config, progress=False)
    assert not parent.ok and "z001_t000_p000.png" in parent.error and "503 Slow Down" in parent.error
    assert not child.ok and f"parent_dataset_id {ID} is not in the database" in child.error
    assert query(db_url, "SELECT count(*) AS n FROM data_set")[0]["n"] == 0


def test_command_line_settings_win_over_the_config(tmp_path, login_file, db_url, monkeypatch):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 2, 1, 1, shape=SHAPE)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"upload_type": "frames", "frames_format": "ome_tiff", "storage": "local",
                                  "storage_access": str(tmp_path / "from_config"), "nbr_workers": 3}))
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    from imaging_db.pipeline import upload as upload_module

    workers = []
    real_init = upload_module.Uploader.__init__

    def spy_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        workers.append(self.nbr_workers)

    monkeypatch.setattr(upload_module.Uploader, "__init__", spy_init)
    (result,) = upload_from_csv(csv_path, login_file, config, storage_access=str(tmp_path / "from_cli"),
                                nbr_workers=1, progress=False)
    assert result.ok and workers == [1]
    assert len(list((tmp_path / "from_cli" / "raw_frames" / ID).iterdir())) == 2
    assert not (tmp_path / "from_config").exists()
    (result,) = upload_from_csv(write_csv(tmp_path, [{"dataset_id": ID2, "file_name": str(tmp_path / "acq")}],
                                          "b.csv"), login_file, config, progress=False)
    assert result.ok and workers == [1, 3]
    assert (tmp_path / "from_config" / "raw_frames" / ID2).is_dir()


def test_invalid_input_raises_before_anything_is_written(tmp_path, setup, login_file, storage):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 2, 1, 1, shape=SHAPE)
    config = setup()
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")},
                                    {"dataset_id": ID2, "file_name": str(tmp_path / "acq"), "positions": "[3]"}])
    with pytest.raises(InputError, match=rf"dataset {ID2}: .*acq: positions \[3\] not found"):
        upload_from_csv(csv_path, login_file, config, progress=False)
    assert storage.list("") == {}


def test_summary_line():
    result = DatasetResult(ID, ok=True, nbr_frames=400, raw_bytes=838_860_800, stored_bytes=500_000_000,
                           seconds=4.0, skipped_frames=0)
    assert result.summary() == (f"{ID}: 400 frames, 838.9 MB raw, 500.0 MB stored, 4.00 s, 209.7 MB/s, "
                                "100.0 frames/s")
    assert DatasetResult(ID, ok=False, error="boom").summary() == f"{ID}: FAILED: boom"


@pytest.mark.s3
def test_s3_requests_one_listing_no_head_per_object(tmp_path, moto_endpoint, s3_bucket, login_file, monkeypatch):
    """Upload and download make one request per frame, plus one listing and one bucket check for the upload."""
    write_mm_ometiff(tmp_path / "acq", ["GFP", "RFP"], 3, 2, 1, shape=SHAPE)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"upload_type": "frames", "frames_format": "ome_tiff", "storage": "s3",
                                  "storage_access": s3_bucket, "s3_endpoint_url": moto_endpoint}))
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    from imaging_db.filestorage.s3_storage import S3DataStorage

    calls: list[str] = []
    real_init = S3DataStorage.__init__

    def counting_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))

    monkeypatch.setattr(S3DataStorage, "__init__", counting_init)
    (result,) = upload_from_csv(csv_path, login_file, config, progress=False)
    assert result.ok
    # One listing of the objects and one of unfinished multipart uploads (left by a killed run), under the claim.
    assert sorted(set(calls)) == ["HeadBucket", "ListMultipartUploads", "ListObjectsV2", "PutObject"]
    assert calls.count("PutObject") == 12 and calls.count("ListObjectsV2") == 1 and calls.count("HeadBucket") == 1
    assert calls.count("ListMultipartUploads") == 1

    from imaging_db.pipeline.download import FrameSelection, download_dataset

    calls.clear()
    download_dataset(ID, tmp_path / "dl", login_file, FrameSelection(channels=["RFP"]), storage="s3",
                     storage_access=s3_bucket, s3_endpoint_url=moto_endpoint, progress=False)
    assert calls == ["GetObject"] * 6
    check_downloaded(tmp_path / "dl" / ID, {(1, z, t, 0): frame_pixels(1, z, t, 0, SHAPE)
                                            for z in range(3) for t in range(2)})


def test_png_compression_setting(tmp_path, login_file, db_url):
    """png_compression trades size for speed; every level stays lossless."""
    from imaging_db.pipeline.download import download_dataset

    write_mm_ometiff(tmp_path / "acq", ["GFP"], 2, 1, 1, shape=(64, 64), smooth=True)
    sizes = {}
    for serial, level in ((ID, 0), (ID2, 9)):
        config = tmp_path / f"config{level}.json"
        config.write_text(json.dumps({"upload_type": "frames", "frames_format": "ome_tiff",
                                      "storage_access": str(tmp_path / "s"), "png_compression": level}))
        csv_path = write_csv(tmp_path, [{"dataset_id": serial, "file_name": str(tmp_path / "acq")}], f"{level}.csv")
        (result,) = upload_from_csv(csv_path, login_file, config, progress=False)
        assert result.ok
        sizes[level] = result.stored_bytes
        download_dataset(serial, tmp_path / "dl", login_file, storage_access=str(tmp_path / "s"), progress=False)
        check_downloaded(tmp_path / "dl" / serial, {(0, z, 0, 0): frame_pixels(0, z, 0, 0, (64, 64), smooth=True)
                                                    for z in range(2)})
    assert sizes[0] > 2 * 64 * 64 * 2 > sizes[9]


class SlowRemoteStorage:
    """A local folder that answers like a remote store: each put waits, many may run at once."""

    parallel_requests = 8
    # The wrapper's own put must be the one the writer calls, not the wrapped folder's.
    writer = DataStorage.writer

    def __init__(self, root, fail_key=None):
        from imaging_db.filestorage.local_storage import LocalDataStorage

        self.local = LocalDataStorage(root)
        self.fail_key = fail_key
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0
        self.threads = set()

    def __getattr__(self, name):
        return getattr(self.local, name)

    def put(self, key, data):
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(0.03)
            if key.endswith(self.fail_key or "\0"):
                raise StorageError(f"writing {key} failed: 503 Slow Down")
            self.local.put(key, data)
        finally:
            with self.lock:
                self.running -= 1


def _upload_with(storage, tmp_path, database, nbr_workers=1):
    from imaging_db.metadata.upload_config import UploadConfig
    from imaging_db.metadata.upload_csv import read_upload_csv
    from imaging_db.pipeline.upload import Uploader

    write_mm_ometiff(tmp_path / "acq", ["GFP"], 24, 1, 1, shape=SHAPE)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    uploader = Uploader(database, storage, UploadConfig(frames_format="ome_tiff"), nbr_workers=nbr_workers,
                        progress=False)
    plans, refused = uploader.prepare(read_upload_csv(csv_path))
    assert refused == []
    return uploader.upload(plans)[0]


def test_remote_puts_run_many_at_once(tmp_path, database):
    """With storage worth parallel requests, puts leave the encoding worker and overlap."""
    storage = SlowRemoteStorage(tmp_path / "store")
    result = _upload_with(storage, tmp_path, database, nbr_workers=1)
    assert result.ok and result.nbr_frames == 24
    assert 4 <= storage.max_running <= 8
    assert all(name.startswith("imaging_db-put") for name in storage.threads)
    assert len(storage.local.list(f"raw_frames/{ID}/")) == 24
    assert len(database.get_frames(ID)) == 24


def test_failed_remote_put_stops_the_dataset(tmp_path, database):
    storage = SlowRemoteStorage(tmp_path / "store", fail_key="im_c000_z013_t000_p000.png")
    result = _upload_with(storage, tmp_path, database, nbr_workers=2)
    assert not result.ok
    assert "im_c000_z013_t000_p000.png failed: 503 Slow Down" in result.error and "--override" in result.error
    assert database.existing_serials([ID]) == set()


def test_parent_must_come_before_its_child_in_the_csv(tmp_path, setup, login_file, storage):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 1, 1, 1, shape=SHAPE)
    config = setup()
    csv_path = write_csv(tmp_path, [
        {"dataset_id": ID2, "file_name": str(tmp_path / "acq"), "parent_dataset_id": ID},
        {"dataset_id": ID, "file_name": str(tmp_path / "acq")},
    ])
    with pytest.raises(InputError, match=rf"dataset {ID2}, CSV line 2: its parent {ID} comes later in the CSV"):
        upload_from_csv(csv_path, login_file, config, progress=False)
    assert storage.list("") == {}


def test_queued_puts_are_bounded_by_bytes(tmp_path, database, monkeypatch):
    """However many I/O threads, encoded frames waiting for a put never exceed the byte budget."""
    from imaging_db.filestorage import object_writer

    monkeypatch.setattr(object_writer, "QUEUED_PUT_BYTES", 1)  # smaller than any frame: one at a time
    storage = SlowRemoteStorage(tmp_path / "store")
    result = _upload_with(storage, tmp_path, database, nbr_workers=2)
    assert result.ok and result.nbr_frames == 24
    assert storage.max_running == 1


def test_file_summary_line():
    result = DatasetResult(ID, ok=True, raw_bytes=3_000_000, stored_bytes=3_000_000, seconds=0.5,
                           file_name="Plate1_17_SEC61B.tif")
    assert result.summary() == f"{ID}: file Plate1_17_SEC61B.tif, 3.0 MB, 0.50 s, 6.0 MB/s"
