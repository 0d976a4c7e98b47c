"""Bad input through the CLIs: one clear line, non-zero exit, nothing written, no secrets, no traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import tifffile

from imaging_db.cli import data_downloader, data_uploader
from imaging_db.example_data import frame_pixels, write_imagej_stack, write_mm_ometiff, write_tif_folder
from tests.cli.test_end_to_end import ID, ID2, SHAPE, check_downloaded, query, write_csv

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def local(tmp_path):
    """Embedded-default style set-up: SQLite login file and a local storage folder."""
    login = tmp_path / "login.json"
    login.write_text(json.dumps({"drivername": "sqlite", "dbname": str(tmp_path / "db.sqlite")}))
    return {"login": login, "storage": tmp_path / "storage", "db": f"sqlite:///{tmp_path / 'db.sqlite'}"}


def config_file(tmp_path, local, **settings):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": "local", "storage_access": str(local["storage"]), **settings}))
    return path


def run_upload(csv_path, config, local, *extra):
    return data_uploader.main(["--csv", str(csv_path), "--config", str(config), "--login", str(local["login"]),
                               "--no-progress", *extra])


def stored_files(local):
    root = local["storage"]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def registered(local):
    engine = sa.create_engine(local["db"])
    try:
        if not sa.inspect(engine).has_table("data_set"):
            return []
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text("SELECT dataset_serial FROM data_set"))]
    finally:
        engine.dispose()


def one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line]
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err)
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_bad_row_stops_everything_before_any_write(tmp_path, local, capsys):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 2, 1, 1, shape=SHAPE)
    config = config_file(tmp_path, local, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [
        {"dataset_id": ID, "file_name": str(tmp_path / "acq")},
        {"dataset_id": "ML-2018-13-07-09-35-54-0011", "file_name": str(tmp_path / "acq")},
    ])
    assert run_upload(csv_path, config, local) == 1
    one_error_line(capsys, "ML-2018-13-07-09-35-54-0011", "line 3", "date-time does not exist")
    assert stored_files(local) == [] and registered(local) == []


def test_missing_input_file(tmp_path, local, capsys):
    config = config_file(tmp_path, local, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "nope.ome.tif")}])
    assert run_upload(csv_path, config, local) == 1
    one_error_line(capsys, ID, "nope.ome.tif", "does not exist")


def test_unknown_config_key(tmp_path, local, capsys):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 1, 1, 1, shape=SHAPE)
    config = config_file(tmp_path, local, upload_type="frames", frame_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    assert run_upload(csv_path, config, local) == 1
    one_error_line(capsys, "config.json", "frame_format")


def test_duplicate_frames_are_refused_before_writing(tmp_path, local, capsys):
    folder = tmp_path / "tifs"
    write_tif_folder(folder, ["GFP"], nbr_slices=2, shape=SHAPE)
    # A second file claiming the same channel/slice/time/position as z000.
    meta = tifffile.TiffFile(folder / "img_GFP_t000_p000_z000.tif").pages[0].tags[51123].value
    tifffile.imwrite(folder / "img_GFP_t000_p000_z009.tif", frame_pixels(0, 9, 0, 0, SHAPE),
                     extratags=[(51123, "s", 0, json.dumps(meta), True)], metadata=None)
    config = config_file(tmp_path, local, upload_type="frames", frames_format="tif_folder")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(folder)}])
    assert run_upload(csv_path, config, local) == 1
    one_error_line(capsys, ID, "img_GFP_t000_p000_z009.tif", "duplicate frame")
    assert stored_files(local) == [] and registered(local) == []


def test_bad_float_pixels_leave_nothing_behind(tmp_path, local, capsys):
    stack = np.stack([frame_pixels(0, z, 0, 0, SHAPE).astype(np.float32) for z in range(4)])
    stack[2, 5, 5] = 0.5  # one fractional pixel on the third page
    tifffile.imwrite(tmp_path / "stack.tif", stack.reshape(1, 4, 1, *SHAPE), imagej=True)
    config = config_file(tmp_path, local, upload_type="frames", frames_format="tif_id", nbr_workers=1)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "stack.tif")}])
    assert run_upload(csv_path, config, local) == 1
    line = capsys.readouterr().err
    assert "page 2" in line and "whole numbers" in line and ID in line and "stack.tif" in line
    assert stored_files(local) == [] and registered(local) == []


@pytest.mark.parametrize("frames_format", ["ome_tiff", "tif_id"])
def test_truncated_file_is_refused_before_writing(tmp_path, local, capsys, frames_format):
    """Pixels are read only when encoded, so the scan checks that every page's data lies within its file."""
    if frames_format == "ome_tiff":
        (path,) = write_mm_ometiff(tmp_path / "acq", ["GFP"], 3, 1, 1, shape=SHAPE)
    else:
        path = write_imagej_stack(tmp_path / "stack.tif", 1, 3, shape=SHAPE)
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[-1]
        cut = last.dataoffsets[0] + 100  # inside the last page's pixels
    path.write_bytes(path.read_bytes()[:cut])
    config = config_file(tmp_path, local, upload_type="frames", frames_format=frames_format)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(path)}])
    assert run_upload(csv_path, config, local) == 1
    expected = {"ome_tiff": f"page 2: its pixel data ends at byte {cut - 100 + 2 * SHAPE[0] * SHAPE[1]} but the "
                            f"file has only {cut} bytes (truncated?)",
                # ImageJ's later IFDs were cut too: checked as a contiguous > 4 GB stack
                "tif_id": f"the file has {cut} bytes, its 3 images need"}
    one_error_line(capsys, ID, path.name, expected[frames_format])
    assert stored_files(local) == [] and registered(local) == []


