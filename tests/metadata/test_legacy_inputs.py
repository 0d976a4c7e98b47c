"""Configs, CSVs and commands written for the original imagingDB keep working.

The original's spellings (config key ``schema_filename``, frames_format names
``ome_tif``, ``tiff``, ``tiff_folder``, ``tiff_id``, ``tif_video``, upload_type
and storage in any letter case, the flag ``--overwrite``) are taken as ours,
with one warning each naming the file and the current spelling, and upload
exactly what the current spelling uploads. Its shipped example configs and CSV
are read here as they are (file paths adapted where a file must exist).
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from imaging_db.cli import data_uploader
from imaging_db.errors import InputError
from imaging_db.example_data import write_imagej_stack, write_mm_ometiff, write_tif_folder
from imaging_db.images.splitters import ALIASES, SPLITTERS
from imaging_db.metadata.upload_config import UploadConfig, load_upload_config, parse_upload_config
from imaging_db.metadata.upload_csv import read_upload_csv

ID = "ML-2018-11-07-09-35-54-0010"
ID2 = "ML-2018-11-07-09-35-54-0011"
SHAPE = (12, 10)
# The header of the original's files_for_upload.csv from September to December 2018.
HEADER_2018 = ("dataset_id,file_name,description,upload_type,frames_format,meta_schema,microscope,"
               "parent_dataset_id,positions")
ORIGINAL = "is the original imagingDB's"

# The original imagingDB's shipped examples (czbiohub/imagingDB at its last commit), as they are.
CONFIG_FILE_JSON = """{
    "upload_type": "file",
    "microscope": "Mass Spectrometry",
    "storage": "local",
    "storage_access": "/Volumes/data_lg/czbiohub-imaging/"
}"""
CONFIG_OME_TIFF_JSON = """{
    "upload_type": "frames",
    "frames_format": "ome_tiff",
    "microscope": "",
    "schema_filename": "metadata_schema.json",
    "storage": "local",
    "storage_access": "/Volumes/data_lg/czbiohub-imaging/"
}"""
CONFIG_TIF_ID_JSON = """{
    "upload_type": "frames",
    "frames_format": "tif_id",
    "microscope": "Leica microscope CAN bus adapter",
    "filename_parser": "parse_ml_name",
    "storage": "local",
    "storage_access": "/Volumes/data_lg/czbiohub-imaging/"
}"""
CONFIG_TIFFOLDER_JSON = """{
    "upload_type": "frames",
    "frames_format": "tif_folder",
    "microscope": "CZDRAGONFLY-PC",
    "filename_parser": "parse_sms_name",
    "storage": "local",
    "storage_access": "/Volumes/data_lg/czbiohub-imaging/"
}"""
# file_name was /Volumes/MicroscopyData/ML_group/Plate_Microscopy/mNG96wp6/PublicationQuality_IJClean/...;
# no trailing newline, as shipped.
FILES_FOR_UPLOAD_CSV = (
    "dataset_id,file_name,description,parent_dataset_id,positions\n"
    "ML-2018-11-07-09-35-54-0010,{folder}/A1_1_CTRL1_PyProcessed_IJClean.tif,"
    "Publication quality Ijclean data,None,"
)
METADATA_SCHEMA_JSON = {
    "type": "object",
    "properties": {
        "MicroManagerMetadata": {
            "type": "object",
            "properties": {
                "ChannelIndex": {"type": "integer"},
                "Slice": {"type": "integer"},
                "FrameIndex": {"type": "integer"},
                "PositionIndex": {"type": "integer"},
                "Channel": {"type": "string"},
                "Exposure-ms": {"type": "number"},
            },
            "required": ["ChannelIndex", "Slice", "FrameIndex", "PositionIndex", "Channel"],
        }
    },
    "required": ["MicroManagerMetadata"],
}


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- the shipped examples


@pytest.mark.parametrize("text, expected", [
    (CONFIG_FILE_JSON, UploadConfig(upload_type="file", microscope="Mass Spectrometry", storage="local",
                                    storage_access="/Volumes/data_lg/czbiohub-imaging/")),
    (CONFIG_TIF_ID_JSON, UploadConfig(upload_type="frames", frames_format="tif_id",
                                      microscope="Leica microscope CAN bus adapter", filename_parser="parse_ml_name",
                                      storage="local", storage_access="/Volumes/data_lg/czbiohub-imaging/")),
    (CONFIG_TIFFOLDER_JSON, UploadConfig(upload_type="frames", frames_format="tif_folder", microscope="CZDRAGONFLY-PC",
                                         filename_parser="parse_sms_name", storage="local",
                                         storage_access="/Volumes/data_lg/czbiohub-imaging/")),
], ids=["config_file", "config_tif_id", "config_tiffolder"])
def test_shipped_configs_in_current_spelling_load_without_warnings(tmp_path, caplog, text, expected):
    assert load_upload_config(_write(tmp_path / "config.json", text)) == expected
    assert _warnings(caplog) == []


def test_shipped_ome_tiff_config_loads_with_one_warning(tmp_path, caplog, monkeypatch):
    # Its schema_filename is relative: the original read it from the current folder, and so do we, else beside
    # the config, as here.
    monkeypatch.chdir(_write(tmp_path / "elsewhere" / "x", "").parent)
    schema = _write(tmp_path / "metadata_schema.json", json.dumps(METADATA_SCHEMA_JSON))
    path = _write(tmp_path / "config_ome_tiff.json", CONFIG_OME_TIFF_JSON)
    assert load_upload_config(path) == UploadConfig(
        upload_type="frames", frames_format="ome_tiff", microscope=None, meta_schema=schema, storage="local",
        storage_access="/Volumes/data_lg/czbiohub-imaging/")
    assert _warnings(caplog) == [f'{path}: "schema_filename" {ORIGINAL} name; use "meta_schema"']


def test_shipped_csv_reads_without_warnings(tmp_path, caplog):
    (tmp_path / "A1_1_CTRL1_PyProcessed_IJClean.tif").write_bytes(b"")
    path = _write(tmp_path / "files_for_upload.csv", FILES_FOR_UPLOAD_CSV.format(folder=tmp_path))
    [row] = read_upload_csv(path)
    assert (row.line, row.dataset_id.serial, row.file_name) == (
        2, ID, tmp_path / "A1_1_CTRL1_PyProcessed_IJClean.tif")
    assert (row.description, row.parent_dataset_id, row.positions, row.meta_schema) == (
        "Publication quality Ijclean data", None, None, None)
    assert _warnings(caplog) == []


# --------------------------------------------------------------------------- config spellings


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_frames_format_aliases_map_to_the_registry_name(caplog, old, new):
    assert new in SPLITTERS
    config = parse_upload_config({"upload_type": "frames", "frames_format": old}, "config.json")
    assert config.frames_format == new
    assert _warnings(caplog) == [f'config.json: "frames_format": "{old}" {ORIGINAL} name; use "{new}"']


def test_the_original_lower_cased_upload_type_and_storage(caplog):
    config = parse_upload_config({"upload_type": "Frames", "frames_format": "tif_id", "storage": "S3",
                                  "storage_access": "bucket"}, "c.json")
    assert (config.upload_type, config.storage) == ("frames", "s3")
    assert _warnings(caplog) == [f'c.json: "upload_type": "Frames" {ORIGINAL} spelling; use "frames"',
                                 f'c.json: "storage": "S3" {ORIGINAL} spelling; use "s3"']


def test_schema_filename_and_meta_schema_may_agree(caplog):
    config = parse_upload_config({"frames_format": "ome_tiff", "schema_filename": "s.json", "meta_schema": "s.json"},
                                 "c.json")
    assert config.meta_schema == Path("s.json")
    assert _warnings(caplog) == [f'c.json: "schema_filename" {ORIGINAL} name; use "meta_schema"']


def test_schema_filename_and_meta_schema_conflict():
    with pytest.raises(InputError, match=r"^config file 'c.json': schema_filename 'a.json' and meta_schema 'b.json' "
                                         r"disagree; keep only meta_schema$"):
        parse_upload_config({"frames_format": "ome_tiff", "schema_filename": "a.json", "meta_schema": "b.json"},
                            "c.json")


def test_current_spellings_give_no_warning(caplog):
    parse_upload_config({"upload_type": "frames", "frames_format": "ome_tiff", "meta_schema": "s.json",
                         "storage": "s3", "storage_access": "bucket"}, "c.json")
    assert _warnings(caplog) == []


def test_errors_name_only_current_spellings(caplog):
    with pytest.raises(InputError, match=r"'Tiff' is not one of \['ome_tiff', 'tif_folder', 'tif_id', 'auto', None\]"):
        parse_upload_config({"frames_format": "Tiff"}, "c.json")
    with pytest.raises(InputError, match=r"'FTP' is not one of \['local', 's3'\]"):
        parse_upload_config({"upload_type": "file", "storage": "FTP"}, "c.json")
    with pytest.raises(InputError, match=r"unknown key\(s\) \['json_meta'\]; allowed keys are \[.*'meta_schema'"):
        parse_upload_config({"upload_type": "file", "json_meta": "s.json"}, "c.json")
    assert _warnings(caplog) == []


def test_a_format_registered_under_an_alias_name_is_not_renamed(monkeypatch, caplog):
    monkeypatch.setitem(SPLITTERS, "tiff", SPLITTERS["tif_id"])
    assert parse_upload_config({"frames_format": "tiff"}, "c.json").frames_format == "tiff"
    assert _warnings(caplog) == []


# --------------------------------------------------------------------------- CSVs


def test_csv_of_the_last_original_columns(tmp_path, caplog):
    (tmp_path / "a.tif").write_bytes(b"")
    path = _write(tmp_path / "files.csv", "dataset_id,file_name,description,parent_dataset_id,positions\n"
                                          f'{ID},a.tif,first,None,"[0, 1]"\n{ID2},a.tif,,{ID},\n')
    first, second = read_upload_csv(path)
    assert (first.positions, first.parent_dataset_id, second.parent_dataset_id.serial) == ([0, 1], None, ID)
    assert _warnings(caplog) == []


def test_csv_with_the_per_row_settings_of_2018_warns_once_per_column(tmp_path, caplog, monkeypatch):
    """Its CSVs until December 2018 gave upload_type, frames_format, microscope per row; one config gives them now."""
    monkeypatch.chdir(_write(tmp_path / "elsewhere" / "x", "").parent)
    (tmp_path / "a.ome.tif").write_bytes(b"")
    _write(tmp_path / "metadata_schema.json", "{}")
    path = _write(tmp_path / "files.csv", (
        f"{HEADER_2018}\n"
        f"{ID},a.ome.tif,first,frames,ome_tiff,metadata_schema.json,None,None,\n"
        f"{ID2},a.ome.tif,second,frames,ome_tiff,metadata_schema.json,,{ID},\n"))
    first, second = read_upload_csv(path)
    assert first.meta_schema == tmp_path / "metadata_schema.json" and second.parent_dataset_id.serial == ID
    ignored = f"{ORIGINAL} per-row setting (its CSVs before December 2018) and is ignored"
    assert _warnings(caplog) == [
        f"{path} line 1: column \"upload_type\" {ignored}: the config's upload_type applies to every row "
        "(this CSV says 'frames')",
        f"{path} line 1: column \"frames_format\" {ignored}: the config's frames_format applies to every row "
        "(this CSV says 'ome_tiff')",
        f"{path} line 1: column \"microscope\" {ignored}: the config's microscope applies to every row",
    ]


def test_csv_of_2018_mixing_settings_between_rows_is_refused(tmp_path):
    """The original's own example CSV of 2018 mixed file and frames rows, which no one config can stand for."""
    for name in ("BlankSlide_DAPI_TxRed_BF_Phase.lif", "ISP_293T_TFRC_sgRNA2_20180601_1_MMStack_Pos1.ome.tif"):
        (tmp_path / name).write_bytes(b"")
    _write(tmp_path / "metadata_schema.json", "{}")
    path = _write(tmp_path / "files_for_upload.csv", (
        f"{HEADER_2018}\n"
        "ML-2018-04-05-08-55-00-0001,BlankSlide_DAPI_TxRed_BF_Phase.lif,This is a blank slide for testing,file,,"
        "None,,None,\n"
        "ISP-2018-06-08-15-45-00-0001,ISP_293T_TFRC_sgRNA2_20180601_1_MMStack_Pos1.ome.tif,"
        "This is what I assume is a typical ome-tif file,frames,ome_tiff,metadata_schema.json,None,None,\n"))
    with pytest.raises(InputError, match=r"column upload_type differs between rows") as info:
        read_upload_csv(path)
    assert str(info.value) == (
        f"CSV file {str(path)!r}: column upload_type differs between rows ('file' on line 2, 'frames' on line 3), "
        "but it is now one setting of the config for every row: split the CSV by upload_type and remove the column")


