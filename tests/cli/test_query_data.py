"""query_data through its command line: every flag, the three output formats read back, no match, errors."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from imaging_db.cli import query_data
from imaging_db.database.connection import load_login
from imaging_db.database.db_ops import Database
from imaging_db.database.search import FIELDS
from tests.database.test_search import (ALL, FIRST, LOWER, MEOW1, MEOW2, MEOWX, SECOND, THIRD, TIE, add_datasets,
                                        add_frames)

ROOT = Path(__file__).resolve().parents[2]
LONG = "A long description of a kidney organoid time lapse,\nimaged every 10 minutes for three days in a row"


@pytest.fixture
def login(database, login_file) -> str:
    """The login of a database holding the datasets of tests/database/test_search.py."""
    add_datasets(database)
    return str(login_file)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = query_data.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def json_ids(capsys, login, *argv) -> list[str]:
    code, out, err = run(capsys, "--login", login, "--format", "json", *argv)
    assert (code, err) == (0, "")
    return [row["dataset_id"] for row in json.loads(out)]


# --------------------------------------------------------------------------- every flag
@pytest.mark.parametrize("argv, expected", [
    ([], ALL),
    (["--project_id", "MEOW"], [MEOW1, MEOW2]),
    (["--microscope", "SCOPE2"], [SECOND, MEOW1, THIRD]),
    (["--description", "description"], [MEOW1, MEOW2]),
    (["--start_date", "2010-05-01", "--end_date", "2010-06-15"], [SECOND, MEOW1, THIRD, TIE, MEOW2, MEOWX]),
    (["--start_date", "2010-06-15"], [MEOWX, LOWER]),
    (["--end_date", "2010-04-01"], [FIRST]),
    (["--parent", FIRST], [MEOW1, THIRD]),
    (["--meta", "protein_name=TOPOR"], [FIRST]),
    (["--meta", "Summary.Slices>10"], [THIRD, MEOW2]),
    (["--meta", "Exposure-ms>15"], [FIRST, MEOW1]),
    (["--meta", "Exposure-ms<6"], [TIE]),
    (["--meta", "Summary.ChNames=GFP"], [FIRST]),
    (["--meta", "Camera=Andor", "--meta", "Summary.Slices>2"], [MEOW2]),
    (["--project_id", "PROJECT", "--microscope", "scope", "--start_date", "2010-04-01", "--end_date",
      "2010-05-31", "--meta", "Exposure-ms>15"], [FIRST]),
])
def test_every_flag(login, capsys, argv, expected):
    assert json_ids(capsys, login, *argv) == expected


# --------------------------------------------------------------------------- output formats
def cells(header: str, line: str) -> list[str]:
    """A table line cut into its cells where the header's columns start."""
    starts = [i for i, character in enumerate(header) if character != " " and (i == 0 or header[i - 1] == " ")]
    return [line[start:end].strip() for start, end in zip(starts, starts[1:] + [None])]


def test_table(login, capsys):
    code, out, err = run(capsys, "--login", login, "--project_id", "PROJECT")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    header = lines[0]
    assert header.split() == ["dataset_id", "date_time", "microscope", "description", "type", "nbr_frames",
                              "channels"]
    assert set(lines[1]) == {"-", " "}
    assert lines[-1] == "4 datasets"
    rows = [cells(header, line) for line in lines[2:-1]]
    assert rows == [
        [FIRST, "2010-04-01 00:00:00", "scope1", "First dataset", "frames", "4", "GFP,DAPI"],
        [SECOND, "2010-05-01 00:00:00", "scope2", "Second dataset", "frames", "6", "RFP,Cy5"],
        [THIRD, "2010-06-01 00:00:00", "scope2", "Third dataset", "file", "", ""],
        [TIE, "2010-06-05 00:00:00", "scope1", "Tie", "frames", "1", "GFP"],
    ]
    # Numbers are right-aligned under their header.
    end = header.index("nbr_frames") + len("nbr_frames")
    assert lines[2][:end].endswith(" 4") and lines[3][:end].endswith(" 6")
    code, out, _ = run(capsys, "--login", login, "--project_id", "MEOWX")
    assert out.splitlines()[-1] == "1 dataset"