def test_meta_schema_violation(tmp_path, local, capsys):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 2, 1, 1, shape=SHAPE)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["Objective"]}))
    config = config_file(tmp_path, local, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq"),
                                     "meta_schema": str(schema)}])
    assert run_upload(csv_path, config, local) == 1
    one_error_line(capsys, ID, "page 0", "'Objective' is a required property")
    assert stored_files(local) == []


def test_example_files_and_schema(tmp_path, local, capsys):
    """The shipped config.json and metadata_schema.json accept real Micro-Manager 1.4 and 2.0 data."""
    for version in ("1.4", "2.0"):
        write_mm_ometiff(tmp_path / version, ["GFP"], 2, 1, 1, shape=SHAPE, mm_version=version)
    shipped = json.loads((REPO / "config.json").read_text())
    shipped.update(storage_access=str(local["storage"]), meta_schema=str(REPO / "metadata_schema.json"))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(shipped))
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "1.4")},
                                    {"dataset_id": ID2, "file_name": str(tmp_path / "2.0")}])
    assert run_upload(csv_path, config, local) == 0
    assert sorted(registered(local)) == [ID, ID2]


def test_existing_id_refused_others_continue(tmp_path, local, capsys):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 2, 1, 1, shape=SHAPE)
    config = config_file(tmp_path, local, upload_type="frames", frames_format="ome_tiff")
    first = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq"), "description": "v1"}])
    assert run_upload(first, config, local) == 0
    before = query(local["db"], "SELECT f.id, f.sha256 FROM frames f ORDER BY f.id")
    both = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq"), "description": "v2"},
                                {"dataset_id": ID2, "file_name": str(tmp_path / "acq")}], name="both.csv")
    capsys.readouterr()
    assert run_upload(both, config, local) == 1
    captured = capsys.readouterr()
    assert f"{ID}: FAILED: dataset {ID} is already in the database" in captured.err
    assert "1 of 2 dataset(s) failed" in captured.err
    assert f"{ID2}: 2 frames" in captured.out
    assert query(local["db"], "SELECT description FROM data_set WHERE dataset_serial = :s", s=ID)[0] == {
        "description": "v1"}
    assert query(local["db"], "SELECT f.id, f.sha256 FROM frames f WHERE f.id <= :n ORDER BY f.id",
                 n=before[-1]["id"]) == before