# --------------------------------------------------------------------------- uploads: same result either way


def _login(path: Path) -> Path:
    return _write(path.with_suffix(".json"), json.dumps({"drivername": "sqlite", "dbname": str(path)}))


def _rows(db: Path) -> dict | None:
    """Every row of the dataset tables, but where the storage was (two runs use two folders); None: no tables."""
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        if "data_set" not in sa.inspect(engine).get_table_names():
            return None
        with engine.connect() as conn:
            tables = {}
            for table in ("data_set", "frames_global", "frames", "file_global"):
                rows = [dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")).mappings()]
                tables[table] = [{k: v for k, v in r.items() if k != "storage_access"} for r in rows]
            return tables
    finally:
        engine.dispose()


def _objects(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _source(tmp_path: Path, current: str) -> Path:
    """Something the splitter ``current`` reads: two channels, two slices."""
    if current == "ome_tiff":
        write_mm_ometiff(tmp_path / "acq", ["GFP", "RFP"], 2, 1, 1, shape=SHAPE)
        return tmp_path / "acq"
    if current == "tif_folder":
        write_tif_folder(tmp_path / "tifs", ["DAPI", "GFP"], 2, shape=SHAPE)
        return tmp_path / "tifs"
    return write_imagej_stack(tmp_path / "stack.tif", 2, 2, shape=SHAPE, channel_names=["BF", "GFP"])


def _upload(tmp_path: Path, name: str, config: dict, csv_text: str, *flags: str) -> tuple[int, Path, Path]:
    run = tmp_path / name
    storage = run / "storage"
    config_path = _write(run / "config.json", json.dumps({**config, "storage_access": str(storage)}))
    csv_path = _write(run / "files.csv", csv_text)
    db = run / "db.sqlite"
    code = data_uploader.main(["--csv", str(csv_path), "--config", str(config_path), "--login", str(_login(db)),
                               "--no-progress", *flags])
    return code, db, storage


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_legacy_spellings_upload_exactly_what_the_current_ones_do(tmp_path, caplog, old, new):
    source = _source(tmp_path, new)
    _write(tmp_path / "schema.json", json.dumps({"type": "object", "required": ["ChannelIndex"]}
                                                if new == "ome_tiff" else {"type": "object"}))
    rows = f"{ID},{source},first,None,\n{ID2},{source},second,{ID},\n"
    current = _upload(tmp_path, "current", {"upload_type": "frames", "frames_format": new,
                                            "meta_schema": str(tmp_path / "schema.json"), "storage": "local"},
                      "dataset_id,file_name,description,parent_dataset_id,positions,meta_schema\n"
                      + rows.replace("\n", ",\n"), "--override")
    assert current[0] == 0 and _warnings(caplog) == []
    legacy = _upload(tmp_path, "legacy", {"upload_type": "Frames", "frames_format": old,
                                          "schema_filename": str(tmp_path / "schema.json"), "storage": "Local"},
                     "dataset_id,file_name,description,parent_dataset_id,positions\n" + rows, "--overwrite")
    assert legacy[0] == 0
    config = tmp_path / "legacy" / "config.json"
    assert sorted(_warnings(caplog)) == sorted([
        f"--overwrite {ORIGINAL} name; use --override",
        f'{config}: "schema_filename" {ORIGINAL} name; use "meta_schema"',
        f'{config}: "frames_format": "{old}" {ORIGINAL} name; use "{new}"',
        f'{config}: "upload_type": "Frames" {ORIGINAL} spelling; use "frames"',
        f'{config}: "storage": "Local" {ORIGINAL} spelling; use "local"',
    ])
    current_rows, legacy_rows = _rows(current[1]), _rows(legacy[1])
    assert len(current_rows["frames"]) == 8 and len(current_rows["data_set"]) == 2
    assert legacy_rows == current_rows
    objects = _objects(current[2])
    assert len(objects) == 8 and _objects(legacy[2]) == objects


def test_schema_filename_is_applied_as_meta_schema(tmp_path, capsys):
    """The same schema refuses the same frame with the same error under either key."""
    source = _source(tmp_path, "ome_tiff")
    schema = _write(tmp_path / "schema.json", json.dumps({"type": "object", "required": ["NoSuchKey"]}))
    errors = []
    for key in ("meta_schema", "schema_filename"):
        code, db, _ = _upload(tmp_path, key, {"frames_format": "ome_tiff", key: str(schema)},
                              f"dataset_id,file_name\n{ID},{source}\n")
        assert code == 1 and _rows(db) is None
        errors.append(capsys.readouterr().err.strip().splitlines()[-1])
    assert errors[0] == errors[1] and "metadata fails meta_schema: 'NoSuchKey' is a required property" in errors[0]


def test_shipped_ome_tiff_config_and_schema_upload(tmp_path):
    source = _source(tmp_path, "ome_tiff")
    _write(tmp_path / "metadata_schema.json", json.dumps(METADATA_SCHEMA_JSON))
    config = json.loads(CONFIG_OME_TIFF_JSON)
    config["schema_filename"] = str(tmp_path / "metadata_schema.json")
    code, _, _ = _upload(tmp_path, "run", config, f"dataset_id,file_name\n{ID},{source}\n")
    assert code == 0


def test_overwrite_resumes_as_override_does(tmp_path, capsys, caplog):
    """Objects already in storage but no rows (an interrupted upload): --overwrite resumes it, as --override would."""
    source = _source(tmp_path, "tif_id")
    config = _write(tmp_path / "config.json", json.dumps({"frames_format": "tif_id",
                                                          "storage_access": str(tmp_path / "storage")}))
    csv_path = _write(tmp_path / "files.csv", f"dataset_id,file_name\n{ID},{source}\n")

    def upload(db: str, *flags: str) -> int:
        return data_uploader.main(["--csv", str(csv_path), "--config", str(config), "--login",
                                   str(_login(tmp_path / db)), "--no-progress", *flags])

    assert upload("first.sqlite") == 0
    capsys.readouterr()
    assert upload("second.sqlite") == 1
    assert "rerun with --override to resume it" in capsys.readouterr().err
    assert upload("second.sqlite", "--overwrite") == 0
    assert "4 already stored" in capsys.readouterr().out
    assert _rows(tmp_path / "second.sqlite") == _rows(tmp_path / "first.sqlite")
    assert _warnings(caplog) == [f"--overwrite {ORIGINAL} name; use --override"]


def test_overwrite_and_override_together_is_one_error_line(tmp_path, capsys):
    csv_path = _write(tmp_path / "files.csv", f"dataset_id,file_name\n{ID},x\n")
    config = _write(tmp_path / "config.json", "{}")
    assert data_uploader.main(["--csv", str(csv_path), "--config", str(config), "--login",
                               str(_login(tmp_path / "db.sqlite")), "--override", "--overwrite"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "data_uploader: error: --overwrite is the original imagingDB's name for --override: give only --override"]
    assert not (tmp_path / "db.sqlite").exists()


def test_warnings_reach_stderr_without_verbose(tmp_path):
    """Through the installed command and its logging set-up: one line per old spelling, the upload done."""
    source = _source(tmp_path, "tif_id")
    config = _write(tmp_path / "config.json", json.dumps({"upload_type": "frames", "frames_format": "tiff_id"}))
    csv_path = _write(tmp_path / "files.csv", f"dataset_id,file_name,description,parent_dataset_id,positions\n"
                                              f"{ID},{source},,None,\n")
    env = {**os.environ, "IMAGING_DB_HOME": str(tmp_path / "home"), "PYTHONPATH": ""}
    done = subprocess.run([str(Path(sys.executable).parent / "data_uploader"), "--csv", str(csv_path), "--config",
                           str(config), "--overwrite", "--no-progress"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{ID}: 4 frames" in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith(f"WARNING imaging_db.cli.data_uploader: --overwrite {ORIGINAL} name; use --override")
    assert lines[1].endswith(f'WARNING imaging_db.metadata.upload_config: {config}: "frames_format": "tiff_id" '
                             f'{ORIGINAL} name; use "tif_id"')


def test_an_original_schema_still_refuses_frames_that_break_it(tmp_path):
    """The original's schemas describe the metadata under MicroManagerMetadata; a missing field is still caught."""
    from imaging_db.metadata.meta_schema import load_meta_schema

    path = _write(tmp_path / "metadata_schema.json", json.dumps(METADATA_SCHEMA_JSON))
    check = load_meta_schema(path)
    good = {"ChannelIndex": 0, "Slice": 0, "FrameIndex": 0, "PositionIndex": 0, "Channel": "GFP", "Exposure-ms": 5}
    assert check(good) is None
    del good["Channel"]
    assert check(good) == "'Channel' is a required property (at MicroManagerMetadata)"
