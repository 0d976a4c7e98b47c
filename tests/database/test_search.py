"""Searching datasets (imaging_db.database.search) on SQLite and PostgreSQL (the ``database`` fixture).

One set of datasets, each made to answer some filters and not others, is
searched with every filter and combination; the expected ids are the same on
both databases, and a test compares the two databases' full answers.
"""

import datetime
import json
from unittest import mock

import pytest
import sqlalchemy as sa

from imaging_db.database import frames_summary
from imaging_db.database.db_ops import Database, DatasetRecord
from imaging_db.database.search import (DatasetFilters, DatasetSummary, MetaFilter, date_range, find_datasets,
                                        meta_filters, parse_meta_filter)
from imaging_db.errors import InputError
from imaging_db.metadata.dataset_id import parse_dataset_id

FIRST = "PROJECT-2010-04-01-00-00-00-0001"
SECOND = "PROJECT-2010-05-01-00-00-00-0001"
MEOW1 = "MEOW-2010-05-05-00-00-00-0001"
THIRD = "PROJECT-2010-06-01-00-00-00-0001"
TIE = "PROJECT-2010-06-05-00-00-00-0002"  # same date-time as MEOW2, registered before it
MEOW2 = "MEOW-2010-06-05-00-00-00-0001"
MEOWX = "MEOWX-2010-06-15-23-59-59-0001"  # the last second of June 15th
LOWER = "meow-2010-06-16-00-00-00-0001"
ALL = [FIRST, SECOND, MEOW1, THIRD, TIE, MEOW2, MEOWX, LOWER]  # by date-time, then registration


def add_frames(database: Database, serial: str, channels: tuple, nbr_slices: int = 1, *, microscope=None,
               description=None, parent=None, global_meta=None, frame_meta=None) -> None:
    """Register a frames dataset; ``frame_meta(c, z)`` gives each frame's metadata (None: no metadata)."""
    frames = [{"channel_idx": c, "slice_idx": z, "time_idx": 0, "pos_idx": 0, "channel_name": name,
               "file_name": f"im_c{c:03d}_z{z:03d}_t000_p000.png", "sha256": f"{c}{z}".ljust(64, "0"),
               "metadata_json": frame_meta(c, z) if frame_meta else None}
              for z in range(nbr_slices) for c, name in enumerate(channels)]
    layout = {"storage_dir": f"raw_frames/{serial}", "nbr_frames": len(frames), "im_width": 64, "im_height": 32,
              "im_colors": 1, "bit_depth": "uint16", "nbr_slices": nbr_slices, "nbr_channels": len(channels),
              "nbr_timepoints": 1, "nbr_positions": 1, "metadata_json": global_meta}
    record = DatasetRecord(serial, parse_dataset_id(serial).date_time, True, description, microscope, parent)
    database.insert_frames_dataset(record, layout, frames)


def add_file(database: Database, serial: str, *, microscope=None, description=None, parent=None, meta=None) -> None:
    record = DatasetRecord(serial, parse_dataset_id(serial).date_time, False, description, microscope, parent)
    database.insert_file_dataset(record, {"storage_dir": f"raw_files/{serial}", "file_name": "notes.txt",
                                          "metadata_json": meta, "sha256": "ab" * 32})


def add_datasets(database: Database) -> None:
    """The datasets every search here runs on, registered out of date order."""
    add_frames(database, MEOWX, ("GFP",), microscope="ZEISS Straße", global_meta={"stack_nbr": 5.0},
               frame_meta=lambda c, z: {"flag": "true"})
    add_frames(database, FIRST, ("GFP", "DAPI"), 2, microscope="scope1", description="First dataset",
               global_meta={"protein_name": "TOPOR", "stack_nbr": 5, "Summary": {"ChNames": ["GFP", "DAPI"],
                                                                                 "Slices": 2}},
               frame_meta=lambda c, z: {"Exposure-ms": [10.0, 20.0][c], "Camera": "Andor", "ChannelIndex": c,
                                        "Slice": z})
    add_frames(database, TIE, ("GFP",), microscope="scope1", description="Tie", global_meta={"stack_nbr": 7},
               frame_meta=lambda c, z: {"Exposure-ms": 5})
    add_frames(database, SECOND, ("RFP", "Cy5"), 3, microscope="scope2", description="Second dataset",
               global_meta={"protein_name": "H2B", "stack_nbr": "5"},
               frame_meta=lambda c, z: {"Exposure-ms": "50", "Stage": {"Z": 1.5 * z}, "Camera": "Hamamatsu ORCA"})
    add_frames(database, MEOW2, ("DAPI",), microscope="other microscope", description="Not informative description",
               global_meta={"Summary": {"Slices": 30}, "Camera": "Andor"})
    add_frames(database, MEOW1, ("GFP",), microscope="scope2", description="Very specific description", parent=FIRST,
               frame_meta=lambda c, z: {"Exposure-ms": [100, "x"], "caf\u00e9": 1})
    add_file(database, THIRD, microscope="scope2", description="Third dataset", parent=FIRST,
             meta={"protein_name": "topor", "tags": ["live", "kidney"], "flag": True, "Summary": {"Slices": 12}})
    add_file(database, LOWER, description="lower-case project")


