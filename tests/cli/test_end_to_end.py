"""End to end through the CLIs: write realistic inputs, upload, check rows, download, compare pixels bit for bit.

Every test here runs on each database (SQLite, PostgreSQL) and each storage
(local folder, S3 over HTTP on moto).
"""

import csv
import hashlib
import json

import numpy as np
import pytest
import sqlalchemy as sa

from imaging_db.cli import data_downloader, data_uploader
from imaging_db.example_data import (
    frame_pixels,
    write_imagej_stack,
    write_mm_ometiff,
    write_tif_folder,
)
from imaging_db.filestorage import make_storage
from imaging_db.images.png import decode_png

ID = "ML-2018-11-07-09-35-54-0010"
ID2 = "ML-2018-11-07-09-35-54-0011"
SHAPE = (40, 56)


def write_config(tmp_path, storage_spec, **settings):
    config = {"storage": storage_spec["storage"], "storage_access": storage_spec["storage_access"]}
    if storage_spec["s3_endpoint_url"]:
        config["s3_endpoint_url"] = storage_spec["s3_endpoint_url"]
    config.update(settings)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def write_csv(tmp_path, rows, name="files.csv"):
    path = tmp_path / name
    columns = ["dataset_id", "file_name", "description", "parent_dataset_id", "positions", "meta_schema"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})
    return path


def upload(csv_path, config_path, login_file, *extra):
    return data_uploader.main(["--csv", str(csv_path), "--config", str(config_path),
                               "--login", str(login_file), "--no-progress", *extra])


def download(dataset_id, dest, login_file, storage_spec, *extra):
    args = ["--id", dataset_id, "--dest", str(dest), "--login", str(login_file), "--no-progress",
            "--storage", storage_spec["storage"], "--storage_access", storage_spec["storage_access"]]
    if storage_spec["s3_endpoint_url"]:
        args += ["--s3_endpoint_url", storage_spec["s3_endpoint_url"]]
    return data_downloader.main(args + list(extra))


def query(db_url, sql, **params):
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    finally:
        engine.dispose()


def dataset_rows(db_url, serial):
    data_set = query(db_url, "SELECT * FROM data_set WHERE dataset_serial = :s", s=serial)
    assert len(data_set) == 1, f"{serial} not registered exactly once"
    frames_global = query(db_url, "SELECT * FROM frames_global WHERE dataset_id = :i", i=data_set[0]["id"])
    frames = []
    if frames_global:
        frames = query(db_url, "SELECT * FROM frames WHERE frames_global_id = :i ORDER BY pos_idx, time_idx, "
                               "channel_idx, slice_idx", i=frames_global[0]["id"])
    return data_set[0], (frames_global[0] if frames_global else None), frames


def as_dict(value):
    return json.loads(value) if isinstance(value, str) else value


def check_downloaded(folder, expected: dict):
    """Every expected frame is in ``folder`` as a PNG bit-identical to the source pixels, and nothing else."""
    pngs = sorted(p.name for p in folder.glob("*.png"))
    names = sorted(f"im_c{c:03d}_z{z:03d}_t{t:03d}_p{p:03d}.png" for (c, z, t, p) in expected)
    assert pngs == names
    for (c, z, t, p), pixels in expected.items():
        got = decode_png((folder / f"im_c{c:03d}_z{z:03d}_t{t:03d}_p{p:03d}.png").read_bytes())
        assert got.dtype == pixels.dtype and got.shape == pixels.shape
        assert np.array_equal(got, pixels), f"frame {(c, z, t, p)} differs"


