"""The upload config JSON."""

import json
import re
from pathlib import Path

import pytest

from imaging_db.errors import InputError
from imaging_db.metadata.upload_config import UploadConfig, apply_overrides, load_upload_config, parse_upload_config


def _write_config(folder: Path, data, name="config.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def test_full_config(tmp_path):
    config = parse_upload_config(
        {
            "upload_type": "frames",
            "frames_format": "tif_folder",
            "microscope": "Leica SP8",
            "filename_parser": "parse_sms_name",
            "storage": "s3",
            "storage_access": "my-bucket",
            "s3_endpoint_url": "http://127.0.0.1:9000",
            "nbr_workers": 4,
        }
    )
    assert config == UploadConfig(
        upload_type="frames",
        frames_format="tif_folder",
        microscope="Leica SP8",
        filename_parser="parse_sms_name",
        meta_schema=None,
        storage="s3",
        storage_access="my-bucket",
        s3_endpoint_url="http://127.0.0.1:9000",
        nbr_workers=4,
    )


def test_defaults_for_a_minimal_frames_config():
    config = parse_upload_config({"frames_format": "ome_tiff"})
    assert config == UploadConfig(upload_type="frames", frames_format="ome_tiff", storage="local")


def test_file_upload_needs_no_frames_format():
    config = parse_upload_config({"upload_type": "file"})
    assert config.upload_type == "file"
    assert config.frames_format is None


def test_empty_and_null_optional_values_become_none():
    config = parse_upload_config(
        {"upload_type": "file", "microscope": "", "filename_parser": "", "meta_schema": None,
         "storage_access": None}
    )
    assert (config.microscope, config.filename_parser, config.meta_schema, config.storage_access) == (
        None, None, None, None)


def test_format_is_an_alias_of_upload_type():
    assert parse_upload_config({"format": "file"}).upload_type == "file"
    assert parse_upload_config({"format": "frames", "frames_format": "tif_id"}).upload_type == "frames"


def test_format_and_upload_type_may_agree():
    assert parse_upload_config({"format": "file", "upload_type": "file"}).upload_type == "file"


def test_format_and_upload_type_conflict():
    with pytest.raises(InputError, match=r"^config file 'c.json': upload_type 'file' and format 'frames' disagree$"):
        parse_upload_config({"upload_type": "file", "format": "frames", "frames_format": "ome_tiff"}, "c.json")


@pytest.mark.parametrize("data", [{"upload_type": "frames"}, {"upload_type": "frames", "frames_format": "auto"},
                                  {"upload_type": "frames", "frames_format": None}])
def test_frames_format_may_be_left_to_the_splitters(data):
    """Omitted, null or "auto": each dataset's splitter is chosen by what can read its file."""
    assert parse_upload_config(data, "c.json").frames_format in (None, "auto")


def test_frames_format_choices_come_from_the_splitter_registry(monkeypatch):
    from imaging_db.images import splitters

    with pytest.raises(InputError, match=r"'czi' is not one of \['ome_tiff', 'tif_folder', 'tif_id', 'auto', None\]"):
        parse_upload_config({"frames_format": "czi"}, "c.json")
    monkeypatch.setitem(splitters.SPLITTERS, "czi", splitters.SPLITTERS["tif_id"])
    assert parse_upload_config({"frames_format": "czi"}, "c.json").frames_format == "czi"


def test_storage_choices_come_from_the_storage_registry(monkeypatch):
    from imaging_db import filestorage

    with pytest.raises(InputError, match=r"'memory' is not one of \['local', 's3'\]"):
        parse_upload_config({"upload_type": "file", "storage": "memory"}, "c.json")
    monkeypatch.setitem(filestorage.STORAGES, "memory", filestorage.STORAGES["local"])
    assert parse_upload_config({"upload_type": "file", "storage": "memory"}, "c.json").storage == "memory"


def test_unknown_keys_are_listed():
    with pytest.raises(InputError, match=r"^config file 'c.json': unknown key\(s\) \['frame_format', 'zz'\]; allowed keys are \["):
        parse_upload_config({"upload_type": "file", "frame_format": "ome_tiff", "zz": 1}, "c.json")


@pytest.mark.parametrize(
    "data, key, problem",
    [
        ({"upload_type": "zarr"}, "upload_type", "'zarr' is not one of"),
        ({"format": "movie"}, "format", "'movie' is not one of"),
        ({"upload_type": "frames", "frames_format": "zarr"}, "frames_format", "'zarr' is not one of"),
        ({"upload_type": "file", "storage": "ftp"}, "storage", "'ftp' is not one of"),
        ({"upload_type": "file", "filename_parser": "parse_foo"}, "filename_parser", "'parse_foo' is not one of"),
        ({"upload_type": "file", "microscope": 3}, "microscope", "3 is not of type"),
        ({"upload_type": "file", "nbr_workers": 0}, "nbr_workers", "0 is less than the minimum of 1"),
        ({"upload_type": "file", "nbr_workers": "4"}, "nbr_workers", "'4' is not of type 'integer'"),
        ({"upload_type": "file", "nbr_workers": True}, "nbr_workers", "True is not of type 'integer'"),
        ({"upload_type": "file", "meta_schema": ["a.json"]}, "meta_schema", "['a.json'] is not of type"),
    ],
)
def test_bad_values_name_the_key(data, key, problem):
    with pytest.raises(InputError, match=rf"^config file 'c.json': key '{key}': {re.escape(problem)}"):
        parse_upload_config(data, "c.json")


def test_whole_number_float_workers_become_int():
    config = parse_upload_config({"upload_type": "file", "nbr_workers": 2.0})
    assert config.nbr_workers == 2
    assert type(config.nbr_workers) is int


def test_config_must_be_an_object():
    with pytest.raises(InputError, match=r"^config file 'c.json' must hold a JSON object$"):
        parse_upload_config(["upload_type", "file"], "c.json")


# --------------------------------------------------------------------------- files
def test_load_config_file(tmp_path):
    path = _write_config(tmp_path, {"upload_type": "frames", "frames_format": "tif_id", "microscope": "scope"})
    config = load_upload_config(path)
    assert (config.upload_type, config.frames_format, config.microscope) == ("frames", "tif_id", "scope")


def test_errors_name_the_config_file(tmp_path):
    path = _write_config(tmp_path, {"upload_type": "frames", "frames_format": "czi"})
    with pytest.raises(InputError, match=rf"^config file {re.escape(repr(str(path)))}: key 'frames_format': 'czi' "):
        load_upload_config(path)


def test_relative_meta_schema_is_found_beside_the_config(tmp_path, monkeypatch):
    config_dir = tmp_path / "configs"
    path = _write_config(config_dir, {"upload_type": "file", "meta_schema": "schema.json"})
    (config_dir / "schema.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_upload_config(path).meta_schema == config_dir / "schema.json"


def test_relative_meta_schema_from_a_relative_config_path(tmp_path, monkeypatch):
    config_dir = tmp_path / "configs"
    _write_config(config_dir, {"upload_type": "file", "meta_schema": "schemas/s.json"})
    (config_dir / "schemas").mkdir()
    (config_dir / "schemas" / "s.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert load_upload_config("configs/config.json").meta_schema.resolve() == config_dir / "schemas" / "s.json"


def test_absolute_meta_schema_is_kept(tmp_path):
    schema = tmp_path / "abs_schema.json"
    schema.write_text("{}")
    path = _write_config(tmp_path / "c", {"upload_type": "file", "meta_schema": str(schema)})
    assert load_upload_config(path).meta_schema == schema


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(InputError, match=rf"^config file {re.escape(repr(str(path)))} does not exist$"):
        load_upload_config(path)


def test_config_file_not_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"upload_type": "file",}')
    with pytest.raises(InputError, match=rf"^config file {re.escape(repr(str(path)))} is not valid JSON"):
        load_upload_config(path)


def test_no_config_given():
    with pytest.raises(InputError, match=r"^no config given: pass --config"):
        load_upload_config(None)


@pytest.mark.parametrize("value", [-1, 10, "fast", 1.5])
def test_png_compression_must_be_a_zlib_level(value):
    with pytest.raises(InputError, match="png_compression"):
        parse_upload_config({"upload_type": "frames", "frames_format": "ome_tiff", "png_compression": value})


def test_png_compression_is_unset_by_default():
    assert parse_upload_config({"upload_type": "file"}).png_compression is None
    assert parse_upload_config({"upload_type": "file", "png_compression": 6}).png_compression == 6


@pytest.mark.parametrize("value, problem", [("scope\x00 1", "holds a NUL character"),
                                            ("scope \udc80", "is not valid Unicode")])
def test_text_values_every_database_stores(value, problem):
    with pytest.raises(InputError, match=rf"^config file '<config>': microscope .* {problem}"):
        parse_upload_config({"upload_type": "file", "microscope": value})


def test_command_line_overrides_replace_the_config_values():
    config = parse_upload_config({"upload_type": "file", "storage": "local", "storage_access": "/data/store",
                                  "nbr_workers": 2})
    changed = apply_overrides(config, storage="s3", storage_access="bucket", s3_endpoint_url="http://127.0.0.1:9",
                              nbr_workers=8)
    assert (changed.storage, changed.storage_access, changed.s3_endpoint_url, changed.nbr_workers) == (
        "s3", "bucket", "http://127.0.0.1:9", 8)
    assert apply_overrides(config) == config and config.storage_access == "/data/store"  # not given: kept


@pytest.mark.parametrize("overrides, message", [
    ({"storage": "ftp"}, "unknown storage 'ftp'; use 'local' or 's3'"),
    ({"nbr_workers": 0}, "nbr_workers must be at least 1, not 0"),
])
def test_bad_command_line_overrides(overrides, message):
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        apply_overrides(parse_upload_config({"upload_type": "file"}), **overrides)
