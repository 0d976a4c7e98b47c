"""Scriptable runs: --skip-existing for a nightly rerun of a CSV, --json on the commands, --version, exit statuses."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imaging_db import __version__
from imaging_db.cli import data_uploader, data_verify, imaging_db_migrate, query_data
from imaging_db.example_data import frame_pixels, write_imagej_stack
from tests.cli.test_end_to_end import SHAPE, check_downloaded, download, upload, write_config, write_csv

ID = "ML-2018-11-07-09-35-54-0010"
ID2 = "ML-2018-11-07-09-35-54-0011"
COMMANDS = ("data_uploader", "data_downloader", "data_verify", "query_data", "imaging_db_migrate")


def _stacks(tmp_path, storage_spec, ids=(ID, ID2)):
    rows = []
    for n, serial in enumerate(ids):
        path = tmp_path / f"stack{n}.tif"
        write_imagej_stack(path, 2, 3, shape=SHAPE, seed=n)
        rows.append({"dataset_id": serial, "file_name": str(path), "description": f"stack {n}"})
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="tif_id")
    return write_csv(tmp_path, rows), config


def _json_out(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out)  # one document, nothing else on stdout


def test_skip_existing_reruns_a_csv(tmp_path, login_file, storage_spec, capsys):
    """A nightly job reruns its CSV: what is registered is skipped (exit 0), what is new is uploaded."""
    csv_path, config = _stacks(tmp_path, storage_spec, ids=(ID,))
    assert upload(csv_path, config, login_file) == 0
    capsys.readouterr()
    # Without the flag a registered id is a failure, as before.
    assert upload(csv_path, config, login_file) == 1
    assert "already in the database" in capsys.readouterr().err
    csv_path, config = _stacks(tmp_path, storage_spec)
    assert upload(csv_path, config, login_file, "--skip-existing") == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == f"{ID}: already registered, skipped"
    assert lines[1].startswith(f"{ID2}: 6 frames")
    assert captured.err == ""
    # The skipped dataset is untouched, the new one complete.
    for serial, seed in ((ID, 0), (ID2, 1)):
        assert download(serial, tmp_path / "dl", login_file, storage_spec) == 0
        expected = {(c, z, 0, 0): frame_pixels(c, z, 0, 0, SHAPE, seed=seed) for c in range(2) for z in range(3)}
        check_downloaded(tmp_path / "dl" / serial, expected)


def test_uploader_json(tmp_path, login_file, storage_spec, capsys):
    csv_path, config = _stacks(tmp_path, storage_spec)
    assert upload(csv_path, config, login_file, "--json") == 0
    document = _json_out(capsys)
    assert document["command"] == "data_uploader" and document["ok"] and document["exit_status"] == 0
    assert [(d["dataset_id"], d["status"], d["nbr_frames"], d["upload_type"]) for d in document["datasets"]] == [
        (ID, "uploaded", 6, "frames"), (ID2, "uploaded", 6, "frames")]
    raw = 6 * SHAPE[0] * SHAPE[1] * 2
    assert all(d["raw_bytes"] == raw and d["stored_bytes"] > 0 and d["seconds"] > 0 for d in document["datasets"])
    assert document["totals"] == {"uploaded": 2, "skipped": 0, "failed": 0, "nbr_frames": 12,
                                  "raw_bytes": 2 * raw, "stored_bytes": document["totals"]["stored_bytes"],
                                  "seconds": document["totals"]["seconds"]}
    # Rerun: skipped with the flag, failed (exit 1) without, each said in the document.
    assert upload(csv_path, config, login_file, "--json", "--skip-existing") == 0
    assert [d["status"] for d in _json_out(capsys)["datasets"]] == ["skipped", "skipped"]
    assert upload(csv_path, config, login_file, "--json") == 1
    document = _json_out(capsys)
    assert not document["ok"] and document["exit_status"] == 1
    assert [d["status"] for d in document["datasets"]] == ["failed", "failed"]
    assert f"dataset {ID} is already in the database" in document["datasets"][0]["error"]


def test_an_error_with_json_is_still_one_document(tmp_path, login_file, storage_spec, capsys):
    """Bad input: the one error line on stderr, and a document saying it on stdout."""
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="tif_id")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "missing.tif")}])
    assert upload(csv_path, config, login_file, "--json") == 1
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    (line,) = captured.err.splitlines()
    assert line.startswith(f"data_uploader: error: dataset {ID}")
    assert document == {"command": "data_uploader", "ok": False, "exit_status": 1,
                        "error": line.removeprefix("data_uploader: error: ")}


def test_verify_query_and_migrate_json(tmp_path, login_file, storage_spec, capsys):
    csv_path, config = _stacks(tmp_path, storage_spec)
    assert upload(csv_path, config, login_file) == 0
    capsys.readouterr()
    store = ["--storage", storage_spec["storage"], "--storage_access", storage_spec["storage_access"]]
    if storage_spec["s3_endpoint_url"]:
        store += ["--s3_endpoint_url", storage_spec["s3_endpoint_url"]]
    assert data_verify.main(["--login", str(login_file), "--no-progress", "--all", "--json", *store]) == 0
    document = _json_out(capsys)
    assert document["command"] == "data_verify" and document["ok"] and document["exit_status"] == 0
    assert document["totals"]["verified"] == 12

    assert query_data.main(["--login", str(login_file), "--json", "--description", "stack 1"]) == 0
    assert [d["dataset_id"] for d in _json_out(capsys)] == [ID2]
    assert query_data.main(["--login", str(login_file), "--json", "--format", "csv"]) == 1
    assert capsys.readouterr().err.strip() == "query_data: error: --json and --format csv ask for two formats: give one"

    assert imaging_db_migrate.main(["--login", str(login_file), "--check", "--json"]) == 0
    document = _json_out(capsys)
    from imaging_db.database.migrate import HEAD
    assert document["command"] == "imaging_db_migrate" and document["ok"]
    assert (document["revision"], document["head"], document["action"]) == (HEAD, HEAD, "none")
    assert imaging_db_migrate.main(["--login", str(login_file), "--json"]) == 0
    assert _json_out(capsys)["action"] == "none"


@pytest.mark.parametrize("command", COMMANDS)
def test_version(command):
    """--version names the command and imaging_db's version (the package's), exit 0, from the console script."""
    script = Path(sys.executable).parent / command
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{command} (imaging_db {__version__})"
    from importlib.metadata import version
    assert version("imaging_db") == __version__


def test_usage_errors_exit_2_and_say_why(capsys):
    with pytest.raises(SystemExit) as exit_info:
        data_uploader.main(["--config", "c.json"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: --csv" in capsys.readouterr().err


def test_the_summary_says_how_a_plain_tiff_was_read(tmp_path, login_file, storage_spec, capsys):
    """A multi-page TIFF with no ImageJ or OME metadata is a z-stack, and the summary line and --json say so."""
    import numpy as np
    import tifffile

    stack = np.stack([frame_pixels(0, z, 0, 0, SHAPE) for z in range(5)])
    tifffile.imwrite(tmp_path / "plain.tif", stack, metadata=None)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="tif_id")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "plain.tif")}])
    assert upload(csv_path, config, login_file, "--json") == 0
    (dataset,) = _json_out(capsys)["datasets"]
    assert dataset["notes"] == ["no ImageJ/OME metadata: 5 pages taken as 5 slices"]
    assert download(ID, tmp_path / "dl", login_file, storage_spec) == 0
    check_downloaded(tmp_path / "dl" / ID, {(0, z, 0, 0): stack[z] for z in range(5)})
    csv_path = write_csv(tmp_path, [{"dataset_id": ID2, "file_name": str(tmp_path / "plain.tif")}])
    assert upload(csv_path, config, login_file) == 0
    assert capsys.readouterr().out.strip().endswith("(no ImageJ/OME metadata: 5 pages taken as 5 slices)")