def test_ome_tiff_round_trip(tmp_path, db_url, login_file, storage_spec, capsys):
    channels = ["GFP", "Cy5 far red"]
    write_mm_ometiff(tmp_path / "acq", channels, nbr_slices=3, nbr_times=2, nbr_positions=2,
                     shape=SHAPE, max_pages_per_file=5)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff",
                          microscope="Leica DMi8")
    csv_path = write_csv(tmp_path, [
        {"dataset_id": ID, "file_name": str(tmp_path / "acq"), "description": "two positions"},
        {"dataset_id": ID2, "file_name": str(tmp_path / "acq"), "parent_dataset_id": ID, "positions": "[1]"},
    ])
    assert upload(csv_path, config, login_file) == 0
    out = capsys.readouterr().out
    assert f"{ID}: 24 frames" in out and f"{ID2}: 12 frames" in out and "MB/s" in out

    data_set, frames_global, frames = dataset_rows(db_url, ID)
    assert data_set["description"] == "two positions" and data_set["microscope"] == "Leica DMi8"
    assert bool(data_set["frames"]) is True and data_set["parent_id"] is None
    assert str(data_set["date_time"]).startswith("2018-11-07 09:35:54")
    assert {k: frames_global[k] for k in ("nbr_frames", "im_width", "im_height", "im_colors", "bit_depth",
                                          "nbr_slices", "nbr_channels", "nbr_timepoints", "nbr_positions",
                                          "storage_dir")} == {
        "nbr_frames": 24, "im_width": SHAPE[1], "im_height": SHAPE[0], "im_colors": 1, "bit_depth": "uint16",
        "nbr_slices": 3, "nbr_channels": 2, "nbr_timepoints": 2, "nbr_positions": 2,
        "storage_dir": f"raw_frames/{ID}"}
    global_meta = as_dict(frames_global["metadata_json"])
    assert global_meta["ChNames"] == channels and global_meta["file_origin"] == str(tmp_path / "acq")
    assert len(frames) == 24
    storage = make_storage(storage_spec["storage"], storage_spec["storage_access"],
                           s3_endpoint_url=storage_spec["s3_endpoint_url"])
    for row in frames:
        meta = as_dict(row["metadata_json"])
        assert (meta["ChannelIndex"], meta["SliceIndex"], meta["FrameIndex"], meta["PositionIndex"]) == (
            row["channel_idx"], row["slice_idx"], row["time_idx"], row["pos_idx"])
        assert row["channel_name"] == channels[row["channel_idx"]]
        key = f"raw_frames/{ID}/{row['file_name']}"
        assert hashlib.sha256(storage.get(key)).hexdigest() == row["sha256"]
    child, child_global, child_frames = dataset_rows(db_url, ID2)
    assert child["parent_id"] == data_set["id"]
    assert {r["pos_idx"] for r in child_frames} == {1} and child_global["nbr_positions"] == 1

    dest = tmp_path / "dl"
    assert download(ID, dest, login_file, storage_spec, "-c", "Cy5 far red", "-z", "0", "2", "-p", "1") == 0
    folder = dest / ID
    expected = {(1, z, t, 1): frame_pixels(1, z, t, 1, SHAPE) for z in (0, 2) for t in (0, 1)}
    check_downloaded(folder, expected)
    meta = json.loads((folder / "global_metadata.json").read_text())
    assert meta["dataset_serial"] == ID and meta["nbr_frames"] == 24 and meta["microscope"] == "Leica DMi8"
    assert meta["metadata_json"]["ChNames"] == channels
    with open(folder / "frames_meta.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert all(r["channel_name"] == "Cy5 far red" and r["pos_idx"] == "1" for r in rows)
    by_name = {r["file_name"]: r for r in frames}
    assert all(r["sha256"] == by_name[r["file_name"]]["sha256"] for r in rows)

    # Channels by index, all frames of the child dataset.
    assert download(ID2, dest, login_file, storage_spec, "-c", "0") == 0
    check_downloaded(dest / ID2, {(0, z, t, 1): frame_pixels(0, z, t, 1, SHAPE)
                                  for z in range(3) for t in range(2)})
    assert json.loads((dest / ID2 / "global_metadata.json").read_text())["parent_dataset_id"] == ID


@pytest.mark.parametrize("mm_tags", [True, False], ids=["mm_tags", "names"])
def test_tif_folder_round_trip(tmp_path, db_url, login_file, storage_spec, mm_tags):
    channels = ["DAPI", "GFP_long"]
    write_tif_folder(tmp_path / "tifs", channels, nbr_slices=2, nbr_times=2, shape=SHAPE, dtype="uint8",
                     mm_tags=mm_tags)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="tif_folder")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "tifs")}])
    assert upload(csv_path, config, login_file) == 0
    _, frames_global, frames = dataset_rows(db_url, ID)
    assert frames_global["bit_depth"] == "uint8" and frames_global["nbr_frames"] == 8
    assert as_dict(frames_global["metadata_json"])["Summary"]["ChNames"] == channels
    assert {(r["channel_idx"], r["channel_name"]) for r in frames} == {(0, "DAPI"), (1, "GFP_long")}
    assert download(ID, tmp_path / "dl", login_file, storage_spec, "-c", "GFP_long", "-t", "1") == 0
    check_downloaded(tmp_path / "dl" / ID, {(1, z, 1, 0): frame_pixels(1, z, 1, 0, SHAPE, "uint8")
                                            for z in range(2)})


