"""Frames the original imagingDB stored come back bit-exact: pixel checksums, missing checksums, BGR colour."""

import json
import logging

import numpy as np
import pytest
import sqlalchemy as sa

from imaging_db.cli import data_downloader, data_verify, imaging_db_migrate
from imaging_db.filestorage import make_storage
from imaging_db.images.png import decode_png
from tests.conftest import _login_dict
from tests.legacy.original_db import create_original_tables, insert_file_dataset, insert_frames_dataset

pytestmark = pytest.mark.postgresql

GREY = "ML-2018-11-07-09-35-54-0010"
COLOUR = "ML-2018-11-07-09-35-54-0011"
OLD = "ML-2018-06-01-09-00-00-0001"
OLD_COLOUR = "ML-2018-06-01-09-00-00-0003"
NOTES = "ML-2018-06-01-09-00-00-0002"


def _grey():
    rng = np.random.default_rng(3)
    return {(c, z, 0, 0): rng.integers(0, 65535, (7, 9), dtype=np.uint16) for c in range(2) for z in range(3)}


def _colour():
    rng = np.random.default_rng(4)
    # Distinct channels, so that the BGR order cannot pass for RGB.
    return {(0, z, 0, 0): np.stack([rng.integers(0, 90, (6, 8)), rng.integers(90, 180, (6, 8)),
                                    rng.integers(180, 256, (6, 8))], axis=-1).astype(np.uint8) for z in range(2)}


@pytest.fixture
def lab(pg_url, tmp_path):
    """An original database (adopted) and its NAS folder, with grey, colour, checksum-less frames and a file."""
    nas = make_storage("local", str(tmp_path / "nas"))
    engine = sa.create_engine(pg_url)
    create_original_tables(engine, stamped=True)
    with engine.begin() as conn:
        insert_frames_dataset(conn, GREY, _grey(), ["GFP", "RFP"], store=nas.put)
        insert_frames_dataset(conn, COLOUR, _colour(), ["BF"], store=nas.put)
        insert_frames_dataset(conn, OLD, _grey(), ["GFP", "RFP"], checksums="none", store=nas.put)
        insert_frames_dataset(conn, OLD_COLOUR, _colour(), ["BF"], checksums="none", store=nas.put)
        insert_file_dataset(conn, NOTES, "notes.txt", b"what was done", store=nas.put, checksum=False)
    engine.dispose()
    login = tmp_path / "login.json"
    login.write_text(json.dumps(_login_dict(pg_url)))
    assert imaging_db_migrate.main(["--login", str(login), "--default-storage", "local",
                                    "--default-storage-access", str(tmp_path / "nas")]) == 0
    return login, nas


def _download(login, serial, dest, *flags):
    return data_downloader.main(["--id", serial, "--dest", str(dest), "--login", str(login), "--no-progress", *flags])


def _downloaded(folder, frames):
    for (c, z, t, p), pixels in frames.items():
        got = decode_png((folder / f"im_c{c:03d}_z{z:03d}_t{t:03d}_p{p:03d}.png").read_bytes())
        assert got.dtype == pixels.dtype and np.array_equal(got, pixels), (c, z, t, p)


def test_grey_frames_verified_by_their_pixel_checksum(lab, tmp_path):
    login, _ = lab
    assert _download(login, GREY, tmp_path / "dl") == 0
    _downloaded(tmp_path / "dl" / GREY, _grey())


def test_colour_frames_stored_in_bgr_order_come_back_as_rgb(lab, tmp_path):
    login, nas = lab
    stored = decode_png(nas.get(f"raw_frames/{COLOUR}/im_c000_z000_t000_p000.png"))
    assert np.array_equal(stored, _colour()[(0, 0, 0, 0)][..., ::-1])  # as the original left it
    assert _download(login, COLOUR, tmp_path / "dl") == 0
    _downloaded(tmp_path / "dl" / COLOUR, _colour())


def test_colour_frames_without_a_checksum_come_back_as_rgb(lab, tmp_path):
    """Only the original wrote rows without a checksum, and it wrote colour through OpenCV as BGR."""
    login, _ = lab
    assert _download(login, OLD_COLOUR, tmp_path / "dl") == 0
    _downloaded(tmp_path / "dl" / OLD_COLOUR, _colour())


def test_frames_without_a_checksum_are_read_and_said_to_be_unverified(lab, tmp_path, caplog):
    login, _ = lab
    with caplog.at_level(logging.WARNING):
        assert _download(login, OLD, tmp_path / "dl", "-c", "RFP") == 0
    _downloaded(tmp_path / "dl" / OLD, {k: v for k, v in _grey().items() if k[0] == 1})
    assert f"dataset {OLD}: 3 of 3 frame(s) have no recorded checksum" in caplog.text
    with caplog.at_level(logging.WARNING):
        assert _download(login, NOTES, tmp_path / "dl") == 0
    assert (tmp_path / "dl" / NOTES / "notes.txt").read_bytes() == b"what was done"
    assert f"dataset {NOTES}: file notes.txt has no recorded checksum" in caplog.text


def test_a_damaged_original_frame_is_still_caught(lab, tmp_path, capsys):
    login, nas = lab
    key = f"raw_frames/{GREY}/im_c001_z002_t000_p000.png"
    damaged = _grey()[(1, 2, 0, 0)].copy()
    damaged[0, 0] ^= 1
    from tests.legacy.original_db import encode_as_original

    nas.delete(key)
    nas.put(key, encode_as_original(damaged))
    assert _download(login, GREY, tmp_path / "dl") != 0
    assert "im_c001_z002_t000_p000.png in local:" in capsys.readouterr().err
    assert not (tmp_path / "dl" / GREY).exists()


def test_data_verify_checks_the_original_frames(lab, capsys):
    login, _ = lab
    assert data_verify.main(["--all", "--login", str(login), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "8 of 17 object(s) verified, 0 missing, 0 corrupt, 0 orphaned; OK" in out
    assert "without a recorded checksum" in out


def test_query_data_finds_the_original_datasets_and_new_uploads_go_in(lab, tmp_path, capsys):
    from imaging_db.cli import query_data
    from imaging_db.example_data import write_mm_ometiff
    from tests.cli.test_end_to_end import check_downloaded, upload, write_config, write_csv
    from imaging_db.example_data import frame_pixels

    login, _ = lab
    assert query_data.main(["--login", str(login), "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert {d["dataset_id"] for d in found} == {GREY, COLOUR, OLD, OLD_COLOUR, NOTES}
    assert next(d for d in found if d["dataset_id"] == GREY)["channels"] == ["GFP", "RFP"]

    new = "ML-2020-01-02-03-04-05-0001"
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 2, 1, 1, shape=(8, 6))
    config = write_config(tmp_path, {"storage": "local", "storage_access": str(tmp_path / "new_store"),
                                     "s3_endpoint_url": None}, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": new, "file_name": str(tmp_path / "acq"),
                                     "parent_dataset_id": GREY}])
    assert upload(csv_path, config, login) == 0
    assert _download(login, new, tmp_path / "dl") == 0
    check_downloaded(tmp_path / "dl" / new, {(0, z, 0, 0): frame_pixels(0, z, 0, 0, (8, 6)) for z in range(2)})
    assert query_data.main(["--login", str(login), "--parent", GREY, "--format", "csv"]) == 0
    assert new in capsys.readouterr().out
