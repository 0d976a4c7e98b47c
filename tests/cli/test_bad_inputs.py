"""The bad-input matrix: every case through the real CLIs, on SQLite and PostgreSQL.

Each case must give a non-zero exit, one error line on stderr naming the
dataset/file/problem, no traceback, and nothing written: every row of every
table of the database (or "no tables"), every file and folder of the storage
(hidden ones included, with their content) and the download folders are
compared before and after. Where a CSV is involved, the bad row comes after a
good one, so the good one must not be registered either: everything is
checked before the first byte is written. A few cases run on S3 (moto) too.

A UTF-8 byte-order mark at the start of a CSV is accepted (Excel writes one):
see tests/metadata/test_upload_csv.py and ``test_csv_with_bom_uploads`` here.
"""

import hashlib
import json
import os
import re
import struct
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

GOOD_CONFIG = {"upload_type": "frames", "frames_format": "ome_tiff"}
ID3 = "ML-2018-11-07-09-35-54-0012"


@dataclass
class Env:
    tmp: Path
    db_url: sa.engine.URL
    login: Path
    storage: dict  # storage_spec: storage, storage_access, s3_endpoint_url
    good: Path  # a good ome_tiff acquisition (a folder)

    @property
    def storage_settings(self) -> dict:
        settings = {"storage": self.storage["storage"], "storage_access": self.storage["storage_access"]}
        if self.storage["s3_endpoint_url"]:
            settings["s3_endpoint_url"] = self.storage["s3_endpoint_url"]
        return settings

    @property
    def storage_flags(self) -> list[str]:
        flags = ["--storage", self.storage["storage"], "--storage_access", self.storage["storage_access"]]
        if self.storage["s3_endpoint_url"]:
            flags += ["--s3_endpoint_url", self.storage["s3_endpoint_url"]]
        return flags

    def config(self, settings: dict | None = None, raw: str | None = None, name: str = "config.json") -> Path:
        path = self.tmp / name
        if raw is not None:
            path.write_text(raw)
        else:
            path.write_text(json.dumps({**self.storage_settings, **(GOOD_CONFIG if settings is None else settings)}))
        return path

    def csv(self, *bad_rows: dict, good_first: bool = True) -> Path:
        rows = ([{"dataset_id": ID, "file_name": str(self.good)}] if good_first else []) + list(bad_rows)
        return write_csv(self.tmp, rows)

    def upload(self, csv_path: Path, config: Path, *extra: str, login: Path | None = None) -> list[str]:
        return ["up", "--csv", str(csv_path), "--config", str(config), "--login", str(login or self.login), *extra]

    def download(self, *args: str) -> list[str]:
        return ["down", "--login", str(self.login), *self.storage_flags, *args]