@pytest.mark.parametrize("dtype,shape", [("uint16", SHAPE), ("float32", SHAPE), ("uint8", (*SHAPE, 3))],
                         ids=["uint16", "float32", "rgb8"])
def test_tif_id_round_trip(tmp_path, db_url, login_file, storage_spec, dtype, shape):
    write_imagej_stack(tmp_path / "stack.tif", nbr_channels=2, nbr_slices=3, nbr_times=2, shape=shape,
                       dtype=dtype, channel_names=["BF", "GFP"])
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="tif_id")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "stack.tif")}])
    assert upload(csv_path, config, login_file) == 0
    _, frames_global, frames = dataset_rows(db_url, ID)
    stored_dtype = "uint16" if dtype == "float32" else dtype
    assert frames_global["bit_depth"] == stored_dtype
    assert frames_global["im_colors"] == (3 if len(shape) == 3 else 1)
    assert (frames_global["nbr_channels"], frames_global["nbr_slices"], frames_global["nbr_timepoints"]) == (2, 3, 2)
    assert {r["channel_name"] for r in frames} == {"BF", "GFP"}
    assert download(ID, tmp_path / "dl", login_file, storage_spec) == 0
    check_downloaded(tmp_path / "dl" / ID, {
        (c, z, t, 0): frame_pixels(c, z, t, 0, shape, stored_dtype)
        for c in range(2) for z in range(3) for t in range(2)})


