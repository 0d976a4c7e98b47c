"""The upload CSV: one dataset per row, checked before anything is uploaded."""

import re
from pathlib import Path

import pytest

from imaging_db.errors import InputError
from imaging_db.metadata.upload_csv import read_upload_csv

ID1 = "ML-2018-11-07-09-35-54-0010"
ID2 = "ML-2018-11-07-09-35-54-0011"


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A folder holding the CSV, one image file and one image folder."""
    (tmp_path / "a.ome.tif").write_bytes(b"not really a tiff")
    (tmp_path / "folder").mkdir()
    return tmp_path


def _csv(folder: Path, *lines: str, name="files.csv", encoding="utf-8") -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def test_minimal_rows(data_dir):
    path = _csv(data_dir, "dataset_id,file_name", f"{ID1},a.ome.tif", f"{ID2},folder")
    rows = read_upload_csv(path)
    assert [(r.line, r.dataset_id.serial, r.file_name) for r in rows] == [
        (2, ID1, data_dir / "a.ome.tif"),
        (3, ID2, data_dir / "folder"),
    ]
    assert rows[0].description is None
    assert rows[0].parent_dataset_id is None
    assert rows[0].positions is None
    assert rows[0].meta_schema is None


def test_all_columns(data_dir):
    (data_dir / "schema.json").write_text("{}")
    path = _csv(
        data_dir,
        "dataset_id,file_name,description,parent_dataset_id,positions,meta_schema",
        f'{ID1},a.ome.tif,"first, with comma",None,"[0, 2]",schema.json',
        f"{ID2},{data_dir / 'folder'},,{ID1},1,",
    )
    first, second = read_upload_csv(path)
    assert first.description == "first, with comma"
    assert first.parent_dataset_id is None
    assert first.positions == [0, 2]
    assert first.meta_schema == data_dir / "schema.json"
    assert second.file_name == data_dir / "folder"
    assert second.description is None
    assert second.parent_dataset_id.serial == ID1
    assert second.positions == [1]
    assert second.meta_schema is None


def test_files_are_found_beside_the_csv(data_dir, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    rows = read_upload_csv(_csv(data_dir, "dataset_id,file_name", f"{ID1},a.ome.tif"))
    assert rows[0].file_name == data_dir / "a.ome.tif"


def test_columns_in_any_order_with_spaces(data_dir):
    path = _csv(data_dir, " file_name , dataset_id ,description", f"a.ome.tif,{ID1}, some text ")
    (row,) = read_upload_csv(path)
    assert (row.dataset_id.serial, row.description) == (ID1, "some text")


def test_byte_order_mark_is_ignored(data_dir):
    path = _csv(data_dir, "dataset_id,file_name", f"{ID1},a.ome.tif", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_upload_csv(path)[0].dataset_id.serial == ID1


def test_windows_line_endings(data_dir):
    path = data_dir / "crlf.csv"
    path.write_bytes(f"dataset_id,file_name\r\n{ID1},a.ome.tif\r\n".encode())
    assert read_upload_csv(path)[0].file_name == data_dir / "a.ome.tif"


@pytest.mark.parametrize("parent", ["None", "none", "", "NaN", "null", "  "])
def test_no_parent(data_dir, parent):
    path = _csv(data_dir, "dataset_id,file_name,parent_dataset_id", f"{ID1},a.ome.tif,{parent}")
    assert read_upload_csv(path)[0].parent_dataset_id is None


# --------------------------------------------------------------------------- positions
@pytest.mark.parametrize(
    "text, positions",
    [("[0, 2]", [0, 2]), ("1", [1]), ("0", [0]), ("[5]", [5]), (" [3,1] ", [3, 1])],
)
def test_positions(data_dir, text, positions):
    path = _csv(data_dir, "dataset_id,file_name,positions", f'{ID1},a.ome.tif,"{text}"')
    assert read_upload_csv(path)[0].positions == positions


@pytest.mark.parametrize("text", ["[0, 2", "abc", "[-1]", "-1", "[]", "[1.5]", "1.5", "[true]", '["1"]', "{}"])
def test_bad_positions(data_dir, text):
    quoted = '"' + text.replace('"', '""') + '"'
    path = _csv(data_dir, "dataset_id,file_name,positions", f"{ID1},a.ome.tif,{quoted}")
    with pytest.raises(
        InputError,
        match=rf"^dataset {ID1}, CSV files.csv line 2: positions {re.escape(repr(text))} must be a JSON list "
        r"of non-negative integers",
    ):
        read_upload_csv(path)


def test_duplicate_positions(data_dir):
    path = _csv(data_dir, "dataset_id,file_name,positions", f'{ID1},a.ome.tif,"[1, 2, 1]"')
    with pytest.raises(InputError, match=rf"^dataset {ID1}, CSV files.csv line 2: positions '\[1, 2, 1\]' lists a position twice$"):
        read_upload_csv(path)


# --------------------------------------------------------------------------- columns and file errors
def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(InputError, match=rf"^CSV file {re.escape(repr(str(path)))} does not exist$"):
        read_upload_csv(path)


def test_folder_instead_of_csv(tmp_path):
    with pytest.raises(InputError, match=rf"^cannot read CSV file {re.escape(repr(str(tmp_path)))}"):
        read_upload_csv(tmp_path)


def test_not_utf8(data_dir):
    path = _csv(data_dir, "dataset_id,file_name,description", f"{ID1},a.ome.tif,caf\u00e9", encoding="latin-1")
    with pytest.raises(InputError, match=rf"^cannot read CSV file {re.escape(repr(str(path)))}: .*utf-8"):
        read_upload_csv(path)


def test_missing_columns(data_dir):
    path = _csv(data_dir, "dataset,file", f"{ID1},a.ome.tif")
    with pytest.raises(
        InputError,
        match=rf"^CSV file {re.escape(repr(str(path)))} lacks column\(s\) \['dataset_id', 'file_name'\]; "
        r"it has \['dataset', 'file'\]$",
    ):
        read_upload_csv(path)


def test_missing_file_name_column(data_dir):
    path = _csv(data_dir, "dataset_id,description", f"{ID1},x")
    with pytest.raises(InputError, match=r"lacks column\(s\) \['file_name'\]"):
        read_upload_csv(path)


def test_empty_csv(data_dir):
    path = data_dir / "empty.csv"
    path.write_text("")
    with pytest.raises(InputError, match=r"lacks column\(s\) \['dataset_id', 'file_name'\]; it has \[\]"):
        read_upload_csv(path)


def test_unknown_columns(data_dir):
    path = _csv(data_dir, "dataset_id,file_name,positon,Description", f"{ID1},a.ome.tif,1,x")
    with pytest.raises(
        InputError,
        match=rf"^CSV file {re.escape(repr(str(path)))} has unknown column\(s\) \['positon', 'Description'\]; "
        r"known columns are \['dataset_id', 'file_name', 'description', 'parent_dataset_id', 'positions', "
        r"'meta_schema'\]$",
    ):
        read_upload_csv(path)


def test_column_named_twice(data_dir):
    """csv.DictReader would keep the last of them, silently."""
    path = _csv(data_dir, "dataset_id,file_name, file_name", f"{ID1},a.ome.tif,folder")
    with pytest.raises(InputError, match=rf"^CSV file {re.escape(repr(str(path)))} has column\(s\) \['file_name'\] "
                                         "more than once$"):
        read_upload_csv(path)


@pytest.mark.parametrize("description", ["a\x00b", "\x00"])
def test_nul_in_a_field(data_dir, description):
    path = _csv(data_dir, "dataset_id,file_name,description", f"{ID1},a.ome.tif,{description}")
    with pytest.raises(InputError, match=rf"^dataset {ID1}, CSV files.csv line 2: column description holds a NUL "
                                         "character; remove it$"):
        read_upload_csv(path)


def test_header_only(data_dir):
    path = _csv(data_dir, "dataset_id,file_name")
    with pytest.raises(InputError, match=rf"^CSV file {re.escape(repr(str(path)))} has no dataset rows$"):
        read_upload_csv(path)


# --------------------------------------------------------------------------- row errors name dataset and line
def test_empty_dataset_id(data_dir):
    path = _csv(data_dir, "dataset_id,file_name", f"{ID1},a.ome.tif", ",folder")
    with pytest.raises(InputError, match=r"^CSV files.csv line 3: dataset_id is empty$"):
        read_upload_csv(path)


def test_invalid_dataset_id_names_the_line(data_dir):
    path = _csv(data_dir, "dataset_id,file_name", "ML-2018-02-30-09-35-54-0010,a.ome.tif")
    with pytest.raises(
        InputError,
        match=r"^CSV files.csv line 2: invalid dataset id 'ML-2018-02-30-09-35-54-0010': date-time does not exist",
    ):
        read_upload_csv(path)


def test_duplicate_dataset_ids(data_dir):
    path = _csv(data_dir, "dataset_id,file_name", f"{ID1},a.ome.tif", f"{ID2},folder", f"{ID1},folder")
    with pytest.raises(InputError, match=rf"^dataset {ID1}, CSV files.csv line 4: dataset_id also on line 2$"):
        read_upload_csv(path)


@pytest.mark.parametrize("value", ["", "None", "  "])
def test_empty_file_name(data_dir, value):
    path = _csv(data_dir, "dataset_id,file_name", f"{ID1},{value}")
    with pytest.raises(InputError, match=rf"^dataset {ID1}, CSV files.csv line 2: file_name is empty$"):
        read_upload_csv(path)


def test_nonexistent_file_name(data_dir):
    path = _csv(data_dir, "dataset_id,file_name", f"{ID1},a.ome.tif", f"{ID2},missing.tif")
    with pytest.raises(InputError, match=rf"^dataset {ID2}, CSV files.csv line 3: file_name 'missing.tif' does not exist$"):
        read_upload_csv(path)


def test_invalid_parent_id(data_dir):
    path = _csv(data_dir, "dataset_id,file_name,parent_dataset_id", f"{ID1},a.ome.tif,ML-2018-11-07-0010")
    with pytest.raises(
        InputError,
        match=rf"^dataset {ID1}, CSV files.csv line 2: parent_dataset_id: invalid dataset id 'ML-2018-11-07-0010'",
    ):
        read_upload_csv(path)


def test_own_parent(data_dir):
    path = _csv(data_dir, "dataset_id,file_name,parent_dataset_id", f"{ID1},a.ome.tif,{ID1}")
    with pytest.raises(InputError, match=rf"^dataset {ID1}, CSV files.csv line 2: a dataset cannot be its own parent$"):
        read_upload_csv(path)


def test_meta_schema_column_missing_file(data_dir):
    path = _csv(data_dir, "dataset_id,file_name,meta_schema", f"{ID1},a.ome.tif,nope.json")
    with pytest.raises(InputError, match=rf"^dataset {ID1}, CSV files.csv line 2: meta_schema 'nope.json' does not exist$"):
        read_upload_csv(path)


def test_meta_schema_column_must_be_a_file(data_dir):
    path = _csv(data_dir, "dataset_id,file_name,meta_schema", f"{ID1},a.ome.tif,folder")
    with pytest.raises(InputError, match=r"meta_schema 'folder' does not exist"):
        read_upload_csv(path)


def test_quoted_multiline_description_keeps_line_numbers_meaningful(data_dir):
    path = _csv(data_dir, "dataset_id,file_name,description", f'{ID1},a.ome.tif,"two\nlines"', f"{ID2},missing")
    with pytest.raises(InputError, match=rf"^dataset {ID2}, CSV files.csv line 4: file_name 'missing' does not exist$"):
        read_upload_csv(path)


def test_unquoted_comma_is_not_silently_dropped(data_dir):
    path = _csv(data_dir, "dataset_id,file_name,description", f"{ID1},a.ome.tif,cells, fixed")
    with pytest.raises(
        InputError, match=r"^CSV files.csv line 2: 4 fields but the header has 3; quote values that contain commas$"
    ):
        read_upload_csv(path)


def test_rows_may_omit_trailing_optional_fields(data_dir):
    path = _csv(data_dir, "dataset_id,file_name,description,positions", f"{ID1},a.ome.tif")
    (row,) = read_upload_csv(path)
    assert (row.description, row.positions) == (None, None)