# --------------------------------------------------------------------------- snapshots
def _database_rows(url: sa.engine.URL) -> dict | str:
    engine = sa.create_engine(url)
    try:
        tables = sorted(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            rows = {table: sorted(map(repr, conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()))
                    for table in tables}
    finally:
        engine.dispose()
    return rows or "no tables"


def _tree(root: Path) -> list:
    """Every folder and file under ``root``, hidden ones included, files with their size and digest."""
    if not root.exists():
        return []
    if root.is_file():
        return [(".", root.stat().st_size, hashlib.sha256(root.read_bytes()).hexdigest())]
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found.append((os.path.relpath(os.path.join(folder, name), root), "folder"))
        for name in files:
            path = Path(folder, name)
            found.append((str(path.relative_to(root)), path.stat().st_size,
                          hashlib.sha256(path.read_bytes()).hexdigest()))
    return sorted(found, key=repr)


def _bucket(env: Env) -> list:
    """Every object (and unfinished multipart upload) of the S3 bucket."""
    import boto3

    client = boto3.client("s3", endpoint_url=env.storage["s3_endpoint_url"])
    bucket = env.storage["storage_access"]
    objects = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects += [(o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", [])]
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return sorted(objects) + sorted(("multipart", u["Key"]) for u in uploads)


def _snapshot(env: Env) -> dict:
    if env.storage["storage"] == "local":
        storage = _tree(Path(env.storage["storage_access"]))
    else:
        storage = _bucket(env)
    return {"database": _database_rows(env.db_url), "storage": storage,
            "downloads": [_tree(env.tmp / name) for name in ("dl", "afile")]}


# --------------------------------------------------------------------------- writers
def _u16(shape=SHAPE, start=0):
    return (np.arange(np.prod(shape), dtype=np.uint32).reshape(shape) + start).astype(np.uint16)


def _mm_meta(c=0, z=0, t=0, p=0, channel="GFP", **extra) -> dict:
    return {"ChannelIndex": c, "SliceIndex": z, "FrameIndex": t, "PositionIndex": p, "Channel": channel, **extra}


def _tiff_pages(path: Path, pages: list[tuple[np.ndarray, dict | str | None]], **kwargs) -> Path:
    """A TIFF whose pages each carry their own MicroManagerMetadata tag (a dict, raw text, or none).

    No OME-XML, which tifffile would add for a *.ome.tif name: pages without tags would then be an
    OME-TIFF that ome_tiff reads by its XML.
    """
    with tifffile.TiffWriter(path, ome=False) as tif:
        for pixels, meta in pages:
            extratags = []
            if meta is not None:
                text = meta if isinstance(meta, str) else json.dumps(meta)
                extratags = [(51123, "s", 0, text, True)]
            layout = {}
            if pixels.ndim == 3 and pixels.shape[2] == 4:
                layout = {"photometric": "rgb", "extrasamples": ["unassalpha"]}
            elif pixels.ndim == 3 and pixels.shape[2] != 3:
                # A 3D array is one page of several samples (planes), not several pages.
                layout = {"photometric": "minisblack", "planarconfig": "separate"}
            tif.write(pixels, extratags=extratags, metadata=None, **layout, **kwargs)
    return path


def _folder(env: Env, name: str, frames: list[tuple[np.ndarray, dict | str | None]]) -> Path:
    folder = env.tmp / name
    folder.mkdir()
    for i, (pixels, meta) in enumerate(frames):
        _tiff_pages(folder / f"img_{i:03d}.tif", [(pixels, meta)])
    return folder


def _corrupt_compressed(path: Path) -> None:
    """A zlib-compressed page whose compressed bytes are garbage: only decoding finds it."""
    _tiff_pages(path, [(_u16(), _mm_meta())], compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * count)


def _cut(size: float) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        folder = path.parent / "whole"
        (source,) = write_mm_ometiff(folder, ["GFP"], 3, 1, 1, shape=SHAPE)
        data = source.read_bytes()
        path.write_bytes(data[:size] if size >= 1 else data[:int(len(data) * size)])
    return write


def _empty_ifd(path: Path) -> None:
    """A TIFF whose only IFD has no tags: a page without width, height or data."""
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0) + struct.pack("<I", 0))


def _cut_at_page(page: int) -> Callable[[Path], None]:
    """A Micro-Manager file cut just where page ``page``'s IFD begins: tifffile alone sees fewer pages."""
    def write(path: Path) -> None:
        (source,) = write_mm_ometiff(path.parent / "whole", ["GFP"], 3, 1, 1, shape=SHAPE)
        with tifffile.TiffFile(source) as tif:
            offset = tif.pages[page].offset
        path.write_bytes(source.read_bytes()[:offset])
    return write


def _ome_less_folder(env: Env) -> Path:
    folder = env.tmp / "plain_tifs"
    folder.mkdir()
    _tiff_pages(folder / "a.tif", [(_u16(), _mm_meta())])
    return folder


def _plain_file(env: Env, name: str) -> Path:
    path = env.tmp / name
    path.write_bytes(b"some bytes")
    return path


def _registered_good(env: Env) -> None:
    assert data_uploader.main(env.upload(env.csv(), env.config())[1:] + ["--no-progress"]) == 0


def _registered_file(env: Env) -> None:
    csv_path = write_csv(env.tmp, [{"dataset_id": ID, "file_name": str(_plain_file(env, "notes.txt"))}])
    assert data_uploader.main(env.upload(csv_path, env.config({"upload_type": "file"}))[1:] + ["--no-progress"]) == 0


# --------------------------------------------------------------------------- case makers
def csv_text(text: str | bytes) -> Callable[[Env], list[str]]:
    """A CSV of this text (GOOD: the good acquisition) and the good config."""
    def make(env):
        path = env.tmp / "files.csv"
        if isinstance(text, bytes):
            path.write_bytes(text.replace(b"GOOD", os.fsencode(env.good)))
        else:
            path.write_text(text.replace("GOOD", str(env.good)))
        return env.upload(path, env.config())
    return make


def bad_row(row_maker: Callable[[Env], dict], config: dict | None = None) -> Callable[[Env], list[str]]:
    """The good row, then this one."""
    def make(env):
        return env.upload(env.csv(row_maker(env)), env.config(config))
    return make


def bad_file_row(row_maker: Callable[[Env], dict]) -> Callable[[Env], list[str]]:
    """A good ``file`` upload row, then this one."""
    def make(env):
        good = {"dataset_id": ID, "file_name": str(_plain_file(env, "notes.txt"))}
        return env.upload(write_csv(env.tmp, [good, row_maker(env)]), env.config({"upload_type": "file"}))
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


def _tif_folder_csv(env: Env, bad_folder: Path) -> Path:
    """A good tif_folder dataset first, then the bad one."""
    good = env.tmp / "good_tifs"
    write_tif_folder(good, ["GFP"], 2, shape=SHAPE)
    return write_csv(env.tmp, [{"dataset_id": ID, "file_name": str(good)},
                               {"dataset_id": ID2, "file_name": str(bad_folder)}])


def frames_folder(frames: Callable[[], list], fmt: str = "tif_folder") -> Callable[[Env], list[str]]:
    """A good tif_folder dataset, then a folder of single-page TIFFs with these pixels and tags."""
    def make(env):
        folder = _folder(env, "bad", frames())
        return env.upload(_tif_folder_csv(env, folder), env.config({"upload_type": "frames", "frames_format": fmt}))
    return make


def tif_folder(write: Callable[[Path], None]) -> Callable[[Env], list[str]]:
    """A good tif_folder dataset, then a folder that ``write`` fills."""
    def make(env):
        folder = env.tmp / "bad"
        folder.mkdir()
        write(folder)
        return env.upload(_tif_folder_csv(env, folder),
                          env.config({"upload_type": "frames", "frames_format": "tif_folder"}))
    return make


def tif_id_file(write: Callable[[Path], None], **row) -> Callable[[Env], list[str]]:
    """A good tif_id stack, then the one ``write`` writes (with more CSV columns in ``row``)."""
    def make(env):
        path = env.tmp / "stack.tif"
        write(path)
        write_imagej_stack(env.tmp / "good_stack.tif", 1, 2, shape=SHAPE)
        csv_path = write_csv(env.tmp, [{"dataset_id": ID, "file_name": str(env.tmp / "good_stack.tif")},
                                       {"dataset_id": ID2, "file_name": str(path), **row}])
        return env.upload(csv_path, env.config({"upload_type": "frames", "frames_format": "tif_id"}))
    return make


def imagej_pixels(pixels: Callable[[], np.ndarray]) -> Callable[[Path], None]:
    return lambda path: tifffile.imwrite(path, pixels(), imagej=True, metadata={"axes": "ZYX"})


def imagej_description(text: str, nbr_pages: int) -> Callable[[Path], None]:
    """A stack of ``nbr_pages`` pages whose first page's ImageDescription is ``text``."""
    return lambda path: tifffile.imwrite(path, np.stack([_u16()] * nbr_pages), description=text, metadata=None)


def ome_file(write: Callable[[Path], None]) -> Callable[[Env], list[str]]:
    """The good acquisition, then ``bad.ome.tif`` as ``write`` writes it."""
    def make(env):
        path = env.tmp / "bad.ome.tif"
        write(path)
        return env.upload(env.csv({"dataset_id": ID2, "file_name": str(path)}), env.config())
    return make


def ome_pages(pages: Callable[[], list]) -> Callable[[Env], list[str]]:
    return ome_file(lambda path: _tiff_pages(path, pages()))


def then(*steps: Callable[[Env], object]) -> Callable[[Env], list[str]]:
    """Run the steps in order (set-up first); the last one gives the command."""
    def make(env):
        for step in steps[:-1]:
            step(env)
        return steps[-1](env)
    return make


def download(*args: str) -> Callable[[Env], list[str]]:
    def make(env):
        return env.download(*[a.replace("TMP", str(env.tmp)) for a in args])
    return make


def _write_text(relative: str, text: str) -> Callable[[Env], None]:
    def write(env):
        (env.tmp / relative).write_text(text)
    return write


# --------------------------------------------------------------------------- the cases
CASES = [
    # ------------------------------------------------------------------ CSV
    ("csv-does-not-exist", lambda env: env.upload(env.tmp / "absent.csv", env.config()),
     r"CSV file .*absent.csv' does not exist"),
    ("csv-empty-file", csv_text(""), r"CSV file .* lacks column"),
    ("csv-only-a-bom", csv_text("\ufeff"), r"CSV file .* lacks column"),
    ("csv-header-only", csv_text("dataset_id,file_name\n"), r"has no dataset rows"),
    ("csv-not-utf8", csv_text(f"dataset_id,file_name,description\n{ID},GOOD,caf\xe9\n".encode("latin-1")),
     r"cannot read CSV file .*files.csv.*utf-8"),
    ("csv-missing-file_name-column", csv_text(f"dataset_id\n{ID}\n"), r"lacks column\(s\) \['file_name'\]"),
    ("csv-missing-dataset_id-column", csv_text("file_name\nGOOD\n"), r"lacks column\(s\) \['dataset_id'\]"),
    ("csv-unknown-column", csv_text(f"dataset_id,file_name,colour\n{ID},GOOD,red\n"),
     r"unknown column\(s\) \['colour'\]"),
    ("csv-duplicate-column", csv_text(f"dataset_id,file_name,file_name\n{ID},GOOD,GOOD\n"),
     r"CSV file .*files.csv.* column\(s\) \['file_name'\] more than once"),
    ("csv-extra-field", csv_text(f"dataset_id,file_name\n{ID},GOOD\n{ID2},GOOD,extra\n"),
     r"line 3: 3 fields but the header has 2"),
    ("csv-duplicate-id", csv_text(f"dataset_id,file_name\n{ID},GOOD\n{ID},GOOD\n"), rf"dataset {ID}.*also on line 2"),
    ("csv-bad-id", csv_text(f"dataset_id,file_name\n{ID},GOOD\nML-2018-13-07-09-35-54-0010,GOOD\n"),
     r"line 3: invalid dataset id 'ML-2018-13-07-09-35-54-0010'"),
    ("csv-id-too-long", csv_text(f"dataset_id,file_name\n{ID},GOOD\n{'M' * 40}-2018-11-07-09-35-54-0010,GOOD\n"),
     r"invalid dataset id 'M{40}-2018.*longer than 64"),
    ("csv-empty-id", csv_text(f"dataset_id,file_name\n{ID},GOOD\n,GOOD\n"), r"line 3: dataset_id is empty"),
    ("csv-empty-file-name", csv_text(f"dataset_id,file_name\n{ID},GOOD\n{ID2},\n"),
     rf"dataset {ID2}, CSV files.csv line 3: file_name is empty"),
    ("csv-self-parent", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good), "parent_dataset_id": ID2}),
     rf"dataset {ID2}.*cannot be its own parent"),
    ("csv-parent-cycle", csv_text(f"dataset_id,file_name,parent_dataset_id\n{ID},GOOD,{ID2}\n{ID2},GOOD,{ID}\n"),
     rf"dataset {ID}.*its parent {ID2} comes later in the CSV"),
    ("csv-parent-cycle-of-three", csv_text(f"dataset_id,file_name,parent_dataset_id\n{ID},GOOD,{ID3}\n"
                                           f"{ID2},GOOD,{ID}\n{ID3},GOOD,{ID2}\n"),
     rf"dataset {ID}.*its parent {ID3} comes later in the CSV"),
    ("csv-unknown-parent", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good),
                                              "parent_dataset_id": "ML-2018-11-07-09-35-54-0099"}),
     r"parent_dataset_id ML-2018-11-07-09-35-54-0099 is neither in the database nor in the CSV"),
    ("csv-bad-parent-id", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good),
                                             "parent_dataset_id": "ML-yesterday"}),
     rf"dataset {ID2}, .*parent_dataset_id: invalid dataset id 'ML-yesterday'"),
    ("csv-positions-not-json", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good), "positions": "[0,"}),
     r"positions '\[0,' must be a JSON list"),
    ("csv-positions-negative", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good), "positions": "[-1]"}),
     r"must be a JSON list of non-negative integers"),
    ("csv-positions-empty", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good), "positions": "[]"}),
     r"positions '\[\]' must be a JSON list"),
    ("csv-positions-twice", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good), "positions": "[0, 0]"}),
     r"positions '\[0, 0\]' lists a position twice"),
    ("csv-positions-absent", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good), "positions": "[7]"}),
     rf"dataset {ID2}: .*positions \[7\] not found"),
    ("csv-positions-for-tif_id", tif_id_file(lambda p: write_imagej_stack(p, 1, 2, shape=SHAPE), positions="[0]"),
     rf"dataset {ID2}: positions can only be chosen for ome_tiff, not tif_id"),
    ("csv-positions-for-a-file-upload", bad_file_row(lambda e: {"dataset_id": ID2, "positions": "[0]",
                                                                "file_name": str(_plain_file(e, "f.txt"))}),
     rf"dataset {ID2}: positions can only be chosen for ome_tiff frames"),
    ("csv-nul-in-description", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good),
                                                  "description": "a\x00b"}),
     rf"dataset {ID2}, CSV .*column description holds a NUL character"),
    ("csv-missing-meta-schema", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good),
                                                   "meta_schema": str(e.tmp / "nope.json")}),
     rf"dataset {ID2}, .*meta_schema '.*nope.json' does not exist"),
    ("csv-meta-schema-not-json", then(_write_text("schema.json", "{"), bad_row(
        lambda e: {"dataset_id": ID2, "file_name": str(e.good), "meta_schema": str(e.tmp / "schema.json")})),
     r"meta_schema file '.*schema.json' is not valid JSON"),
    ("csv-meta-schema-not-a-schema", then(_write_text("schema.json", '{"type": "nonsense"}'), bad_row(
        lambda e: {"dataset_id": ID2, "file_name": str(e.good), "meta_schema": str(e.tmp / "schema.json")})),
     r"meta_schema file '.*schema.json' is not a valid JSON schema"),
    ("metadata-fails-meta-schema", then(_write_text("schema.json", '{"required": ["Objective"]}'), bad_row(
        lambda e: {"dataset_id": ID2, "file_name": str(e.good), "meta_schema": str(e.tmp / "schema.json")})),
     rf"dataset {ID2}: file .*\.ome\.tif page 0: metadata fails meta_schema: 'Objective' is a required property"),
    ("meta-schema-ref-to-nowhere", then(_write_text("schema.json", '{"$ref": "#/definitions/nowhere"}'), bad_row(
        lambda e: {"dataset_id": ID2, "file_name": str(e.good), "meta_schema": str(e.tmp / "schema.json")})),
     rf"dataset {ID2}: meta_schema file '.*schema.json' cannot be applied .*nowhere"),
    # ------------------------------------------------------------------ config
    ("config-does-not-exist", lambda env: env.upload(env.csv(), env.tmp / "absent.json"),
     r"config file '.*absent.json' does not exist"),
    ("config-invalid-json", bad_config(raw="{not json"), r"config file '.*config.json' is not valid JSON"),
    ("config-not-an-object", bad_config(raw="[1, 2]"), r"config file '.*config.json' must hold a JSON object"),
    ("config-unknown-key", bad_config({**GOOD_CONFIG, "frames_fromat": "x"}), r"unknown key\(s\) \['frames_fromat'\]"),
    ("config-unknown-frames-format", bad_config({"upload_type": "frames", "frames_format": "czi"}),
     r"key 'frames_format': 'czi' is not one of"),
    ("config-frames-format-left-to-a-file-no-splitter-reads",
     bad_row(lambda env: {"dataset_id": ID2, "file_name": str(_plain_file(env, "notes.txt"))},
             config={"upload_type": "frames"}),
     rf"dataset {ID2}: .*notes.txt: no frames_format can read it; choose one of \['ome_tiff', 'tif_folder', "
     r"'tif_id'\]"),
    ("config-unknown-upload-type", bad_config({"upload_type": "movie"}), r"'movie' is not one of"),
    ("config-upload-type-and-format-disagree", bad_config({**GOOD_CONFIG, "format": "file"}),
     r"upload_type 'frames' and format 'file' disagree"),
    ("config-wrong-type-workers", bad_config({**GOOD_CONFIG, "nbr_workers": "many"}),
     r"key 'nbr_workers': 'many' is not of type 'integer'"),
    ("config-zero-workers", bad_config({**GOOD_CONFIG, "nbr_workers": 0}), r"key 'nbr_workers': 0 is less than"),
    ("config-wrong-type-microscope", bad_config({**GOOD_CONFIG, "microscope": 5}),
     r"key 'microscope': 5 is not of type"),
    ("config-nul-in-microscope", bad_config({**GOOD_CONFIG, "microscope": "scope\x00 1"}),
     r"config file '.*config.json': microscope .* holds a NUL character"),
    ("config-lone-surrogate-in-microscope", bad_config(raw='{"upload_type": "frames", "frames_format": "ome_tiff", '
                                                           '"microscope": "scope \\udc80"}'),
     r"config file '.*config.json': microscope .* is not valid Unicode"),
    ("config-unknown-storage", bad_config({**GOOD_CONFIG, "storage": "ftp"}), r"key 'storage': 'ftp' is not one of"),
    ("config-unknown-parser", bad_config({**GOOD_CONFIG, "filename_parser": "parse_everything"}),
     r"'parse_everything' is not one of"),
    ("config-png-compression-out-of-range", bad_config({**GOOD_CONFIG, "png_compression": 12}),
     r"key 'png_compression': 12 is greater than the maximum"),
    ("config-storage-folder-is-a-file", lambda env: env.upload(
        env.csv(), env.config({**GOOD_CONFIG, "storage_access": str(_plain_file(env, "not_a_folder"))})),
     r"cannot create storage folder '.*not_a_folder'"),
    ("config-missing-meta-schema", lambda env: env.upload(
        env.csv(), env.config({**GOOD_CONFIG, "meta_schema": str(env.tmp / "nope.json")})),
     r"meta_schema file '.*nope.json' does not exist"),
    ("filename-parser-refuses-a-name", bad_config({**GOOD_CONFIG, "filename_parser": "parse_ml_name"}),
     rf"dataset {ID}: .*good_acq: file name 'good_acq' does not match parse_ml_name"),
    # ------------------------------------------------------------------ login
    ("login-does-not-exist", lambda env: env.upload(env.csv(), env.config(), login=env.tmp / "absent_login.json"),
     r"login file '.*absent_login.json' does not exist"),
    ("login-invalid-json", bad_login("{"), r"login file '.*bad_login.json' is not valid JSON"),
    ("login-not-an-object", bad_login('["sqlite"]'), r"login file '.*bad_login.json' must hold a JSON object"),
    ("login-unknown-key", bad_login('{"drivername": "sqlite", "dbname": "x.db", "pasword": "s"}'),
     r"unknown key.*pasword"),
    ("login-unknown-driver", bad_login('{"drivername": "oracle", "dbname": "x"}'), r"unknown drivername 'oracle'"),
    ("login-bad-port", bad_login('{"drivername": "postgres", "username": "u", "host": "h", "dbname": "d", '
                                 '"port": "fifty"}'), r"port 'fifty' is not an integer"),
    ("login-port-out-of-range", bad_login('{"drivername": "postgres", "username": "u", "host": "h", "dbname": "d", '
                                          '"port": 70000}'), r"port 70000 is not within 1\.\.65535"),
    ("login-port-boolean", bad_login('{"drivername": "postgres", "username": "u", "host": "h", "dbname": "d", '
                                     '"port": true}'), r"port True is not an integer"),
    ("login-wrong-type-username", bad_login('{"drivername": "postgres", "username": ["u"], "host": "h", '
                                            '"dbname": "d"}'), r"login file .*: username must be a string, not list"),
    ("login-wrong-type-password", bad_login('{"drivername": "postgres", "username": "u", "password": {"a": 1}, '
                                            '"host": "h", "dbname": "d"}'),
     r"login file .*: password must be a string, not dict"),
    ("login-nul-in-password", bad_login('{"drivername": "postgres", "username": "u", "password": "se\\u0000cret", '
                                        '"host": "h", "dbname": "d"}'),
     r"login file .*: password holds a NUL character"),
    ("login-sqlite-without-dbname", bad_login('{"drivername": "sqlite"}'), r"needs dbname"),
    ("login-sqlite-nul-in-dbname", bad_login('{"drivername": "sqlite", "dbname": "a\\u0000b.db"}'),
     r"login file .*: dbname holds a NUL character"),
    # ------------------------------------------------------------------ files
    ("file-missing", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(e.tmp / "absent.ome.tif")}),
     rf"dataset {ID2}.*absent.ome.tif' does not exist"),
    ("file-folder-for-file-upload", bad_file_row(lambda e: {"dataset_id": ID2, "file_name": str(e.good)}),
     rf"dataset {ID2}: .*good_acq: upload_type 'file' needs a file, not a folder"),
    ("file-folder-for-tif_id", tif_id_file(lambda p: p.mkdir()),
     rf"dataset {ID2}: .*stack.tif: tif_id needs one multi-page TIFF file"),
    ("file-not-a-tiff", ome_file(lambda p: p.write_bytes(b"this is not a TIFF at all" * 10)),
     rf"dataset {ID2}: .*bad.ome.tif: not a readable TIFF"),
    ("file-cut-to-6-bytes", ome_file(_cut(6)), rf"dataset {ID2}: .*bad.ome.tif: not a readable TIFF"),
    ("file-truncated-mid-page", ome_file(_cut(0.8)),
     rf"dataset {ID2}: .*bad.ome.tif: page \d+: its pixel data ends at byte \d+ but the file has only"),
    ("file-zero-pages", ome_file(lambda p: p.write_bytes(b"II*\x00\x00\x00\x00\x00")),
     rf"dataset {ID2}: .*bad.ome.tif: (is a TIFF without any page|is a damaged TIFF.*first page)"),
    ("file-zero-pages-tif_id", tif_id_file(lambda p: p.write_bytes(b"II*\x00\x00\x00\x00\x00")),
     rf"dataset {ID2}: .*stack.tif: (is a TIFF without any page|is a damaged TIFF.*first page)"),
    ("file-empty-ifd", tif_id_file(_empty_ifd), rf"dataset {ID2}: .*stack.tif: page 0 holds no image"),
    ("file-cut-at-a-page", ome_file(_cut_at_page(2)),
     rf"dataset {ID2}: .*bad.ome.tif: is a damaged TIFF, cut short\?"),
    ("file-compressed-data-corrupt", ome_file(_corrupt_compressed),
     rf"dataset {ID2}: .*bad.ome.tif: page 0: cannot decode its pixels"),
    ("ome-folder-without-ome-tifs", bad_row(lambda e: {"dataset_id": ID2, "file_name": str(_ome_less_folder(e))}),
     rf"dataset {ID2}: .*plain_tifs: folder holds no \*.ome.tif files"),
    ("ome-page-without-mm-tag", ome_pages(lambda: [(_u16(), None)]),
     rf"dataset {ID2}: .*bad.ome.tif: page 0: has no MicroManagerMetadata tag"),
    ("file-empty-folder", frames_folder(lambda: []), r"folder holds no \*.tif files"),
    ("tif-folder-multipage-file", tif_folder(lambda folder: _tiff_pages(
        folder / "img_000.tif", [(_u16(), _mm_meta()), (_u16(), _mm_meta(z=1))])),
     r"img_000.tif: holds 2 pages; tif_folder expects single-frame TIFFs"),
    ("tif-folder-metadata-txt-not-json", tif_folder(lambda folder: (
        _tiff_pages(folder / "img_000.tif", [(_u16(), _mm_meta())]), (folder / "metadata.txt").write_text("{"))),
     rf"dataset {ID2}: .*metadata.txt: is not valid JSON"),
    ("tif-id-counts-mismatch", tif_id_file(imagej_description("ImageJ=1.11a\nimages=3\nchannels=2\nslices=2\n", 3)),
     rf"dataset {ID2}: .*stack.tif: holds 3 images but its ImageDescription says .* = 4"),
    ("tif-id-zero-channels", tif_id_file(imagej_description("ImageJ=1.11a\nimages=3\nchannels=0\nslices=3\n", 3)),
     r"ImageDescription channels=0 must be at least 1"),
    # ------------------------------------------------------------------ pixels
    ("pixels-int32", frames_folder(lambda: [(_u16().astype(np.int32), _mm_meta())]),
     rf"dataset {ID2}: .*img_000.tif: page 0 has int32 pixels; only uint8, uint16"),
    ("pixels-int16", ome_pages(lambda: [(_u16().astype(np.int16), _mm_meta())]),
     rf"dataset {ID2}: .*bad.ome.tif: page 0 has int16 pixels"),
    ("pixels-uint32-tif_id", tif_id_file(lambda p: tifffile.imwrite(p, np.zeros((2, *SHAPE), np.uint32))),
     rf"dataset {ID2}: .*stack.tif: page 0 has uint32 pixels"),
    ("pixels-fractional-float-tif_id", tif_id_file(imagej_pixels(lambda: np.full((3, *SHAPE), 1.5, np.float32))),
     rf"dataset {ID2}: .*stack.tif: page 0: float32 pixels are not whole numbers within 0..65535 \(min 1.5"),
    ("pixels-fractional-float-in-last-page", tif_id_file(imagej_pixels(
        lambda: np.concatenate([np.ones((2, *SHAPE), np.float32), np.full((1, *SHAPE), 0.25, np.float32)]))),
     rf"dataset {ID2}: .*stack.tif: page 2: float32 pixels are not whole numbers"),
    ("pixels-float-beyond-uint16", tif_id_file(imagej_pixels(lambda: np.full((2, *SHAPE), 70000, np.float32))),
     r"page 0: float32 pixels are not whole numbers within 0..65535 \(min 70000, max 70000\)"),
    ("pixels-float-nan", tif_id_file(imagej_pixels(lambda: np.full((2, *SHAPE), np.nan, np.float32))),
     r"page 0: float32 pixels .*no finite value"),
    ("pixels-fractional-float-ome", ome_pages(lambda: [(np.full(SHAPE, 0.5, np.float32), _mm_meta())]),
     rf"dataset {ID2}: .*bad.ome.tif: page 0: float32 pixels are not whole numbers"),
    ("pixels-3d-page", frames_folder(lambda: [(np.zeros((4, 40, 56), np.uint16), _mm_meta())]),
     r"img_000.tif: page 0 has shape \(4, 40, 56\); only 2D grayscale or RGB frames"),
    ("pixels-rgba", ome_pages(lambda: [(np.zeros((*SHAPE, 4), np.uint8), _mm_meta())]),
     r"bad.ome.tif: page 0 has shape \(40, 56, 4\); only 2D grayscale or RGB frames"),
    ("frames-of-different-sizes", frames_folder(lambda: [(_u16(), _mm_meta(z=0)), (_u16((8, 8)), _mm_meta(z=1))]),
     r"img_001.tif page 0: frame is uint16 \(8, 8\) but .*img_000.tif page 0 is uint16 \(40, 56\)"),
    ("frames-of-different-sizes-ome", ome_pages(lambda: [(_u16(), _mm_meta(z=0)), (_u16((40, 55)), _mm_meta(z=1))]),
     rf"dataset {ID2}: file .*bad.ome.tif page 1: frame is uint16 \(40, 55\) but"),
    ("frames-of-different-dtypes", frames_folder(lambda: [(_u16(), _mm_meta(z=0)),
                                                          (_u16().astype(np.uint8), _mm_meta(z=1))]),
     r"frame is uint8 .* is uint16"),
    ("frames-rgb-and-gray", ome_pages(lambda: [(_u16(), _mm_meta(z=0)), (np.zeros((*SHAPE, 3), np.uint16),
                                                                          _mm_meta(z=1))]),
     r"page 1: frame is uint16 \(40, 56, 3\) but .* is uint16 \(40, 56\)"),
    # ------------------------------------------------------------------ frame metadata
    ("tif-folder-unnamed-file-without-tag", frames_folder(lambda: [(_u16(), None)]),
     r"img_000.tif: has no MicroManagerMetadata tag and its name is not img_"),
    ("mm-metadata-invalid-json", frames_folder(lambda: [(_u16(), "{not json")]),
     r"img_000.tif: MicroManagerMetadata tag \(51123\) is not valid JSON"),
    ("mm-metadata-json-array", ome_pages(lambda: [(_u16(), "[1, 2]")]),
     r"bad.ome.tif: page 0: MicroManagerMetadata tag \(51123\) does not hold a JSON object"),
    ("mm-metadata-missing-index", frames_folder(lambda: [(_u16(), {"Channel": "GFP", "SliceIndex": 0})]),
     r"MicroManagerMetadata lacks ChannelIndex"),
    ("mm-metadata-index-not-a-number", ome_pages(lambda: [(_u16(), _mm_meta(c="one"))]),
     r"bad.ome.tif: page 0: MicroManagerMetadata ChannelIndex = 'one' is not an integer"),
    ("mm-metadata-fractional-index", ome_pages(lambda: [(_u16(), _mm_meta(z=1.5))]),
     r"bad.ome.tif: page 0: MicroManagerMetadata SliceIndex = 1.5 is not an integer"),
    ("mm-metadata-boolean-index", ome_pages(lambda: [(_u16(), _mm_meta(t=True))]),
     r"bad.ome.tif: page 0: MicroManagerMetadata FrameIndex = True is not an integer"),
    ("duplicate-frames", frames_folder(lambda: [(_u16(), _mm_meta()), (_u16(), _mm_meta())]),
     r"img_001.tif page 0: duplicate frame channel 0, slice 0, time 0, position 0 \(also file .*img_000.tif"),
    ("slice-index-beyond-int32", frames_folder(lambda: [(_u16(), _mm_meta(z=2**31))]),
     rf"dataset {ID2}: file .*img_000.tif page 0: slice index 2147483648 is outside 0\.\.2147483647"),
    ("position-index-negative", ome_pages(lambda: [(_u16(), _mm_meta(p=-1))]),
     rf"dataset {ID2}: file .*bad.ome.tif page 0: position index -1 is outside 0\.\.2147483647"),
    ("time-index-beyond-int32-in-file-name", tif_folder(lambda folder: _tiff_pages(
        folder / "img_GFP_t9999999999_p000_z000.tif", [(_u16(), None)])),
     r"time index 9999999999 is outside 0\.\.2147483647"),
    ("nul-in-channel-name", frames_folder(lambda: [(_u16(), _mm_meta(channel="G\x00FP"))]),
     r"channel name 'G\\x00FP' holds a NUL"),
    ("lone-surrogate-in-channel-name", ome_pages(lambda: [(_u16(), _mm_meta(channel="G\udc80FP"))]),
     rf"dataset {ID2}: file .*bad.ome.tif page 0: channel name 'G\\udc80FP' is not valid Unicode"),
    ("channel-name-from-a-file-name-not-utf8", tif_folder(lambda folder: _tiff_pages(
        Path(os.fsdecode(os.fsencode(folder) + b"/img_G\xffFP_t000_p000_z000.tif")), [(_u16(), None)])),
     r"img_G\\xffFP_t000_p000_z000.tif page 0: channel name .G\\udcffFP. is not valid Unicode"),
    ("backslash-in-file-name", bad_file_row(lambda e: {"dataset_id": ID2,
                                                       "file_name": str(_plain_file(e, "a\\b.tif"))}),
     rf"dataset {ID2}: .*a\\b.tif: this file name cannot be stored"),
    # ------------------------------------------------------------------ downloads and workers
    ("download-unknown-id", download("--id", ID, "--dest", "TMP/dl"), rf"dataset {ID} is not in the database"),
    ("download-bad-id", download("--id", "not-an-id", "--dest", "TMP/dl"), r"invalid dataset id 'not-an-id'"),
    ("download-dest-is-a-file", then(_registered_good, _write_text("afile", "x"),
                                     download("--id", ID, "--dest", "TMP/afile")),
     rf"dataset {ID}: cannot create a folder in .*afile"),
    ("download-dest-already-holds-the-dataset", then(
        _registered_good, lambda env: data_downloader.main(env.download("--id", ID, "--dest", str(env.tmp / "dl"),
                                                                        "--no-progress")[1:]),
        download("--id", ID, "--dest", "TMP/dl")),
     rf"dataset {ID}: .*dl/{ID} already exists; refusing to overwrite it"),
    ("download-channel-matches-nothing", then(_registered_good, download("--id", ID, "--dest", "TMP/dl", "-c", "Cy5")),
     rf"dataset {ID}: no frames with channel 'Cy5'; it has channels \['GFP'\]"),
    ("download-channel-index-matches-nothing", then(_registered_good,
                                                    download("--id", ID, "--dest", "TMP/dl", "-c", "7")),
     rf"dataset {ID}: no frames with channel .*7"),
    ("download-filters-match-nothing", then(_registered_good,
                                            download("--id", ID, "--dest", "TMP/dl", "-c", "Cy5", "-z", "9")),
     rf"dataset {ID}: no frames with channel 'Cy5', slice 9; it has channels \['GFP'\]"),
    ("download-time-matches-nothing", then(_registered_good, download("--id", ID, "--dest", "TMP/dl", "-t", "5")),
     rf"dataset {ID}: no frames with time 5"),
    ("download-position-matches-nothing", then(_registered_good,
                                               download("--id", ID, "--dest", "TMP/dl", "-p", "3")),
     rf"dataset {ID}: no frames with position 3"),
    ("download-filter-on-a-file-dataset", then(_registered_file, download("--id", ID, "--dest", "TMP/dl", "-z", "0")),
     rf"dataset {ID} is a file dataset: channel/slice/time/position filters do not apply"),
    ("download-no-metadata-no-download", then(_registered_good, download("--id", ID, "--dest", "TMP/dl",
                                                                         "--no-metadata", "--no-download")),
     r"leaves nothing to do"),
    ("download-nbr-workers-zero", then(_registered_good, download("--id", ID, "--dest", "TMP/dl",
                                                                  "--nbr_workers", "0")),
     r"argument --nbr_workers: .*0"),
    ("download-unknown-format", then(_registered_good, download("--id", ID, "--dest", "TMP/dl", "--format", "bmp")),
     r"(argument --format: invalid choice: 'bmp'|unrecognized arguments: --format bmp)"),
    ("upload-nbr-workers-zero", lambda env: env.upload(env.csv(), env.config(), "--nbr_workers", "0"),
     r"argument --nbr_workers: .*0"),
    ("upload-nbr-workers-not-a-number", lambda env: env.upload(env.csv(), env.config(), "--nbr_workers", "two"),
     r"argument --nbr_workers: .*two"),
]