def test_file_round_trip(tmp_path, db_url, login_file, storage_spec):
    source = tmp_path / "Plate1_17_SEC61B_stack_PyProcessed.tif"
    source.write_bytes(np.random.default_rng(3).bytes(3_000_000))
    config = write_config(tmp_path, storage_spec, upload_type="file", filename_parser="parse_ml_name")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source), "description": "raw"}])
    assert upload(csv_path, config, login_file) == 0
    data_set, frames_global, _ = dataset_rows(db_url, ID)
    assert bool(data_set["frames"]) is False and frames_global is None
    file_global = query(db_url, "SELECT * FROM file_global WHERE dataset_id = :i", i=data_set["id"])[0]
    assert file_global["file_name"] == source.name and file_global["storage_dir"] == f"raw_files/{ID}"
    assert file_global["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    meta = as_dict(file_global["metadata_json"])
    assert (meta["plate_id"], meta["stack_nbr"], meta["protein_name"]) == ("Plate1", 17, "SEC61B")
    assert download(ID, tmp_path / "dl", login_file, storage_spec) == 0
    assert (tmp_path / "dl" / ID / source.name).read_bytes() == source.read_bytes()
    assert json.loads((tmp_path / "dl" / ID / "global_metadata.json").read_text())["sha256"] == file_global["sha256"]


def test_resume_with_override(tmp_path, db_url, login_file, storage_spec, monkeypatch, capsys):
    """An upload cut off midway leaves no rows; --override finishes it, storing only the missing frames."""
    write_mm_ometiff(tmp_path / "acq", ["GFP"], nbr_slices=4, nbr_times=3, nbr_positions=1, shape=SHAPE)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff", nbr_workers=1)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])

    from imaging_db.errors import StorageError
    from imaging_db.filestorage.data_storage import DataStorage

    backend = type(make_storage(storage_spec["storage"], storage_spec["storage_access"],
                                s3_endpoint_url=storage_spec["s3_endpoint_url"]))
    real_put, real_put_stream = backend.put, backend.put_stream
    calls = {"n": 0}

    def flaky(real):
        def put(self, key, data):
            calls["n"] += 1
            if calls["n"] > 5:
                raise StorageError("connection reset by peer")
            return real(self, key, data)
        return put

    # A fresh upload streams each PNG to a local file (put_stream); S3 and resumed uploads use put.
    monkeypatch.setattr(backend, "put", flaky(real_put))
    monkeypatch.setattr(backend, "put_stream", flaky(real_put_stream))
    assert upload(csv_path, config, login_file) == 1
    err = capsys.readouterr().err
    assert "connection reset by peer" in err and "--override" in err
    assert query(db_url, "SELECT count(*) AS n FROM frames")[0]["n"] == 0
    assert query(db_url, "SELECT count(*) AS n FROM data_set")[0]["n"] == 0
    monkeypatch.setattr(backend, "put", real_put)
    monkeypatch.setattr(backend, "put_stream", real_put_stream)
    assert issubclass(backend, DataStorage)

    # Without --override the leftovers are refused, untouched.
    assert upload(csv_path, config, login_file) == 1
    assert "rerun with --override" in capsys.readouterr().err

    stored = []
    monkeypatch.setattr(backend, "put", lambda self, key, data: (stored.append(key), real_put(self, key, data)))
    assert upload(csv_path, config, login_file, "--override") == 0
    assert "5 already stored" in capsys.readouterr().out
    assert len(stored) == 12 - 5
    _, _, frames = dataset_rows(db_url, ID)
    assert len(frames) == 12
    assert download(ID, tmp_path / "dl", login_file, storage_spec) == 0
    check_downloaded(tmp_path / "dl" / ID, {(0, z, t, 0): frame_pixels(0, z, t, 0, SHAPE)
                                            for z in range(4) for t in range(3)})


def test_corrupt_object_fails_download(tmp_path, db_url, login_file, storage_spec, capsys):
    write_mm_ometiff(tmp_path / "acq", ["GFP"], nbr_slices=2, nbr_times=1, nbr_positions=1, shape=SHAPE)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    assert upload(csv_path, config, login_file) == 0
    storage = make_storage(storage_spec["storage"], storage_spec["storage_access"],
                           s3_endpoint_url=storage_spec["s3_endpoint_url"])
    key = f"raw_frames/{ID}/im_c000_z001_t000_p000.png"
    corrupted = storage.get(key)[:-1] + b"\x00"
    storage.delete(key)
    storage.put(key, corrupted)
    capsys.readouterr()
    assert download(ID, tmp_path / "dl", login_file, storage_spec) == 1
    err = capsys.readouterr().err
    assert "im_c000_z001_t000_p000.png" in err and "corrupt" in err and ID in err
    assert not (tmp_path / "dl" / ID).exists()
    assert [p.name for p in (tmp_path / "dl").iterdir()] == []


def test_uploader_storage_flags_override_the_config(tmp_path, moto_endpoint, s3_bucket, monkeypatch):
    """The three commands take the same storage flags: the config names a local folder, the flags an S3 bucket."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    login = tmp_path / "login.json"
    login.write_text(json.dumps({"drivername": "sqlite", "dbname": str(tmp_path / "db.sqlite")}))
    write_mm_ometiff(tmp_path / "acq", ["GFP"], 2, 1, 1, shape=SHAPE)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"upload_type": "frames", "storage": "local",
                                  "storage_access": str(tmp_path / "never_used")}))
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(tmp_path / "acq")}])
    s3 = {"storage": "s3", "storage_access": s3_bucket, "s3_endpoint_url": moto_endpoint}
    assert upload(csv_path, config, login, "--storage", "s3", "--storage_access", s3_bucket,
                  "--s3_endpoint_url", moto_endpoint) == 0
    assert not (tmp_path / "never_used").exists()
    assert sorted(make_storage("s3", s3_bucket, s3_endpoint_url=moto_endpoint).list(f"raw_frames/{ID}/")) == [f"raw_frames/{ID}/im_c000_z{z:03d}_t000_p000.png" for z in range(2)]
    assert download(ID, tmp_path / "dl", login, s3) == 0
    for z in range(2):
        got = decode_png((tmp_path / "dl" / ID / f"im_c000_z{z:03d}_t000_p000.png").read_bytes())
        assert np.array_equal(got, frame_pixels(0, z, 0, 0, SHAPE))