@pytest.fixture
def datasets(database) -> Database:
    add_datasets(database)
    return database


def ids(database, **filters) -> list[str]:
    return [summary.dataset_id for summary in find_datasets(database, **filters)]


# --------------------------------------------------------------------------- columns
def test_no_filter_lists_every_dataset_by_date_time_then_registration(datasets):
    assert ids(datasets) == ALL


@pytest.mark.parametrize("project, expected", [
    ("PROJECT", [FIRST, SECOND, THIRD, TIE]),
    ("MEOW", [MEOW1, MEOW2]),  # not MEOWX: the whole part before the first '-'
    ("MEOWX", [MEOWX]),
    ("meow", [LOWER]),  # a project id is exact, case included
    ("ML", []),
])
def test_project_id_is_the_part_before_the_first_dash(datasets, project, expected):
    assert ids(datasets, project_id=project) == expected


@pytest.mark.parametrize("project", ["ML-2018", "M L", "", "ML1"])
def test_a_project_id_is_letters_only(datasets, project):
    with pytest.raises(InputError, match=f"project_id '{project}' is not a project id: letters only"):
        find_datasets(datasets, project_id=project)


@pytest.mark.parametrize("microscope, expected", [
    ("SCOPE2", [SECOND, MEOW1, THIRD]),
    ("scope", [FIRST, SECOND, MEOW1, THIRD, TIE, MEOW2]),
    ("strasse", [MEOWX]),  # case-folded: ß is ss
    ("ZEISS STRASSE", [MEOWX]),
    ("nikon", []),
])
def test_microscope_is_a_substring_in_any_case(datasets, microscope, expected):
    assert ids(datasets, microscope=microscope) == expected


@pytest.mark.parametrize("description, expected", [
    ("DESCRIPTION", [MEOW1, MEOW2]),
    ("second", [SECOND]),
    ("Dataset", [FIRST, SECOND, THIRD]),
    ("project", [LOWER]),
])
def test_description_is_a_substring_in_any_case(datasets, description, expected):
    assert ids(datasets, description=description) == expected


@pytest.mark.parametrize("start, end, expected", [
    ("2010-05-01", "2010-06-15", [SECOND, MEOW1, THIRD, TIE, MEOW2, MEOWX]),  # both days included, all day long
    ("2010-06-15", None, [MEOWX, LOWER]),
    (None, "2010-04-01", [FIRST]),
    ("2010-06-05", "2010-06-05", [TIE, MEOW2]),
    (datetime.date(2010, 5, 1), datetime.date(2010, 6, 15), [SECOND, MEOW1, THIRD, TIE, MEOW2, MEOWX]),
    # A datetime is an exact instant, either end included.
    (datetime.datetime(2010, 6, 5), datetime.datetime(2010, 6, 15, 23, 59, 58), [TIE, MEOW2]),
    (datetime.datetime(2010, 6, 15, 23, 59, 59), datetime.datetime(2010, 6, 15, 23, 59, 59), [MEOWX]),
    ("2011-01-01", None, []),
])
def test_dates_are_inclusive(datasets, start, end, expected):
    assert ids(datasets, start_date=start, end_date=end) == expected


