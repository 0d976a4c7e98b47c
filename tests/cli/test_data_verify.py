"""data_verify through its command line: summary, --json, exit statuses, --remove-orphans, bad input."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imaging_db.cli import data_verify
from imaging_db.database.db_ops import Database
from tests.cli.test_end_to_end import ID
from tests.pipeline.test_verify import FILE_ID, STRAY_ID, leave_partial, replace, upload_file, upload_frames

ROOT = Path(__file__).resolve().parents[2]


def run_verify(login_file, storage_spec, *args):
    argv = ["--login", str(login_file), "--no-progress",
            "--storage", storage_spec["storage"], "--storage_access", storage_spec["storage_access"]]
    if storage_spec["s3_endpoint_url"]:
        argv += ["--s3_endpoint_url", storage_spec["s3_endpoint_url"]]
    return data_verify.main(argv + list(args))


@pytest.fixture
def uploaded(tmp_path, login_file, storage_spec, storage):
    upload_frames(tmp_path, login_file, storage_spec)
    upload_file(tmp_path, login_file, storage_spec)
    return storage


def test_clean_datasets_exit_0(uploaded, login_file, storage_spec, capsys):
    assert run_verify(login_file, storage_spec, "--all") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{ID}: 4 frames verified, 0 missing, 0 corrupt, 0 orphaned"
    assert lines[1] == f"{FILE_ID}: 1 file verified, 0 missing, 0 corrupt, 0 orphaned"
    assert lines[2].startswith("total: 2 dataset(s), 5 of 5 object(s) verified, 0 missing, 0 corrupt, 0 orphaned")
    assert run_verify(login_file, storage_spec, "--id", FILE_ID, "--nbr_workers", "1") == 0
    assert capsys.readouterr().out.startswith(f"{FILE_ID}: 1 file verified")


def test_problems_exit_1_and_are_named(uploaded, login_file, storage_spec, capsys):
    storage = uploaded
    keys = sorted(storage.list(f"raw_frames/{ID}/"))
    storage.delete(keys[0])
    replace(storage, keys[1], b"other bytes")
    storage.put(f"raw_frames/{ID}/extra.png", b"orphan")
    assert run_verify(login_file, storage_spec, "--id", ID) == 1
    captured = capsys.readouterr()
    assert captured.err == ""
    out = captured.out
    assert f"{ID}: 2 frames verified, 1 missing, 1 corrupt, 1 orphaned" in out
    assert f"missing: {keys[0]}" in out
    assert f"corrupt: {keys[1]}: sha256 {hashlib.sha256(b'other bytes').hexdigest()} does not match the recorded " in out
    assert f"orphaned: raw_frames/{ID}/extra.png" in out


def test_json_document(uploaded, login_file, storage_spec, capsys):
    storage = uploaded
    storage.delete(sorted(storage.list(f"raw_frames/{ID}/"))[0])
    storage.put(f"raw_frames/{STRAY_ID}/x.png", b"no dataset")
    assert run_verify(login_file, storage_spec, "--all", "--json") == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False and document["all"] is True
    frames, file = document["datasets"]
    assert frames["dataset_id"] == ID and frames["kind"] == "frames"
    assert frames["counts"] == {"objects": 4, "verified": 3, "unchecked": 0, "missing": 1, "corrupt": 0,
                                "unreadable": 0, "orphaned": 0, "removed": 0}
    assert file["kind"] == "file" and file["counts"]["verified"] == 1 and file["ok"] is True
    (orphan,) = document["orphan_prefixes"]
    assert orphan["prefix"] == f"raw_frames/{STRAY_ID}/" and orphan["objects"] == [f"raw_frames/{STRAY_ID}/x.png"]
    assert document["totals"]["missing"] == 1 and document["totals"]["orphaned"] == 1
    assert document["totals"]["verified"] == 4


def test_remove_orphans(uploaded, login_file, storage_spec, db_url, capsys):
    storage = uploaded
    storage.put(f"raw_frames/{ID}/extra.png", b"orphan")
    partial = leave_partial(storage, f"raw_frames/{ID}/")
    storage.put(f"raw_files/{STRAY_ID}/x.tif", b"no dataset")
    claimed = "ML-2018-11-07-09-35-54-0098"
    storage.put(f"raw_frames/{claimed}/y.png", b"being uploaded")
    referenced = set(storage.list("raw_frames/")) | set(storage.list("raw_files/"))
    referenced -= {f"raw_frames/{ID}/extra.png", f"raw_files/{STRAY_ID}/x.tif", f"raw_frames/{claimed}/y.png"}

    assert run_verify(login_file, storage_spec, "--all") == 1  # reporting removes nothing
    assert f"raw_frames/{ID}/extra.png" in storage.list(f"raw_frames/{ID}/extra.png")
    capsys.readouterr()
    database = Database(db_url, create=False)
    try:
        with database.claim(claimed):
            assert run_verify(login_file, storage_spec, "--all", "--remove-orphans") == 0
    finally:
        database.dispose()
    out = capsys.readouterr().out
    assert f"orphaned: raw_frames/{ID}/extra.png (no row of dataset {ID} names it), removed" in out
    assert f"orphaned: unfinished write {partial} (left by a killed run), removed" in out
    assert f"upload in progress: raw_frames/{claimed}/" in out
    after = set(storage.list("raw_frames/")) | set(storage.list("raw_files/"))
    assert after == referenced | {f"raw_frames/{claimed}/y.png"}
    assert storage.partials("raw_frames/") == []


@pytest.mark.parametrize("storage_spec", ["local"], indirect=True)
def test_bad_input_is_one_line(uploaded, login_file, storage_spec, capsys):
    assert run_verify(login_file, storage_spec, "--id", STRAY_ID) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"data_verify: error: dataset {STRAY_ID} is not in the database")
    assert run_verify(login_file, storage_spec, "--id", "nonsense") == 1
    assert "invalid dataset id 'nonsense'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run_verify(login_file, storage_spec, "--id", ID, "--all")
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run_verify(login_file, storage_spec)
    assert exc.value.code == 2 and "one of the arguments --id --all is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_verify(login_file, storage_spec, "--all", "--nbr_workers", "0")


def test_runs_as_a_script_on_the_embedded_defaults(tmp_path):
    """``python imaging_db/cli/data_verify.py`` with no --login: the embedded database, here missing."""
    env = {**os.environ, "IMAGING_DB_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, str(ROOT / "imaging_db" / "cli" / "data_verify.py"), "--all"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("data_verify: error: nothing to verify:") and "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "imaging_db.sqlite").exists()  # a reader never creates the database
