"""Reading small JSON input files (config, login, meta_schema)."""

import re

import pytest

from imaging_db.errors import InputError
from imaging_db.json_files import load_json_file


def test_reads_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"a": [1, {"b": "\u00e9"}]}', encoding="utf-8")
    assert load_json_file(path, "config") == {"a": [1, {"b": "\u00e9"}]}


def test_accepts_a_string_path(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    assert load_json_file(str(path), "login") == [1, 2]


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"upload_type": "file"}')
    assert load_json_file(path, "config") == {"upload_type": "file"}


def test_missing_file(tmp_path):
    path = tmp_path / "missing.json"
    with pytest.raises(InputError, match=rf"^config file {re.escape(repr(str(path)))} does not exist$"):
        load_json_file(path, "config")


def test_folder_is_unreadable(tmp_path):
    with pytest.raises(InputError, match=rf"^cannot read login file {re.escape(repr(str(tmp_path)))}"):
        load_json_file(tmp_path, "login")


def test_invalid_json_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}')
    with pytest.raises(InputError, match=rf"^meta_schema file {re.escape(repr(str(path)))} is not valid JSON: Expecting value at line 4 column 1$"):
        load_json_file(path, "meta_schema")


def test_not_utf8_is_an_input_error(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"microscope": "Leica \u00e9"}'.encode("latin-1"))
    with pytest.raises(InputError, match=rf"^config file {re.escape(repr(str(path)))} is not UTF-8 text"):
        load_json_file(path, "config")
