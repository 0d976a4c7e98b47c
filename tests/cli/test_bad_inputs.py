"""The bad-input matrix: every case through the real CLIs, on SQLite and PostgreSQL.

Each case must give a non-zero exit, one error line on stderr naming the
dataset/file/problem, no traceback, and nothing written: the database rows
and every file of the storage (hidden ones included) are compared before and
after. Where a CSV is involved, the bad row comes after a good one, so the
good one must not be registered either: everything is checked before the
first byte is written.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import sqlalchemy as sa
import tifffile

from imaging_db.cli import data_downloader, data_uploader
from imaging_db.example_data import write_imagej_stack, write_mm_ometiff, write_tif_folder
from tests.cli.test_end_to_end import ID, ID2, SHAPE, write_csv

TABLES = ("data_set", "frames_global", "frames", "file_global")
GOOD_CONFIG = {"upload_type": "frames", "frames_format": "ome_tiff"}


@dataclass
class Env:
    tmp: Path
    db_url: sa.engine.URL
    login: Path
    storage: Path
    good: Path  # a good ome_tiff acquisition

    def config(self, settings: dict | None = None, raw: str | None = None, name: str = "config.json") -> Path:
        path = self.tmp / name
        if raw is not None:
            path.write_text(raw)
        else:
            path.write_text(json.dumps({"storage": "local", "storage_access": str(self.storage),
                                        **(GOOD_CONFIG if settings is None else settings)}))
        return path

    def csv(self, *bad_rows: dict, good_first: bool = True) -> Path:
        rows = ([{"dataset_id": ID, "file_name": str(self.good)}] if good_first else []) + list(bad_rows)
        return write_csv(self.tmp, rows)

    def upload(self, csv_path: Path, config: Path, *extra: str, login: Path | None = None) -> list[str]:
        return ["up", "--csv", str(csv_path), "--config", str(config), "--login", str(login or self.login), *extra]


def _snapshot(env: Env) -> tuple:
    engine = sa.create_engine(env.db_url)
    try:
        rows = {}
        inspector = sa.inspect(engine)
        with engine.connect() as conn:
            for table in TABLES:
                if inspector.has_table(table):
                    rows[table] = sorted(map(repr, conn.execute(sa.text(f"SELECT * FROM {table}")).all()))
    finally:
        engine.dispose()
    files = sorted((str(p.relative_to(env.storage)), p.stat().st_size)
                   for p in env.storage.rglob("*") if p.is_file()) if env.storage.exists() else []
    return rows, files


def _tiff_page(path: Path, pixels: np.ndarray, meta: dict | None = None) -> Path:
    extratags = [(51123, "s", 0, json.dumps(meta), True)] if meta is not None else []
    # A 3D array is one page of several samples (planes), not several pages.
    layout = {"photometric": "minisblack", "planarconfig": "separate"} if pixels.ndim == 3 else {}
    tifffile.imwrite(path, pixels, extratags=extratags, metadata=None, **layout)
    return path


def _mm_meta(c=0, z=0, t=0, p=0, channel="GFP") -> dict:
    return {"ChannelIndex": c, "SliceIndex": z, "FrameIndex": t, "PositionIndex": p, "Channel": channel}


def _folder(env: Env, name: str, frames: list[tuple[np.ndarray, dict | None]]) -> Path:
    folder = env.tmp / name
    folder.mkdir()
    for i, (pixels, meta) in enumerate(frames):
        _tiff_page(folder / f"img_{i:03d}.tif", pixels, meta)
    return folder


def _u16(shape=SHAPE):
    return np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)


# --------------------------------------------------------------------------- the cases
def csv_text(text: str) -> Callable[[Env], list[str]]:
    def make(env):
        path = env.tmp / "files.csv"
        path.write_text(text.replace("GOOD", str(env.good)))
        return env.upload(path, env.config())
    return make


def bad_row(row_maker: Callable[[Env], dict], config: dict | None = None) -> Callable[[Env], list[str]]:
    def make(env):
        return env.upload(env.csv(row_maker(env)), env.config(config))
    return make


def bad_config(settings: dict | None = None, raw: str | None = None) -> Callable[[Env], list[str]]:
    def make(env):
        return env.upload(env.csv(), env.config(settings, raw))
    return make


def bad_login(text: str) -> Callable[[Env], list[str]]:
    def make(env):
        login = env.tmp / "bad_login.json"
        login.write_text(text)
        return env.upload(env.csv(), env.config(), login=login)
    return make


def frames_folder(frames: Callable[[], list], fmt: str = "tif_folder") -> Callable[[Env], list[str]]:
    def make(env):
        folder = _folder(env, "bad", frames())
        return env.upload(_tif_folder_csv(env, folder), env.config({"upload_type": "frames", "frames_format": fmt}))
    return make


def _tif_folder_csv(env: Env, bad_folder: Path) -> Path:
    """A good tif_folder dataset first, then the bad one."""
    good = env.tmp / "good_tifs"
    write_tif_folder(good, ["GFP"], 2, shape=SHAPE)
    return write_csv(env.tmp, [{"dataset_id": ID, "file_name": str(good)},
                               {"dataset_id": ID2, "file_name": str(bad_folder)}])


def tif_id_file(pixels: Callable[[], np.ndarray]) -> Callable[[Env], list[str]]:
    def make(env):
        path = env.tmp / "stack.tif"
        tifffile.imwrite(path, pixels(), imagej=True, metadata={"axes": "ZYX"})
        write_imagej_stack(env.tmp / "good_stack.tif", 1, 2, shape=SHAPE)
        csv_path = write_csv(env.tmp, [{"dataset_id": ID, "file_name": str(env.tmp / "good_stack.tif")},
                                       {"dataset_id": ID2, "file_name": str(path)}])
        return env.upload(csv_path, env.config({"upload_type": "frames", "frames_format": "tif_id"}))
    return make


def ome_file(write: Callable[[Path], None]) -> Callable[[Env], list[str]]:
    def make(env):
        path = env.tmp / "bad.ome.tif"
        write(path)
        return env.upload(env.csv({"dataset_id": ID2, "file_name": str(path)}), env.config())
    return make


def _cut(size: float) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        folder = path.parent / "whole"
        (source,) = write_mm_ometiff(folder, ["GFP"], 3, 1, 1, shape=SHAPE)
        data = source.read_bytes()
        path.write_bytes(data[:size] if size >= 1 else data[:int(len(data) * size)])
    return write


def download(*args: str) -> Callable[[Env], list[str]]:
    def make(env):
        replaced = [a.replace("TMP", str(env.tmp)) for a in args]
        return ["down", "--login", str(env.login), "--storage", "local", "--storage_access", str(env.storage),
                *replaced]
    return make


CASES = [
    # CSV
    ("csv-empty-file", csv_text(""), r"CSV file .* lacks column"),
    ("csv-header-only", csv_text("dataset_id,file_name\n"), r"has no dataset rows"),
    ("csv-missing-file_name-column", csv_text(f"dataset_id\n{ID}\n"), r"lacks column\(s\) \['file_name'\]"),
    ("csv-unknown-column", csv_text(f"dataset_id,file_name,colour\n{ID},GOOD,red\n"), r"unknown column\(s\) \['colour'\]"),
    ("csv-extra-field", csv_text(f"dataset_id,file_name\n{ID},GOOD,extra\n"), r"3 fields but the header has 2"),
    ("csv-duplicate-id", csv_text(f"dataset_id,file_name\n{ID},GOOD\n{ID},GOOD\n"), rf"dataset {ID}.*also on line 2"),
    ("csv-bad-id", csv_text("dataset_id,file_name\nML-2018-13-07-09-35-54-0010,GOOD\n"), r"ML-2018-13-07-09-35-54-0010"),
    ("csv-empty-id", csv_text("dataset_id,file_name\n,GOOD\n"), r"dataset_id is empty"),
    ("csv-self-parent", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good), "parent_dataset_id": ID2}),
     rf"dataset {ID2}.*cannot be its own parent"),
    ("csv-parent-cycle", csv_text(f"dataset_id,file_name,parent_dataset_id\n{ID},GOOD,{ID2}\n{ID2},GOOD,{ID}\n"),
     rf"dataset {ID}.*its parent {ID2} comes later in the CSV"),
    ("csv-unknown-parent", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good),
                                              "parent_dataset_id": "ML-2018-11-07-09-35-54-0099"}),
     r"parent_dataset_id ML-2018-11-07-09-35-54-0099 is neither in the database nor in the CSV"),
    ("csv-positions-not-json", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good), "positions": "[0,"}),
     r"positions '\[0,' must be a JSON list"),
    ("csv-positions-negative", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good), "positions": "[-1]"}),
     r"must be a JSON list of non-negative integers"),
    ("csv-positions-absent", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good), "positions": "[7]"}),
     rf"dataset {ID2}: .*positions \[7\] not found"),
    ("csv-nul-in-description", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good),
                                                  "description": "a\x00b"}),
     rf"dataset {ID2}, CSV .*column description holds a NUL character"),
    ("csv-missing-meta-schema", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good),
                                                   "meta_schema": str(e.tmp / "nope.json")}), r"nope.json"),
    # config
    ("config-invalid-json", bad_config(raw="{not json"), r"config.json.*(JSON|json)"),
    ("config-not-an-object", bad_config(raw="[1, 2]"), r"config.json"),
    ("config-unknown-key", bad_config({**GOOD_CONFIG, "frames_fromat": "x"}), r"frames_fromat"),
    ("config-unknown-frames-format", bad_config({"upload_type": "frames", "frames_format": "czi"}), r"czi"),
    ("config-unknown-upload-type", bad_config({"upload_type": "movie"}), r"movie"),
    ("config-wrong-type-workers", bad_config({**GOOD_CONFIG, "nbr_workers": "many"}), r"nbr_workers"),
    ("config-unknown-storage", bad_config({**GOOD_CONFIG, "storage": "ftp"}), r"ftp"),
    ("config-unknown-parser", bad_config({**GOOD_CONFIG, "filename_parser": "parse_everything"}), r"parse_everything"),
    ("config-png-compression-out-of-range", bad_config({**GOOD_CONFIG, "png_compression": 12}), r"png_compression"),
    # login
    ("login-invalid-json", bad_login("{"), r"bad_login.json"),
    ("login-unknown-key", bad_login('{"drivername": "sqlite", "dbname": "x.db", "pasword": "s"}'), r"unknown key.*pasword"),
    ("login-unknown-driver", bad_login('{"drivername": "oracle", "dbname": "x"}'), r"unknown drivername 'oracle'"),
    ("login-bad-port", bad_login('{"drivername": "postgres", "username": "u", "host": "h", "dbname": "d", '
                                 '"port": "fifty"}'), r"port 'fifty' is not an integer"),
    ("login-sqlite-without-dbname", bad_login('{"drivername": "sqlite"}'), r"needs dbname"),
    # files
    ("file-missing", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.tmp / "absent.ome.tif")}),
     rf"dataset {ID2}.*absent.ome.tif' does not exist"),
    ("file-folder-for-file-upload", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good)},
                                            {"upload_type": "file"}), r"needs a file, not a folder"),
    ("file-not-a-tiff", ome_file(lambda p: p.write_bytes(b"this is not a TIFF at all" * 10)), r"not a readable TIFF"),
    ("file-cut-to-6-bytes", ome_file(_cut(6)), rf"dataset {ID2}: .*bad.ome.tif: not a readable TIFF"),
    ("file-truncated-mid-page", ome_file(_cut(0.8)), rf"dataset {ID2}: .*bad.ome.tif: .*(truncated|pixel data ends)"),
    ("file-zero-pages", ome_file(lambda p: p.write_bytes(b"II*\x00\x00\x00\x00\x00")),
     rf"dataset {ID2}: .*bad.ome.tif: (is a TIFF without any page|not a readable TIFF)"),
    ("file-empty-folder", frames_folder(lambda: []), r"folder holds no \*.tif files"),
    ("pixels-int32", frames_folder(lambda: [(_u16().astype(np.int32), _mm_meta())]), r"int32 pixels"),
    ("pixels-fractional-float-tif-id", tif_id_file(lambda: np.full((3, *SHAPE), 1.5, np.float32)),
     rf"dataset {ID2}: .*stack.tif: page 0: float32 pixels are not whole numbers"),
    ("pixels-3d-page", frames_folder(lambda: [(np.zeros((4, 40, 56), np.uint16), _mm_meta())]),
     r"only 2D grayscale or RGB frames"),
    ("frames-of-different-sizes", frames_folder(lambda: [(_u16(), _mm_meta(z=0)), (_u16((8, 8)), _mm_meta(z=1))]),
     r"img_001.tif page 0: frame is uint16 \(8, 8\) but .*img_000.tif page 0 is uint16 \(40, 56\)"),
    ("frames-of-different-dtypes", frames_folder(lambda: [(_u16(), _mm_meta(z=0)),
                                                          (_u16().astype(np.uint8), _mm_meta(z=1))]),
     r"frame is uint8 .* is uint16"),
    ("mm-metadata-invalid-json", frames_folder(lambda: [(_u16(), None)], fmt="tif_folder"),
     r"has no MicroManagerMetadata tag and its name is not img_"),
    ("mm-metadata-not-json", lambda env: (
        _tiff_page_raw(env), env.upload(_tif_folder_csv(env, env.tmp / "raw"),
                                        env.config({"upload_type": "frames", "frames_format": "tif_folder"})))[1],
     r"MicroManagerMetadata tag \(51123\) is not valid JSON"),
    ("mm-metadata-missing-index", frames_folder(lambda: [(_u16(), {"Channel": "GFP", "SliceIndex": 0})]),
     r"MicroManagerMetadata lacks ChannelIndex"),
    ("duplicate-frames", frames_folder(lambda: [(_u16(), _mm_meta()), (_u16(), _mm_meta())]),
     r"duplicate frame channel 0, slice 0, time 0, position 0"),
    ("slice-index-beyond-int32", frames_folder(lambda: [(_u16(), _mm_meta(z=2**31))]),
     r"slice index 2147483648 is outside"),
    ("nul-in-channel-name", frames_folder(lambda: [(_u16(), _mm_meta(channel="G\x00FP"))]),
     r"channel name 'G\\x00FP' holds a NUL"),
    ("backslash-in-file-name", lambda env: env.upload(
        env.csv({"dataset_id": ID2, "file_name": str(_plain_file(env, "a\\b.tif"))}, good_first=False),
        env.config({"upload_type": "file"})), r"a\\b.tif: this file name cannot be stored"),
    # downloads and workers
    ("download-unknown-id", download("--id", ID, "--dest", "TMP/dl"), rf"dataset {ID} is not in the database"),
    ("download-bad-id", download("--id", "not-an-id", "--dest", "TMP/dl"), r"not-an-id"),
    ("download-dest-is-a-file", lambda env: (
        _registered_good(env), (env.tmp / "afile").write_text("x"), download("--id", ID, "--dest", "TMP/afile")(env))[2],
     rf"dataset {ID}: cannot create a folder in .*afile"),
    ("download-filter-matches-nothing", lambda env: (
        _registered_good(env), download("--id", ID, "--dest", "TMP/dl", "-c", "Cy5", "-z", "9")(env))[1],
     rf"dataset {ID}: no frames with channel 'Cy5', slice 9; it has channels \['GFP'\]"),
    ("download-no-metadata-no-download", lambda env: (
        _registered_good(env), download("--id", ID, "--dest", "TMP/dl", "--no-metadata", "--no-download")(env))[1],
     r"leaves nothing to do"),
    ("nbr-workers-zero", lambda env: env.upload(env.csv(), env.config(), "--nbr_workers", "0"), r"nbr_workers"),
]


def _registered_good(env: Env) -> None:
    assert data_uploader.main(env.upload(env.csv(), env.config())[1:] + ["--no-progress"]) == 0


def _tiff_page_raw(env: Env) -> None:
    folder = env.tmp / "raw"
    folder.mkdir()
    tifffile.imwrite(folder / "img_000.tif", _u16(), extratags=[(51123, "s", 0, "{not json", True)], metadata=None)


def _plain_file(env: Env, name: str) -> Path:
    path = env.tmp / name
    path.write_bytes(b"some bytes")
    return path


@pytest.fixture
def env(tmp_path, db_url, login_file) -> Env:
    good = tmp_path / "good_acq"
    write_mm_ometiff(good, ["GFP"], 2, 1, 1, shape=SHAPE)
    return Env(tmp_path, db_url, login_file, tmp_path / "storage", good)


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 40 and len({name for name, _make, _pattern in CASES}) == len(CASES)


@pytest.mark.parametrize("make, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(env, make, pattern, capsys):
    args = make(env)
    before = _snapshot(env)
    capsys.readouterr()
    command, argv = args[0], args[1:]
    argparse_refused = False
    try:
        code = (data_uploader.main if command == "up" else data_downloader.main)([*argv, "--no-progress"])
    except SystemExit as exc:  # argparse refusing a value: its usage, then one error line
        code, argparse_refused = exc.code, True
    out, err = capsys.readouterr()
    assert code not in (0, None), out + err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    if argparse_refused:
        lines = [line for line in lines if ": error: " in line]
    assert len(lines) == 1, err
    assert re.search(pattern, lines[0]), lines[0]
    assert _snapshot(env) == before, "something was written"