def test_worker_error_reaches_the_user(tmp_path, local, capsys, monkeypatch):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 6, 1, 1, shape=SHAPE)
    config = config_file(tmp_path, local, upload_type="frames", frames_format="ome_tiff", nbr_workers=2)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    import imaging_db.pipeline.frame_store as frame_store

    def failing(real):
        def encode(pixels, *args):
            if np.asarray(pixels)[0, 0] == frame_pixels(0, 3, 0, 0, SHAPE)[0, 0]:
                raise RuntimeError("encoder exploded on slice 3")
            return real(pixels, *args)
        return encode

    # Fresh uploads encode through png_pieces; resumed ones (--override) need the whole PNG (encode_png).
    monkeypatch.setattr(frame_store, "png_pieces", failing(frame_store.png_pieces))
    monkeypatch.setattr(frame_store, "encode_png", failing(frame_store.encode_png))
    assert run_upload(csv_path, config, local) == 2
    err = capsys.readouterr().err
    assert "encoder exploded on slice 3" in err and "--verbose" in err and "Traceback" not in err
    assert registered(local) == []
    # With --verbose the traceback is shown.
    assert run_upload(csv_path, config, local, "--verbose", "--override") == 2
    assert "Traceback" in capsys.readouterr().err


def test_pending_frames_are_bounded(tmp_path, local, monkeypatch):
    """Frames read but not yet stored never exceed the in-flight bound, whatever the file size."""
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 40, 1, 1, shape=SHAPE)
    config = config_file(tmp_path, local, upload_type="frames", frames_format="ome_tiff", nbr_workers=2)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    from imaging_db.filestorage.local_storage import LocalDataStorage
    from imaging_db.images.splitters.ometif_splitter import OmeTiffSplitter

    counts = {"read": 0, "stored": 0, "max_pending": 0}
    real_frames, real_put = OmeTiffSplitter.frames, LocalDataStorage.put_stream

    def counting_frames(self, read_pixels=True):
        for frame in real_frames(self, read_pixels):
            if read_pixels:
                counts["read"] += 1
                counts["max_pending"] = max(counts["max_pending"], counts["read"] - counts["stored"])
            yield frame

    def slow_put(self, key, pieces):
        import time
        time.sleep(0.005)
        size = real_put(self, key, pieces)
        counts["stored"] += 1
        return size

    monkeypatch.setattr(OmeTiffSplitter, "frames", counting_frames)
    monkeypatch.setattr(LocalDataStorage, "put_stream", slow_put)
    assert run_upload(csv_path, config, local) == 0
    assert counts["read"] == 40 and counts["stored"] == 40
    assert counts["max_pending"] <= 2 * 2 + 1


def test_password_never_printed(tmp_path, capsys):
    login = tmp_path / "login.json"
    login.write_text(json.dumps({"drivername": "postgres", "username": "postgres", "password": "Sup3rS3cretPw",
                                 "host": "127.0.0.1", "port": 1, "dbname": "nope"}))
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 1, 1, 1, shape=SHAPE)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"upload_type": "frames", "frames_format": "ome_tiff",
                                  "storage_access": str(tmp_path / "s")}))
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    for verbose in ([], ["--verbose"]):
        assert data_uploader.main(["--csv", str(csv_path), "--config", str(config), "--login", str(login),
                                   "--no-progress", *verbose]) == 1
        captured = capsys.readouterr()
        assert "Sup3rS3cretPw" not in captured.out + captured.err
        assert "127.0.0.1" in captured.err and "***" in captured.err
    assert data_downloader.main(["--id", ID, "--dest", str(tmp_path / "dl"), "--login", str(login)]) == 1
    captured = capsys.readouterr()
    assert "Sup3rS3cretPw" not in captured.out + captured.err