# Cases also run against S3 (moto), with the bucket listed before and after.
S3_CASES = {"csv-duplicate-id", "pixels-int32", "file-truncated-mid-page", "file-compressed-data-corrupt",
            "frames-of-different-sizes-ome", "backslash-in-file-name", "slice-index-beyond-int32",
            "download-filters-match-nothing"}


@pytest.fixture
def make_env(tmp_path, db_url, login_file):
    def make(storage: dict) -> Env:
        good = tmp_path / "good_acq"
        write_mm_ometiff(good, ["GFP"], 2, 1, 1, shape=SHAPE)
        if storage["storage"] == "local":
            Path(storage["storage_access"]).mkdir(parents=True, exist_ok=True)
        return Env(tmp_path, db_url, login_file, storage, good)
    return make


def _run(env: Env, make: Callable[[Env], list[str]], pattern: str, capsys) -> None:
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
    assert "Traceback" not in err and "unexpected error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    if argparse_refused:
        lines = [line for line in lines if ": error: " in line]
    assert len(lines) == 1, err
    assert re.search(pattern, lines[0]), lines[0]
    assert _snapshot(env) == before, "something was written"


def test_the_matrix_is_large_enough():
    names = [name for name, _make, _pattern in CASES]
    assert len(CASES) >= 40 and len(set(names)) == len(names)
    assert S3_CASES <= set(names)