@pytest.mark.parametrize("start, end, message", [
    ("2010/05/01", None, r"start_date '2010/05/01' is not a date: expected YYYY-MM-DD, e\.g\. 2018-11-01"),
    (None, "2010-02-30", r"end_date '2010-02-30' is not a valid date \(day is out of range for month\)"),
    ("10-05-01", None, "start_date '10-05-01' is not a date: expected YYYY-MM-DD"),
    ("2010-06-01", "2010-05-31", "end_date 2010-05-31 is before start_date 2010-06-01"),
    (datetime.date(2010, 6, 1), datetime.date(2010, 5, 31), "end_date 2010-05-31 is before start_date 2010-06-01"),
    (20100501, None, "start_date must be a date YYYY-MM-DD, not int"),
])
def test_bad_dates_are_refused_in_one_line(datasets, start, end, message):
    with pytest.raises(InputError, match=message) as raised:
        find_datasets(datasets, start_date=start, end_date=end)
    assert "\n" not in str(raised.value)


def test_date_range_ends_after_the_last_day():
    assert date_range("2010-05-01", "2010-05-31") == (datetime.datetime(2010, 5, 1), datetime.datetime(2010, 6, 1))
    assert date_range(None, "9999-12-31") == (None, None)  # no day after it: no upper bound
    assert date_range(None, None) == (None, None)


def test_parent_lists_its_children(datasets):
    assert ids(datasets, parent=FIRST) == [MEOW1, THIRD]
    assert ids(datasets, parent=SECOND) == []
    assert ids(datasets, parent=FIRST, microscope="scope2", project_id="MEOW") == [MEOW1]


def test_an_unknown_or_malformed_parent_is_refused(datasets):
    with pytest.raises(InputError, match="parent dataset PROJECT-2011-01-01-00-00-00-0001 is not in the database"):
        find_datasets(datasets, parent="PROJECT-2011-01-01-00-00-00-0001")
    with pytest.raises(InputError, match="parent: invalid dataset id 'PROJECT'"):
        find_datasets(datasets, parent="PROJECT")


# --------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("meta, expected", [
    # Global metadata: text is exact, case included; frames_global and file_global alike.
    (["protein_name=TOPOR"], [FIRST]),
    (["protein_name=topor"], [THIRD]),
    # A number matches stored numbers (5 and 5.0) and the same text ("5").
    (["stack_nbr=5"], [FIRST, SECOND, MEOWX]),
    (["stack_nbr=5.0"], [FIRST, MEOWX]),
    (["stack_nbr>6"], [TIE]),
    (["stack_nbr<6"], [FIRST, MEOWX]),  # "5" is text: never compared as a number
    # Dotted paths into nested objects; a value matches an element of a list.
    (["Summary.Slices>10"], [THIRD, MEOW2]),
    (["Summary.Slices<10"], [FIRST]),
    (["Summary.ChNames=GFP"], [FIRST]),
    (["Summary.ChNames=RFP"], []),
    (["tags=kidney"], [THIRD]),
    (["flag=true"], [THIRD, MEOWX]),  # true, and the text "true" of a frame
    # Frame metadata: a dataset matches when one of its frames does.
    (["Exposure-ms>15"], [FIRST, MEOW1]),  # 20.0 in FIRST's second channel; 100 in MEOW1's list; "50" is text
    (["Exposure-ms=10"], [FIRST]),
    (["Exposure-ms=50"], [SECOND]),
    (["Exposure-ms=100"], [MEOW1]),
    (["Exposure-ms=x"], [MEOW1]),
    (["Exposure-ms<6"], [TIE]),
    (["Stage.Z=1.5"], [SECOND]),
    (["Stage.Z>2.9"], [SECOND]),
    (["Stage.Z>3"], []),
    (["Camera=Hamamatsu ORCA"], [SECOND]),
    (["caf\u00e9=1"], [MEOW1]),  # a non-ASCII key, stored \u-escaped by imaging_db
    # Global metadata of one dataset, frame metadata of another.
    (["Camera=Andor"], [FIRST, MEOW2]),
    # Text is not a number, a missing key matches nothing.
    (["protein_name>1"], []),
    (["nothing=1"], []),
    # Every filter must match.
    (["protein_name=TOPOR", "Exposure-ms>15"], [FIRST]),
    (["protein_name=TOPOR", "Exposure-ms>50"], []),
    (["Camera=Andor", "Summary.Slices>2"], [MEOW2]),
])
def test_meta_filters(datasets, meta, expected):
    assert ids(datasets, meta=meta) == expected