def test_download_errors(tmp_path, local, capsys):
    write_mm_ometiff(tmp_path / "acq", ["GFP", "RFP"], 2, 1, 1, shape=SHAPE)
    config = config_file(tmp_path, local, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    assert run_upload(csv_path, config, local) == 0
    capsys.readouterr()
    base = ["--login", str(local["login"]), "--storage_access", str(local["storage"]), "--no-progress"]
    dest = tmp_path / "dl"

    assert data_downloader.main(["--id", ID2, "--dest", str(dest), *base]) == 1
    one_error_line(capsys, ID2, "not in the database")
    assert data_downloader.main(["--id", "not-an-id", "--dest", str(dest), *base]) == 1
    one_error_line(capsys, "invalid dataset id 'not-an-id'")
    assert data_downloader.main(["--id", ID, "--dest", str(dest), "-c", "YFP", *base]) == 1
    one_error_line(capsys, ID, "channel 'YFP'", "['GFP', 'RFP']")
    assert data_downloader.main(["--id", ID, "--dest", str(dest), "-z", "0", "7", *base]) == 1
    one_error_line(capsys, ID, "slice 7", "slices [0, 1]")
    assert data_downloader.main(["--id", ID, "--dest", str(dest), "--no-download", "--no-metadata", *base]) == 1
    one_error_line(capsys, "nothing to do")
    assert not dest.exists() or list(dest.iterdir()) == []

    # Metadata only, then frames only; the existing folder is never overwritten.
    assert data_downloader.main(["--id", ID, "--dest", str(dest), "--no-download", *base]) == 0
    assert sorted(p.name for p in (dest / ID).iterdir()) == ["frames_meta.csv", "global_metadata.json"]
    capsys.readouterr()
    assert data_downloader.main(["--id", ID, "--dest", str(dest), *base]) == 1
    one_error_line(capsys, str(dest / ID), "already exists")
    assert sorted(p.name for p in (dest / ID).iterdir()) == ["frames_meta.csv", "global_metadata.json"]
    assert data_downloader.main(["--id", ID, "--dest", str(tmp_path / "dl2"), "--no-metadata", "-c", "1",
                                 *base]) == 0
    check_downloaded(tmp_path / "dl2" / ID, {(1, z, 0, 0): frame_pixels(1, z, 0, 0, SHAPE) for z in range(2)})
    assert not (tmp_path / "dl2" / ID / "frames_meta.csv").exists()


def test_filters_do_not_apply_to_file_datasets(tmp_path, local, capsys):
    source = tmp_path / "notes.txt"
    source.write_text("hello")
    config = config_file(tmp_path, local, upload_type="file")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source)}])
    assert run_upload(csv_path, config, local) == 0
    capsys.readouterr()
    assert data_downloader.main(["--id", ID, "--dest", str(tmp_path / "dl"), "-c", "0", "--login",
                                 str(local["login"]), "--storage_access", str(local["storage"])]) == 1
    one_error_line(capsys, ID, "file dataset")


def test_embedded_default_without_login(tmp_path, imaging_home, capsys):
    """With no --login and no storage settings everything lands under $IMAGING_DB_HOME."""
    write_imagej_stack(tmp_path / "stack.tif", 1, 3, shape=SHAPE)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"upload_type": "frames", "frames_format": "tif_id"}))
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "stack.tif")}])
    assert data_uploader.main(["--csv", str(csv_path), "--config", str(config)]) == 0
    assert (imaging_home / "imaging_db.sqlite").is_file()
    assert sorted(p.name for p in (imaging_home / "storage" / "raw_frames" / ID).iterdir()) == [
        f"im_c000_z{z:03d}_t000_p000.png" for z in range(3)]
    assert data_downloader.main(["--id", ID, "--dest", str(tmp_path / "dl")]) == 0
    check_downloaded(tmp_path / "dl" / ID, {(0, z, 0, 0): frame_pixels(0, z, 0, 0, SHAPE) for z in range(3)})


