"""What killed runs leave behind is cleaned by the next run of the same id, and nothing else is removed."""

import json
import os
import subprocess
import sys
import time

import pytest

from imaging_db.database.db_ops import Database
from imaging_db.errors import DatasetClaimedError
from imaging_db.example_data import frame_pixels, write_mm_ometiff
from imaging_db.filestorage import make_storage
from imaging_db.images.png import encode_png
from imaging_db.pipeline import download as download_module
from imaging_db.pipeline.download import FrameSelection, download_dataset
from imaging_db.pipeline.upload import upload_from_csv
from tests.cli.test_end_to_end import ID, ID2, SHAPE, check_downloaded, write_config, write_csv
from tests.conftest import _login_dict


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _upload(tmp_path, login_file, storage_spec, serial=ID, override=False):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 3, 1, 1, shape=SHAPE)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": serial, "file_name": str(tmp_path / "acq")}],
                         name=f"{serial}.csv")
    (result,) = upload_from_csv(csv_path, login_file, config, override=override, progress=False)
    return result


def _leave_partial(storage, storage_spec, key_prefix: str) -> None:
    """Leave an unfinished write under ``key_prefix`` as a killed upload would."""
    if storage_spec["storage"] == "local":
        folder = storage.root.joinpath(*key_prefix.strip("/").split("/"))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".0123456789abcdef.partial").write_bytes(b"half a PNG")
    else:
        storage.client.create_multipart_upload(Bucket=storage.bucket, Key=key_prefix + "big.tif")


def test_upload_removes_the_unfinished_writes_of_its_own_id_only(tmp_path, db_url, login_file, storage_spec):
    storage = make_storage(storage_spec["storage"], storage_spec["storage_access"],
                           s3_endpoint_url=storage_spec["s3_endpoint_url"])
    _leave_partial(storage, storage_spec, f"raw_frames/{ID}/")
    _leave_partial(storage, storage_spec, f"raw_frames/{ID2}/")
    assert storage.list(f"raw_frames/{ID}/") == {}  # partials are not objects: a plain rerun may go on

    result = _upload(tmp_path, login_file, storage_spec)
    assert result.ok, result.error
    assert storage.partials(f"raw_frames/{ID}/") == []
    assert len(storage.list(f"raw_frames/{ID}/")) == 3
    # Another id's leftover may belong to a run still going: untouched.
    assert len(storage.partials(f"raw_frames/{ID2}/")) == 1


def test_override_resume_removes_partials_and_completes(tmp_path, db_url, login_file, storage_spec):
    storage = make_storage(storage_spec["storage"], storage_spec["storage_access"],
                           s3_endpoint_url=storage_spec["s3_endpoint_url"])
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 3, 1, 1, shape=SHAPE)
    # A killed run stored one frame whole and was writing another.
    storage.put(f"raw_frames/{ID}/im_c000_z000_t000_p000.png", encode_png(frame_pixels(0, 0, 0, 0, SHAPE)))
    _leave_partial(storage, storage_spec, f"raw_frames/{ID}/")
    refused = _upload(tmp_path, login_file, storage_spec)
    assert not refused.ok and "rerun with --override" in refused.error
    result = _upload(tmp_path, login_file, storage_spec, override=True)
    assert result.ok and result.skipped_frames == 1
    assert storage.partials(f"raw_frames/{ID}/") == []
    download_dataset(ID, tmp_path / "dl", login_file, storage=storage_spec["storage"],
                     storage_access=storage_spec["storage_access"], s3_endpoint_url=storage_spec["s3_endpoint_url"],
                     progress=False)
    check_downloaded(tmp_path / "dl" / ID, {(0, z, 0, 0): frame_pixels(0, z, 0, 0, SHAPE) for z in range(3)})