@pytest.mark.parametrize("meta, expected", [
    ({"protein_name": "TOPOR", "Summary.Slices": 2}, [FIRST]),
    ({"stack_nbr": 5}, [FIRST, SECOND, MEOWX]),
    ({"flag": True}, [THIRD, MEOWX]),
    # A dict or list value must be contained, as PostgreSQL's @> says: lists by element, scalars by type.
    ({"Summary": {"ChNames": ["GFP"]}}, [FIRST]),
    ({"Summary": {"ChNames": ["DAPI", "GFP"]}}, [FIRST]),
    ({"Summary": {"ChNames": ["GFP", "RFP"]}}, []),
    ({"Summary": {"Slices": "2"}}, []),
    ({"Summary": {"Slices": 2.0}}, [FIRST]),
    ({"Stage": {"Z": 1.5}}, [SECOND]),
    ({"tags": ["live"]}, [THIRD]),
    ({"Summary": {}}, [FIRST, THIRD, MEOW2]),
    ("Exposure-ms>15", [FIRST, MEOW1]),
    ([MetaFilter(("Stage", "Z"), ">", 2.9)], [SECOND]),
])
def test_meta_as_the_python_api_takes_it(datasets, meta, expected):
    assert ids(datasets, meta=meta) == expected


def test_meta_with_other_filters(datasets):
    assert ids(datasets, project_id="PROJECT", meta=["Camera=Andor"]) == [FIRST]
    assert ids(datasets, microscope="other", meta=["Camera=Andor"]) == [MEOW2]
    assert ids(datasets, start_date="2010-05-02", meta=["Exposure-ms>15"]) == [MEOW1]
    assert ids(datasets, parent=FIRST, meta=["protein_name=topor"]) == [THIRD]
    assert ids(datasets, description="first", meta=["Exposure-ms>15"]) == [FIRST]


def test_keys_match_however_the_json_spells_them(database):
    """Non-ASCII keys written as they are (other writers) or \\u-escaped (Python's json, imaging_db); a backslash."""
    raw, escaped = "UNI-2012-01-01-00-00-00-0001", "UNI-2012-01-02-00-00-00-0001"
    # Frame rows may carry their metadata as JSON text, which is stored as it is.
    add_frames(database, raw, ("GFP",), frame_meta=lambda c, z: json.dumps(
        {"Gr\u00f6\u00dfe": 2, "Zei\u00df": {"\u00b5m": 0.5}, "back\\slash": "x"}, ensure_ascii=False))
    add_frames(database, escaped, ("GFP",), frame_meta=lambda c, z: {"Gr\u00f6\u00dfe": 3})
    assert ids(database, meta=["Gr\u00f6\u00dfe>1"]) == [raw, escaped]
    assert ids(database, meta=["Zei\u00df.\u00b5m=0.5"]) == [raw]
    assert ids(database, meta={"Zei\u00df": {"\u00b5m": 0.5}}) == [raw]
    assert ids(database, meta=["back\\slash=x"]) == [raw]


# --------------------------------------------------------------------------- parsing filters
@pytest.mark.parametrize("text, expected", [
    ("Summary.ChNames=GFP", MetaFilter(("Summary", "ChNames"), "=", "GFP")),
    ("Exposure-ms>50", MetaFilter(("Exposure-ms",), ">", 50)),
    ("x<-1.5e2", MetaFilter(("x",), "<", -150.0)),
    ("z>+.5", MetaFilter(("z",), ">", 0.5)),
    (" a = b c ", MetaFilter(("a",), "=", "b c")),
    ("a=b=c", MetaFilter(("a",), "=", "b=c")),
    ("Camera Name=Andor", MetaFilter(("Camera Name",), "=", "Andor")),
])
def test_parse_meta_filter(text, expected):
    assert parse_meta_filter(text) == expected


@pytest.mark.parametrize("text, message", [
    ("protein_name", "metadata filter 'protein_name' has no operator: give KEY=VALUE, KEY>N or KEY<N"),
    ("=TOPOR", "metadata filter '=TOPOR' has no key before '='"),
    ("protein_name=", "metadata filter 'protein_name=' has no value after '='"),
    ("Exposure-ms>fast", "metadata filter 'Exposure-ms>fast': 'fast' is not a number \\(> compares numbers\\)"),
    ("Exposure-ms>=50", "metadata filter 'Exposure-ms>=50': >= is not supported; use >"),
    ("Exposure-ms<=50", "metadata filter 'Exposure-ms<=50': <= is not supported; use <"),
    ("Summary..Slices=3", "metadata filter 'Summary..Slices=3': empty key"),
    ('a"b=1', "metadata filter 'a\"b=1': key 'a\"b' holds a double quote"),
    ("x>1e999", "'1e999' is not a number"),
    ("x<nan", "'nan' is not a number"),
    ("x>0x10", "'0x10' is not a number"),
])
def test_malformed_meta_filters_are_refused_in_one_line(datasets, text, message):
    with pytest.raises(InputError, match=message) as raised:
        parse_meta_filter(text)
    assert "\n" not in str(raised.value)
    with pytest.raises(InputError, match=message):  # and before the search touches the database
        find_datasets(datasets, meta=[text])


