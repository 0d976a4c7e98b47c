"""Each dataset records where its objects are; readers find them there, and the user's flags override it."""

import shutil

import pytest
import sqlalchemy as sa

from imaging_db.cli import data_downloader, data_verify
from imaging_db.example_data import frame_pixels, write_mm_ometiff
from imaging_db.filestorage import StorageLocation, resolve_location
from tests.cli.test_end_to_end import ID, ID2, SHAPE, check_downloaded, query, upload, write_config, write_csv


def _upload(tmp_path, login_file, storage_spec, serial=ID, name="acq"):
    write_mm_ometiff(tmp_path / name, ["GFP"], 2, 1, 1, shape=SHAPE)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": serial, "file_name": str(tmp_path / name)}], f"{serial}.csv")
    assert upload(csv_path, config, login_file) == 0


def _frames():
    return {(0, z, 0, 0): frame_pixels(0, z, 0, 0, SHAPE) for z in range(2)}


def _download(serial, dest, login_file, *flags):
    return data_downloader.main(["--id", serial, "--dest", str(dest), "--login", str(login_file), "--no-progress",
                                 *flags])


def test_the_upload_records_where_and_the_download_needs_no_flags(tmp_path, db_url, login_file, storage_spec):
    _upload(tmp_path, login_file, storage_spec)
    (row,) = query(db_url, "SELECT storage, storage_access, s3_endpoint_url FROM data_set")
    assert row == {"storage": storage_spec["storage"], "storage_access": storage_spec["storage_access"],
                   "s3_endpoint_url": storage_spec["s3_endpoint_url"]}
    assert _download(ID, tmp_path / "dl", login_file) == 0
    check_downloaded(tmp_path / "dl" / ID, _frames())


def test_a_relative_folder_is_recorded_absolute(tmp_path, db_url, login_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _upload(tmp_path, login_file, {"storage": "local", "storage_access": "store", "s3_endpoint_url": None})
    assert query(db_url, "SELECT storage_access FROM data_set")[0]["storage_access"] == str(tmp_path / "store")
    monkeypatch.chdir(tmp_path / "acq")
    assert _download(ID, tmp_path / "dl", login_file) == 0


def test_flags_override_the_record_after_the_data_moved(tmp_path, db_url, login_file, capsys):
    spec = {"storage": "local", "storage_access": str(tmp_path / "old"), "s3_endpoint_url": None}
    _upload(tmp_path, login_file, spec)
    shutil.move(tmp_path / "old", tmp_path / "new")
    assert _download(ID, tmp_path / "dl", login_file) != 0
    assert f"is missing from local:{tmp_path / 'old'}" in capsys.readouterr().err
    assert _download(ID, tmp_path / "dl", login_file, "--storage_access", str(tmp_path / "new")) == 0
    check_downloaded(tmp_path / "dl" / ID, _frames())


@pytest.mark.s3
def test_an_s3_dataset_downloads_with_no_flags_and_the_endpoint_from_the_record(tmp_path, login_file, moto_endpoint,
                                                                               s3_bucket, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # the endpoint at upload: recorded with the dataset
    _upload(tmp_path, login_file, {"storage": "s3", "storage_access": s3_bucket, "s3_endpoint_url": None})
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert _download(ID, tmp_path / "dl", login_file) == 0
    check_downloaded(tmp_path / "dl" / ID, _frames())
    assert data_verify.main(["--id", ID, "--login", str(login_file), "--no-progress"]) == 0
    assert "2 of 2 object(s) verified" in capsys.readouterr().out


def test_a_dataset_without_a_recorded_location_reads_the_flags_else_the_embedded_storage(tmp_path, db_url,
                                                                                          login_file, capsys):
    _upload(tmp_path, login_file, {"storage": "local", "storage_access": str(tmp_path / "s"), "s3_endpoint_url": None})
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # as a dataset registered before locations were recorded
        conn.execute(sa.text("UPDATE data_set SET storage = NULL, storage_access = NULL"))
    engine.dispose()
    assert _download(ID, tmp_path / "dl", login_file) != 0
    assert "is missing from local:" in capsys.readouterr().err
    assert _download(ID, tmp_path / "dl", login_file, "--storage_access", str(tmp_path / "s")) == 0


def test_verify_reads_the_recorded_storage_and_refuses_to_guess_between_two(tmp_path, db_url, login_file, capsys):
    one = {"storage": "local", "storage_access": str(tmp_path / "one"), "s3_endpoint_url": None}
    two = {"storage": "local", "storage_access": str(tmp_path / "two"), "s3_endpoint_url": None}
    _upload(tmp_path, login_file, one, ID, "a")
    assert data_verify.main(["--all", "--login", str(login_file), "--no-progress"]) == 0
    assert "2 of 2" in capsys.readouterr().out
    _upload(tmp_path, login_file, two, ID2, "b")
    assert data_verify.main(["--all", "--login", str(login_file), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "the datasets to verify are in 2 storages" in err and str(tmp_path / "two") in err
    assert data_verify.main(["--id", ID2, "--login", str(login_file), "--no-progress"]) == 0


def test_resolving_a_location():
    s3 = StorageLocation("s3", "bucket", "http://minio:9000")
    assert resolve_location(s3) == s3
    assert resolve_location(s3, storage_access="moved") == StorageLocation("s3", "moved", "http://minio:9000")
    assert resolve_location(s3, s3_endpoint_url="http://other") == StorageLocation("s3", "bucket", "http://other")
    # Another backend named: the record's bucket and endpoint belong to S3, not to it.
    assert resolve_location(s3, storage="local") == StorageLocation("local")
    assert resolve_location(None) == StorageLocation("local")
    assert resolve_location(None, "s3", "b") == StorageLocation("s3", "b")


def test_a_default_storage_set_once_serves_datasets_that_record_none(tmp_path, db_url, login_file, capsys):
    from imaging_db.cli import imaging_db_migrate

    _upload(tmp_path, login_file, {"storage": "local", "storage_access": str(tmp_path / "nas"), "s3_endpoint_url": None})
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # as the original imagingDB's datasets: no storage recorded
        conn.execute(sa.text("UPDATE data_set SET storage = NULL, storage_access = NULL"))
    engine.dispose()
    assert imaging_db_migrate.main(["--login", str(login_file), "--default-storage", "local",
                                    "--default-storage-access", str(tmp_path / "nas")]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert _download(ID, tmp_path / "dl", login_file) == 0
    check_downloaded(tmp_path / "dl" / ID, _frames())
    assert data_verify.main(["--all", "--login", str(login_file), "--no-progress"]) == 0