def test_the_table_cuts_long_values_and_csv_json_carry_them_in_full(database, login_file, capsys):
    serial = "LONG-2011-01-01-00-00-00-0001"
    channels = tuple(f"channel-{c}" for c in range(8))
    add_frames(database, serial, channels, microscope="Nikon Ti2-E with Yokogawa CSU-W1 spinning disk",
               description=LONG)
    code, out, _ = run(capsys, "--login", str(login_file))
    lines = out.splitlines()
    assert len(lines) == 4  # the newline in the description does not break the row
    assert cells(lines[0], lines[2]) == [
        serial, "2011-01-01 00:00:00", "Nikon Ti2-E with Yoko...", "A long description of a kidney organo...",
        "frames", "8", "channel-0,channel-1,channel..."]
    assert max(len(cell) for cell in cells(lines[0], lines[2])) == 40
    code, out, _ = run(capsys, "--login", str(login_file), "--format", "csv")
    (record,) = csv.DictReader(io.StringIO(out))
    assert record["description"] == LONG and record["channels"] == ";".join(channels)
    code, out, _ = run(capsys, "--login", str(login_file), "--format", "json")
    (record,) = json.loads(out)
    assert record["description"] == LONG and record["channels"] == list(channels)
    assert record["microscope"] == "Nikon Ti2-E with Yokogawa CSU-W1 spinning disk"


def test_csv_reads_back(login, capsys):
    code, out, err = run(capsys, "--login", login, "--format", "csv", "--project_id", "PROJECT")
    assert (code, err) == (0, "")
    reader = csv.DictReader(io.StringIO(out))
    assert tuple(reader.fieldnames) == FIELDS
    rows = {row["dataset_id"]: row for row in reader}
    assert list(rows) == [FIRST, SECOND, THIRD, TIE]
    assert rows[FIRST] == {
        "dataset_id": FIRST, "date_time": "2010-04-01T00:00:00", "microscope": "scope1",
        "description": "First dataset", "frames": "true", "nbr_frames": "4", "channels": "GFP;DAPI",
        "parent_dataset_id": "", "im_width": "64", "im_height": "32", "im_colors": "1", "bit_depth": "uint16",
        "nbr_slices": "2", "nbr_channels": "2", "nbr_timepoints": "1", "nbr_positions": "1"}
    assert rows[SECOND]["channels"] == "RFP;Cy5"
    assert {k: rows[THIRD][k] for k in ("frames", "nbr_frames", "channels", "parent_dataset_id", "im_width")} == {
        "frames": "false", "nbr_frames": "", "channels": "", "parent_dataset_id": FIRST, "im_width": ""}


def test_json_reads_back(login, capsys):
    code, out, err = run(capsys, "--login", login, "--format", "json", "--parent", FIRST)
    assert (code, err) == (0, "")
    meow1, third = json.loads(out)
    assert meow1 == {
        "dataset_id": MEOW1, "date_time": "2010-05-05T00:00:00", "microscope": "scope2",
        "description": "Very specific description", "frames": True, "nbr_frames": 1, "channels": ["GFP"],
        "parent_dataset_id": FIRST, "im_width": 64, "im_height": 32, "im_colors": 1, "bit_depth": "uint16",
        "nbr_slices": 1, "nbr_channels": 1, "nbr_timepoints": 1, "nbr_positions": 1}
    assert third["frames"] is False and third["channels"] is None and third["nbr_frames"] is None
    assert third["date_time"] == "2010-06-01T00:00:00"


# --------------------------------------------------------------------------- no match
def test_no_match_exits_0_naming_the_filters(login, capsys):
    code, out, err = run(capsys, "--login", login, "--project_id", "PROJECT", "--meta", "Exposure-ms>1000",
                         "--meta", "Camera=Andor Zyla")
    assert (code, err) == (0, "")
    assert out == "no dataset matches --project_id PROJECT --meta 'Exposure-ms>1000' --meta 'Camera=Andor Zyla'\n"
    code, out, err = run(capsys, "--login", login, "--format", "json", "--description", "none such")
    assert (code, out) == (0, "[]\n")  # scripts still read a document; the line goes to stderr
    assert err == "no dataset matches --description 'none such'\n"
    code, out, err = run(capsys, "--login", login, "--format", "csv", "--end_date", "2000-01-01")
    assert (code, out) == (0, ",".join(FIELDS) + "\n")
    assert err == "no dataset matches --end_date 2000-01-01\n"