@pytest.mark.parametrize("make, message", [
    (lambda: MetaFilter(("a",), "!=", 1), "unknown operator '!='"),
    (lambda: MetaFilter((), "=", 1), "the key path must be one or more keys"),
    (lambda: MetaFilter(("a",), ">", "x"), "> needs a number, not 'x'"),
    (lambda: MetaFilter(("a",), ">", True), "> needs a number, not True"),
    (lambda: MetaFilter(("a",), "=", [[1]]), "a list in a filter may only hold numbers, text, true, false or null"),
    (lambda: MetaFilter(("a",), "=", [{"b": 1}]), "a list in a filter may only hold"),
    (lambda: MetaFilter(("a",), "=", float("nan")), "nan is not a number that can be searched"),
    (lambda: MetaFilter(("a",), "=", {1: 2}), "key 1 is not text"),
    (lambda: MetaFilter(("a",), "=", object()), "cannot search for a object"),
    (lambda: meta_filters(3), "meta must be a dict, a filter string or a list of filter strings, not int"),
    (lambda: meta_filters({"a..b": 1}), "empty key"),
])
def test_bad_filters_are_refused(make, message):
    with pytest.raises(InputError, match=message):
        make()


def test_meta_filters_forms():
    assert meta_filters(None) == []
    assert meta_filters("a=1") == [MetaFilter(("a",), "=", "1")]
    assert meta_filters({"a.b": 3, "c": "x"}) == [MetaFilter(("a", "b"), "=", 3), MetaFilter(("c",), "=", "x")]
    assert meta_filters(["a>1", MetaFilter(("b",), "<", 2)]) == [MetaFilter(("a",), ">", 1),
                                                                 MetaFilter(("b",), "<", 2)]
    assert parse_meta_filter("Exposure-ms>50").text() == "Exposure-ms>50"


def test_filters_are_checked_before_the_database_is_read(tmp_path):
    filters = DatasetFilters.make(project_id="ML", microscope="Leica", start_date="2018-11-01",
                                  end_date="2018-11-30", description="Kidney", parent=FIRST, meta={"a": 1})
    assert filters == DatasetFilters("ML", "leica", "kidney", datetime.datetime(2018, 11, 1),
                                     datetime.datetime(2018, 12, 1), FIRST, (MetaFilter(("a",), "=", 1),))


# --------------------------------------------------------------------------- what is returned
def test_summaries_carry_the_dataset_columns_layout_and_channels(datasets):
    found = {summary.dataset_id: summary for summary in find_datasets(datasets)}
    assert found[FIRST] == DatasetSummary(
        dataset_id=FIRST, date_time=datetime.datetime(2010, 4, 1), microscope="scope1", description="First dataset",
        frames=True, nbr_frames=4, channels=("GFP", "DAPI"), parent_dataset_id=None, im_width=64, im_height=32,
        im_colors=1, bit_depth="uint16", nbr_slices=2, nbr_channels=2, nbr_timepoints=1, nbr_positions=1)
    assert found[SECOND].channels == ("RFP", "Cy5")  # by channel index, not by name
    assert found[SECOND].nbr_frames == 6
    assert found[MEOW1].parent_dataset_id == FIRST
    assert found[THIRD] == DatasetSummary(
        dataset_id=THIRD, date_time=datetime.datetime(2010, 6, 1), microscope="scope2", description="Third dataset",
        frames=False, nbr_frames=None, channels=None, parent_dataset_id=FIRST)
    assert found[LOWER].microscope is None


def _count_statements(database):
    """The queries of tables run from now on (not PostgreSQL's set_config)."""
    statements = []

    def collect(conn, cursor, statement, *args):
        if "FROM" in statement.split():
            statements.append(statement)

    sa.event.listen(database.engine, "before_cursor_execute", collect)
    return statements