def test_download_before_any_upload_creates_no_database(tmp_path, imaging_home, capsys):
    """A reader pointed at a database that does not exist says so and leaves no empty file behind."""
    assert data_downloader.main(["--id", ID, "--dest", str(tmp_path / "dl")]) == 1
    line = one_error_line(capsys, ID, "imaging_db.sqlite", "does not exist", "$IMAGING_DB_HOME")
    assert line.startswith(f"data_downloader: error: dataset {ID} cannot be looked up: the SQLite database")
    assert not (imaging_home / "imaging_db.sqlite").exists()
    assert not (tmp_path / "dl").exists()


def test_cli_as_scripts_and_console_scripts(tmp_path):
    """The CLIs run as `python imaging_db/cli/<name>.py` from a checkout and as installed console scripts."""
    write_imagej_stack(tmp_path / "stack.tif", 2, 1, shape=SHAPE)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"upload_type": "frames", "frames_format": "tif_id"}))
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "stack.tif")}])
    env = {**os.environ, "IMAGING_DB_HOME": str(tmp_path / "home"), "PYTHONPATH": ""}
    upload = subprocess.run([sys.executable, str(REPO / "imaging_db" / "cli" / "data_uploader.py"),
                             "--csv", str(csv_path), "--config", str(config)],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert upload.returncode == 0, upload.stderr
    assert f"{ID}: 2 frames" in upload.stdout
    bin_dir = Path(sys.executable).parent
    download = subprocess.run([str(bin_dir / "data_downloader"), "--id", ID, "--dest", str(tmp_path / "dl")],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
    assert download.returncode == 0, download.stderr
    check_downloaded(tmp_path / "dl" / ID, {(c, 0, 0, 0): frame_pixels(c, 0, 0, 0, SHAPE) for c in range(2)})
    failing = subprocess.run([str(bin_dir / "data_uploader"), "--csv", str(tmp_path / "missing.csv"),
                              "--config", str(config)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert failing.returncode == 1
    assert failing.stderr.strip().splitlines() == [f"data_uploader: error: CSV file '{tmp_path / 'missing.csv'}' does not exist"]


def test_ctrl_c_during_upload_says_how_to_resume(tmp_path, local, capsys, monkeypatch):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 6, 1, 1, shape=SHAPE)
    config = config_file(tmp_path, local, upload_type="frames", frames_format="ome_tiff", nbr_workers=1)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    from imaging_db.filestorage.local_storage import LocalDataStorage

    real_put, calls = LocalDataStorage.put_stream, []

    def put_then_ctrl_c(self, key, pieces):
        calls.append(key)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_put(self, key, pieces)

    monkeypatch.setattr(LocalDataStorage, "put_stream", put_then_ctrl_c)
    assert run_upload(csv_path, config, local) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--override" in err and "Traceback" not in err
    stored = stored_files(local)
    assert registered(local) == [] and 2 <= len(stored) < 6
    assert f"raw_frames/{ID}/im_c000_z002_t000_p000.png" not in stored
    monkeypatch.setattr(LocalDataStorage, "put_stream", real_put)
    assert run_upload(csv_path, config, local, "--override") == 0
    assert f"{len(stored)} already stored" in capsys.readouterr().out
    assert registered(local) == [ID] and len(stored_files(local)) == 6


def test_download_from_an_unreachable_database_says_so(tmp_path, capsys):
    login = tmp_path / "login.json"
    login.write_text(json.dumps({"drivername": "postgres", "username": "postgres", "host": "127.0.0.1",
                                 "port": 1, "dbname": "imaging_db"}))
    assert data_downloader.main(["--id", ID, "--dest", str(tmp_path / "dl"), "--login", str(login)]) == 1
    line = one_error_line(capsys, f"looking up dataset {ID} failed", "127.0.0.1", "port 1")
    assert "inspecting tables" not in line