def test_upload_of_a_claimed_id_writes_nothing(tmp_path, db_url, login_file, storage_spec):
    """While another run holds the id, an upload stops at once: no object, no partial, no row."""
    storage = make_storage(storage_spec["storage"], storage_spec["storage_access"],
                           s3_endpoint_url=storage_spec["s3_endpoint_url"])
    database = Database(db_url)
    database.create_tables()
    try:
        with database.claim(ID):
            result = _upload(tmp_path, login_file, storage_spec)
        assert not result.ok
        assert f"dataset {ID} is being uploaded by another run (host " in result.error
        assert f"pid {os.getpid()})" in result.error
        assert storage.list("raw_frames/") == {} and storage.partials("raw_frames/") == []
        assert database.existing_serials([ID]) == set()
    finally:
        database.dispose()


def test_claims_exclude_each_other_and_end_on_release(db_url):
    database = Database(db_url)
    database.create_tables()
    try:
        claim = database.claim(ID)
        with pytest.raises(DatasetClaimedError, match=f"dataset {ID} is being uploaded by another run"):
            database.claim(ID)
        with database.claim(ID2):  # other ids are free
            pass
        claim.release()
        claim.release()  # twice is harmless
        with database.claim(ID):
            pass
    finally:
        database.dispose()


def test_claim_ends_when_its_process_is_killed(db_url, tmp_path):
    """kill -9 of the holder frees the id: the kernel drops the flock, the server the advisory lock."""
    login = tmp_path / "login.json"
    login.write_text(json.dumps(_login_dict(db_url)))
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from imaging_db.database.connection import load_login\n"
         "from imaging_db.database.db_ops import Database\n"
         f"db = Database(load_login({str(login)!r}))\n"
         f"claim = db.claim({ID!r})\n"
         "print('claimed', flush=True)\n"
         "time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        database = Database(db_url)
        try:
            with pytest.raises(DatasetClaimedError, match=f"pid {holder.pid}\\)"):
                database.claim(ID)
            holder.kill()
            holder.wait()
            for _ in range(100):  # the server notices the closed connection within milliseconds
                try:
                    database.claim(ID).release()
                    break
                except DatasetClaimedError:
                    time.sleep(0.05)
            else:
                pytest.fail("the claim of a killed process was never released")
        finally:
            database.dispose()
    finally:
        holder.kill()
        holder.wait()


def test_download_removes_the_hidden_folders_of_dead_downloads_of_that_id_only(tmp_path, db_url, login_file,
                                                                               storage_spec):
    assert _upload(tmp_path, login_file, storage_spec).ok
    dest = tmp_path / "dl"
    dest.mkdir()
    host = download_module._host_tag()
    dead = dest / f".{ID}.{host}.{_dead_pid()}.abcdef.partial"
    alive = dest / f".{ID}.{host}.{os.getppid()}.abcdef.partial"  # a download still running
    other_host = dest / f".{ID}.00000000.{_dead_pid()}.abcdef.partial"  # dest shared over NFS
    other_id = dest / f".{ID2}.{host}.{_dead_pid()}.abcdef.partial"
    unrelated = dest / f".{ID}.notes.partial"
    for folder in (dead, alive, other_host, other_id, unrelated):
        folder.mkdir()
        (folder / "im_c000_z000_t000_p000.png").write_bytes(b"half")
    download_dataset(ID, dest, login_file, FrameSelection(slices=[1]), storage=storage_spec["storage"],
                     storage_access=storage_spec["storage_access"], s3_endpoint_url=storage_spec["s3_endpoint_url"],
                     progress=False)
    check_downloaded(dest / ID, {(0, 1, 0, 0): frame_pixels(0, 1, 0, 0, SHAPE)})
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [ID, alive.name, other_host.name, other_id.name, unrelated.name])


def test_download_partial_name_is_recognised_as_ours():
    name = download_module._partial_name(ID)
    assert name.startswith(f".{ID}.{download_module._host_tag()}.{os.getpid()}.") and name.endswith(".partial")