def test_an_empty_database_has_no_datasets(database, login_file, capsys):
    code, out, err = run(capsys, "--login", str(login_file))
    assert (code, err) == (0, "")
    assert out == f"no datasets in the database {database.describe()}\n"


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("argv, message", [
    (["--start_date", "2010-13-01"], "start_date '2010-13-01' is not a valid date (month must be in 1..12)"),
    (["--end_date", "1/5/2010"], "end_date '1/5/2010' is not a date: expected YYYY-MM-DD, e.g. 2018-11-01"),
    (["--start_date", "2010-06-01", "--end_date", "2010-05-01"], "end_date 2010-05-01 is before start_date 2010-06-01"),
    (["--meta", "Exposure-ms>=50"], "metadata filter 'Exposure-ms>=50': >= is not supported; use > (strictly "
                                    "greater than)"),
    (["--meta", "protein_name"], "metadata filter 'protein_name' has no operator: give KEY=VALUE, KEY>N or KEY<N"),
    (["--meta", "Exposure-ms>fast"], "metadata filter 'Exposure-ms>fast': 'fast' is not a number (> compares "
                                     "numbers)"),
    (["--project_id", "ML-2018"], "project_id 'ML-2018' is not a project id: letters only, the part of a dataset "
                                  "id before its first '-' (e.g. ML)"),
    (["--parent", "PROJECT-2011-01-01-00-00-00-0001"], "parent dataset PROJECT-2011-01-01-00-00-00-0001 is not in "
                                                       "the database "),
])
def test_errors_are_one_line_and_exit_1(login, capsys, argv, message):
    code, out, err = run(capsys, "--login", login, *argv)
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1
    assert err.startswith(f"query_data: error: {message}")


def test_a_missing_embedded_database_is_one_line_and_not_created(imaging_home, capsys):
    code, out, err = run(capsys, "--project_id", "ML")
    path = imaging_home / "imaging_db.sqlite"
    assert (code, out) == (1, "")
    assert err == (f"query_data: error: no datasets: the SQLite database '{path}' does not exist: nothing has been "
                   "uploaded to it (check --login or $IMAGING_DB_HOME)\n")
    assert not path.exists()
    # Input is checked before the database is looked for.
    code, out, err = run(capsys, "--start_date", "yesterday")
    assert code == 1 and err.startswith("query_data: error: start_date 'yesterday' is not a date")


def test_the_embedded_database_is_the_default(imaging_home, capsys):
    database = Database(load_login(None))
    database.create_tables()
    add_datasets(database)
    database.dispose()
    code, out, err = run(capsys, "--project_id", "MEOW", "--format", "json")
    assert (code, err) == (0, "")
    assert [row["dataset_id"] for row in json.loads(out)] == [MEOW1, MEOW2]


@pytest.mark.parametrize("revision, message", [
    ("0001", "has an older schema (revision 0001, this imaging_db needs "),
    ("0999", "has a newer schema (revision 0999) than this imaging_db knows"),
])
def test_a_database_at_another_schema_revision_is_refused(login, database, capsys, revision, message):
    with database.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    code, out, err = run(capsys, "--login", login)
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1 and message in err
    if revision == "0001":
        assert "imaging_db_migrate" in err


# --------------------------------------------------------------------------- as a program
def test_runs_as_a_script_and_as_the_console_script(login):
    env = {**os.environ, "PYTHONPATH": ""}
    script = subprocess.run([sys.executable, str(ROOT / "imaging_db" / "cli" / "query_data.py"), "--login", login,
                             "--meta", "Exposure-ms>15", "--format", "json"],
                            capture_output=True, text=True, env=env, cwd=ROOT.parent, timeout=120)
    assert (script.returncode, script.stderr) == (0, "")
    assert [row["dataset_id"] for row in json.loads(script.stdout)] == [FIRST, MEOW1]
    console = subprocess.run([str(Path(sys.executable).parent / "query_data"), "--login", login, "--parent", FIRST],
                             capture_output=True, text=True, env=env, timeout=120)
    assert (console.returncode, console.stderr) == (0, "")
    assert [line.split()[0] for line in console.stdout.splitlines()[2:-1]] == [MEOW1, THIRD]
    failing = subprocess.run([str(Path(sys.executable).parent / "query_data"), "--login", login, "--meta", "x"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert failing.returncode == 1 and failing.stdout == ""
    assert failing.stderr == ("query_data: error: metadata filter 'x' has no operator: give KEY=VALUE, KEY>N or "
                              "KEY<N\n")