def test_two_queries_whatever_the_number_of_datasets(datasets):
    """One query for the datasets, one for the channel names of all of them (three with a parent to look up)."""
    statements = _count_statements(datasets)
    assert len(find_datasets(datasets)) == len(ALL)
    assert len(statements) == 2
    assert "channel_name" in statements[1]
    statements.clear()
    assert ids(datasets, parent=FIRST, meta=["Exposure-ms>15"]) == [MEOW1]
    assert len(statements) == 3


def test_a_database_without_tables_has_no_datasets(db_url):
    database = Database(db_url)
    try:
        assert find_datasets(database, meta=["a=1"]) == []
        with pytest.raises(InputError, match=f"parent dataset {FIRST} is not in the database .*: it holds no datasets"):
            find_datasets(database, parent=FIRST)
    finally:
        database.dispose()


@pytest.mark.postgresql
def test_sqlite_and_postgresql_give_the_same_answers(pg_url, tmp_path):
    """Every search, on the same datasets in each database, returns the same summaries."""
    searches = [
        {}, {"project_id": "MEOW"}, {"microscope": "scope"}, {"description": "dataset"},
        {"start_date": "2010-05-01", "end_date": "2010-06-15"}, {"parent": FIRST},
        *({"meta": [text]} for text in ("stack_nbr=5", "stack_nbr<6", "Summary.ChNames=GFP", "Summary.Slices>10",
                                        "Exposure-ms>15", "Exposure-ms=x", "Stage.Z>2.9", "flag=true",
                                        "caf\u00e9=1", "Camera=Andor", "protein_name>1")),
        {"meta": {"Summary": {"ChNames": ["DAPI", "GFP"]}}}, {"meta": {"Summary": {"Slices": "2"}}},
        {"project_id": "PROJECT", "meta": ["Camera=Andor", "Exposure-ms<15"]},
    ]
    answers = []
    for url in (sa.engine.URL.create("sqlite+pysqlite", database=str(tmp_path / "same.sqlite")), pg_url):
        database = Database(url)
        try:
            database.create_tables()
            add_datasets(database)
            answers.append([find_datasets(database, **search) for search in searches])
        finally:
            database.dispose()
    sqlite_answers, postgresql_answers = answers
    assert sum(len(found) for found in sqlite_answers) > 40  # the searches find something
    for search, on_sqlite, on_postgresql in zip(searches, sqlite_answers, postgresql_answers):
        assert on_sqlite == on_postgresql, search


# --------------------------------------------------------------------------- frame metadata through the summary
WIDE = "WIDE-2012-01-01-00-00-00-0001"  # keys with more distinct values than the summary lists
WIDER = "WIDE-2012-01-02-00-00-00-0001"
EXACT = "EXACT-2012-01-03-00-00-00-0001"


def add_summary_datasets(database: Database) -> None:
    """Datasets whose frame metadata overflows the summary's lists, or holds numbers that must not be rounded.

    Registered with lists of at most 64 values (not MAX_LISTED's 256), so that 70 frames overflow them.
    """
    with mock.patch.object(frames_summary, "MAX_LISTED", 64):
        _add_summary_datasets(database)


def _add_summary_datasets(database: Database) -> None:
    add_frames(database, WIDE, ("GFP",), 70, frame_meta=lambda c, z: {
        "Elapsed": z, "Tag": f"t{z}", "Mixed": z if z % 2 else str(z), "Flag": [z, z == 3 or None]})
    add_frames(database, WIDER, ("GFP",), 70, frame_meta=lambda c, z: {"Elapsed": 100 + z, "Tag": 1000 + z})
    add_frames(database, EXACT, ("GFP", "DAPI"), frame_meta=lambda c, z: [
        # SQLite prints no decimal text of 1.0719262286666168e+300 that reads back as it: an upload lists it by
        # the frame's own text, which SQLite reads as it reads the frame (the SQL backfill leaves it unlisted).
        {"x": 0.1 + 0.2, "big": 2**53 + 1, "tiny": 5e-324, "Stage": {"Z": [1, 2]}, "huge": 1.0719262286666168e+300},
        {"x": 1e300, "big": -(2**63), "List": ["a", 1.5, None], "Stage": "none"}][c])