@pytest.mark.parametrize("make, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(make_env, tmp_path, make, pattern, capsys):
    env = make_env({"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None})
    _run(env, make, pattern, capsys)


@pytest.mark.s3
@pytest.mark.parametrize("make, pattern", [c[1:] for c in CASES if c[0] in S3_CASES],
                         ids=[c[0] for c in CASES if c[0] in S3_CASES])
def test_bad_input_on_s3(make_env, moto_endpoint, s3_bucket, make, pattern, capsys):
    env = make_env({"storage": "s3", "storage_access": s3_bucket, "s3_endpoint_url": moto_endpoint})
    _run(env, make, pattern, capsys)


@pytest.mark.s3
def test_missing_bucket_is_refused_before_anything(make_env, moto_endpoint, s3_bucket, capsys):
    env = make_env({"storage": "s3", "storage_access": s3_bucket, "s3_endpoint_url": moto_endpoint})
    config = env.config({**GOOD_CONFIG, "storage_access": "no-such-bucket-here"})
    _run(env, lambda e: e.upload(e.csv(), config), r"no-such-bucket-here", capsys)


def test_csv_with_bom_uploads(make_env, tmp_path, capsys):
    """A UTF-8 byte-order mark (Excel's "CSV UTF-8") is not bad input: the CSV uploads."""
    env = make_env({"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None})
    path = env.tmp / "files.csv"
    path.write_text(f"dataset_id,file_name\n{ID},{env.good}\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert data_uploader.main(env.upload(path, env.config())[1:] + ["--no-progress"]) == 0, capsys.readouterr().err
    assert ID in json.dumps(_database_rows(env.db_url)["data_set"])


def test_file_with_a_long_name_uploads(make_env, tmp_path, capsys):
    """Not bad input either: a file name of 250 bytes (temporary names must not make it too long)."""
    env = make_env({"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None})
    path = _plain_file(env, "n" * 246 + ".txt")
    csv_path = write_csv(env.tmp, [{"dataset_id": ID, "file_name": str(path)}])
    code = data_uploader.main(env.upload(csv_path, env.config({"upload_type": "file"}))[1:] + ["--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "storage" / "raw_files" / ID / path.name).read_bytes() == b"some bytes"