@pytest.mark.parametrize("meta, expected", [
    # Past the summary's list: the frames of the datasets that may hold the value are read.
    (["Elapsed=33"], [WIDE]),
    (["Elapsed=150"], [WIDER]),
    (["Elapsed=70"], []),
    (["Elapsed=33.0"], [WIDE]),
    (["Tag=t5"], [WIDE]),
    (["Tag=1005"], [WIDER]),
    (["Tag=t99"], []),
    (["Mixed=4"], [WIDE]),  # the text "4"
    (["Mixed=5"], [WIDE]),  # the number 5
    (["Mixed>68"], [WIDE]),  # 69; "68" is text
    (["Flag=true"], [WIDE]),
    (["Flag=null"], [WIDE]),
    # Ranges are exact without reading a frame, overflowing or not.
    (["Elapsed>168"], [WIDER]),
    (["Elapsed<1"], [WIDE]),
    (["Elapsed>169"], []),
    (["Elapsed>68", "Elapsed<101"], [WIDE, WIDER]),
    # Numbers as the database reads them: nothing rounded.
    (["x=0.30000000000000004"], [EXACT]),
    (["x=0.3"], []),
    (["x>1e299"], [EXACT]),
    (["big=9007199254740993"], [EXACT]),
    (["big=9007199254740992"], []),
    (["big<-9223372036854775807"], [EXACT]),
    (["tiny>0"], [EXACT]),
    (["huge=1.0719262286666168e+300"], [EXACT]),
    (["huge=1.0719262286666167e+300"], []),
    (["huge>1.0719262286666167e+300"], [EXACT]),
    (["List=a"], [EXACT]),
    (["List=1.5"], [EXACT]),
    (["List=null"], [EXACT]),
    (["List<2"], [EXACT]),
    # Below a key, and containment: the frames are read where the key holds an object or list.
    (["Stage.Z=2"], [EXACT]),
    (["Stage=none"], [EXACT]),
    ({"Stage": {"Z": [2]}}, [EXACT]),
    ({"List": ["a", None]}, [EXACT]),
    ({"List": ["b"]}, []),
    ({"Flag": [3, True]}, [WIDE]),
])
def test_frame_filters_through_the_summary(database, meta, expected):
    add_summary_datasets(database)
    assert ids(database, meta=meta) == expected


def test_frame_filters_the_summary_answers_read_no_frame(database):
    """With its frames rows gone, a dataset is still found by what its summary lists; not by what it cannot."""
    add_datasets(database)
    add_summary_datasets(database)
    with database.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM frames"))
    assert ids(database, meta=["Exposure-ms=10"]) == [FIRST]
    assert ids(database, meta=["Exposure-ms>15"]) == [FIRST, MEOW1]
    assert ids(database, meta=["Camera=Andor", "Exposure-ms<15"]) == [FIRST]
    assert ids(database, meta=["Elapsed<1"]) == [WIDE]
    assert ids(database, meta=["Elapsed=33"]) == []  # overflowing: only the frames could say
    assert ids(database, meta=["Stage.Z=1.5"]) == []  # below a key: only the frames could say


@pytest.mark.postgresql
def test_sqlite_and_postgresql_give_the_same_answers_through_the_summary(pg_url, tmp_path):
    searches = [[text] for text in (
        "Elapsed=33", "Elapsed=33.0", "Tag=t5", "Tag=1005", "Mixed=4", "Mixed>68", "Flag=true", "Flag=null",
        "Elapsed>168", "x=0.30000000000000004", "x=0.3", "big=9007199254740993", "big<-9223372036854775807",
        "tiny>0", "huge=1.0719262286666168e+300", "List=null", "Stage.Z=2", "Stage=none", "Exposure-ms=10", "Exposure-ms=50", "Camera=Andor",
        "caf\u00e9=1", "flag=true")] + [{"Stage": {"Z": [2]}}, {"List": ["a", None]}, {"Flag": [3, True]}]
    answers = []
    for url in (sa.engine.URL.create("sqlite+pysqlite", database=str(tmp_path / "same.sqlite")), pg_url):
        database = Database(url)
        try:
            database.create_tables()
            add_datasets(database)
            add_summary_datasets(database)
            answers.append([ids(database, meta=meta) for meta in searches])
        finally:
            database.dispose()
    assert sum(map(bool, answers[0])) > 20
    for meta, on_sqlite, on_postgresql in zip(searches, *answers):
        assert on_sqlite == on_postgresql, meta
