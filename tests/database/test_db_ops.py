"""Database operations and tables, on SQLite and PostgreSQL (the ``database`` fixture)."""

import dataclasses
import decimal
import datetime
import itertools
import json
import random

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from imaging_db.database.db_ops import FRAME_COLUMNS, Database, DatasetRecord
from imaging_db.database import bulk_insert, frames_summary
from imaging_db.database.models import DataSet
from imaging_db.errors import DatabaseError, DatasetExistsError, InputError, NotFoundError

SERIAL = "ML-2018-11-07-09-35-54-0010"
OTHER = "ML-2018-11-07-09-35-54-0011"
CHANNELS = ("GFP", "DAPI")

GLOBAL_META = {
    "file_origin": "/data/a.ome.tif",
    "Summary": {"Channels": 2, "ChNames": ["GFP", "DAPI"], "Pixel": {"size_um": 0.325, "binning": None}},
    "flags": [True, False],
    "note": "caf\u00e9 \u03bcm",
}


def _record(serial=SERIAL, parent=None, frames=True, description="a dataset"):
    return DatasetRecord(
        serial=serial,
        date_time=datetime.datetime(2018, 11, 7, 9, 35, 54),
        frames=frames,
        description=description,
        microscope="Leica SP8",
        parent_serial=parent,
    )


def _frame(c, z, t, p, channel_name=None):
    name = channel_name or CHANNELS[c % len(CHANNELS)]
    return {
        "channel_idx": c,
        "slice_idx": z,
        "time_idx": t,
        "pos_idx": p,
        "channel_name": name,
        "file_name": f"im_c{c:03d}_z{z:03d}_t{t:03d}_p{p:03d}.png",
        "sha256": f"{c}{z}{t}{p}".ljust(64, "0"),
        "metadata_json": {"ChannelIndex": c, "Slice": z, "Nested": {"t": t, "p": [p, {"deep": True}]}},
    }


def _frames_global(nbr_frames, c=1, z=1, t=1, p=1, metadata=None):
    return {
        "storage_dir": f"raw_frames/{SERIAL}",
        "nbr_frames": nbr_frames,
        "im_width": 64,
        "im_height": 32,
        "im_colors": 1,
        "bit_depth": "uint16",
        "nbr_slices": z,
        "nbr_channels": c,
        "nbr_timepoints": t,
        "nbr_positions": p,
        "metadata_json": GLOBAL_META if metadata is None else metadata,
    }


def _insert(database, serial=SERIAL, frames=None, parent=None, description="a dataset"):
    frames = [_frame(0, 0, 0, 0), _frame(1, 0, 0, 0)] if frames is None else frames
    database.insert_frames_dataset(_record(serial, parent, description=description),
                                   _frames_global(len(frames), c=2), frames)


def _count(database, table, where="1=1", **params) -> int:
    with database.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar()


def _rows(database, sql, **params) -> list[dict]:
    with database.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]




# --------------------------------------------------------------------------- inserting
def test_insert_frames_dataset_writes_all_rows(database):
    frames = [_frame(c, z, 0, 0) for c in range(2) for z in range(3)]
    database.insert_frames_dataset(_record(), _frames_global(6, c=2, z=3), frames)

    (data_set,) = _rows(database, "SELECT * FROM data_set")
    assert data_set["dataset_serial"] == SERIAL
    assert data_set["description"] == "a dataset"
    assert data_set["microscope"] == "Leica SP8"
    assert bool(data_set["frames"]) is True
    assert data_set["parent_id"] is None
    assert str(data_set["date_time"]).startswith("2018-11-07 09:35:54")

    (frames_global,) = _rows(database, "SELECT * FROM frames_global")
    assert frames_global["dataset_id"] == data_set["id"]
    assert {k: frames_global[k] for k in ("storage_dir", "nbr_frames", "im_width", "im_height", "im_colors",
                                          "bit_depth", "nbr_slices", "nbr_channels", "nbr_timepoints",
                                          "nbr_positions")} == {
        "storage_dir": f"raw_frames/{SERIAL}", "nbr_frames": 6, "im_width": 64, "im_height": 32, "im_colors": 1,
        "bit_depth": "uint16", "nbr_slices": 3, "nbr_channels": 2, "nbr_timepoints": 1, "nbr_positions": 1,
    }

    stored = _rows(database, "SELECT channel_idx, slice_idx, time_idx, pos_idx, channel_name, file_name, sha256, "
                             "frames_global_id FROM frames ORDER BY channel_idx, slice_idx")
    assert stored == [
        {**{k: f[k] for k in FRAME_COLUMNS if k != "metadata_json"}, "frames_global_id": frames_global["id"]}
        for f in frames
    ]
    assert _count(database, "file_global") == 0


def test_insert_frames_from_an_iterator_read_once(database, monkeypatch):
    """Rows may come from a generator (the upload's spool): each is read once, in batches, in order."""
    monkeypatch.setattr(bulk_insert, "_BATCH_ROWS", 4)  # several batches, the last one partial
    frames = [_frame(c, z, 0, 0) for c in range(2) for z in range(5)]
    taken = []

    def generate():
        for frame in frames:
            taken.append(frame["file_name"])
            yield frame

    database.insert_frames_dataset(_record(), _frames_global(10, c=2, z=5), generate())
    assert taken == [f["file_name"] for f in frames]
    stored = _rows(database, "SELECT file_name FROM frames ORDER BY id")
    assert [r["file_name"] for r in stored] == [f["file_name"] for f in frames]
    assert [r.metadata_json for r in database.get_frames(SERIAL, with_metadata=True)] == \
           [f["metadata_json"] for f in frames]


def test_batches_are_bounded_by_rows_and_by_metadata_size(monkeypatch):
    """Frames with a lot of metadata go to the database in smaller batches, so memory stays a few MB."""
    monkeypatch.setattr(bulk_insert, "_BATCH_ROWS", 5)
    monkeypatch.setattr(bulk_insert, "_BATCH_METADATA_CHARS", 250)
    small = [{**_frame(0, z, 0, 0), "metadata_json": "{}"} for z in range(12)]
    big = [{**_frame(0, z, 0, 0), "metadata_json": {"note": "x" * 90}} for z in range(7)]
    assert [len(b) for b in bulk_insert._batches(iter(small), 9)] == [5, 5, 2]
    batches = list(bulk_insert._batches(iter(big), 9))
    assert [len(b) for b in batches] == [3, 3, 1]  # about 100 characters of JSON per row
    assert all(r["frames_global_id"] == 9 and isinstance(r["metadata_json"], str) for b in batches for r in b)


def test_insert_dataset_with_no_frames(database):
    database.insert_frames_dataset(_record(), _frames_global(0), [])
    assert _count(database, "frames_global") == 1
    assert _count(database, "frames") == 0


def test_metadata_json_round_trips(database):
    frames = [_frame(0, 0, 0, 0), _frame(0, 1, 0, 0)]
    database.insert_frames_dataset(_record(), _frames_global(2), frames)
    info = database.get_dataset(SERIAL)
    assert info.metadata == GLOBAL_META
    assert [r.metadata_json for r in database.get_frames(SERIAL, with_metadata=True)] == [
        f["metadata_json"] for f in frames
    ]


def test_metadata_json_values_postgresql_refuses_are_stored_alike(database):
    # PostgreSQL's JSON types refuse NaN, Infinity and NUL characters; Micro-Manager
    # metadata can hold them. Both backends must accept the dataset and store the same.
    metadata = {"Exposure-ms": float("nan"), "Max": float("inf"), "Min": [float("-inf"), 1.5],
                "Label": "Pos\x000", "Nested": {"z": float("nan")}}
    database.insert_frames_dataset(_record(), _frames_global(1, metadata=metadata),
                                   [{**_frame(0, 0, 0, 0), "metadata_json": metadata}])
    expected = {"Exposure-ms": None, "Max": None, "Min": [None, 1.5], "Label": "Pos0", "Nested": {"z": None}}
    info = database.get_dataset(SERIAL)
    assert info.metadata == expected
    assert database.get_frames(SERIAL, with_metadata=True)[0].metadata_json == expected


def test_file_dataset(database):
    meta = {"file_origin": "/data/notes.pdf", "parsed": {"plate_id": "A1", "stack_nbr": 3}}
    database.insert_file_dataset(
        _record(frames=False),
        {"storage_dir": f"raw_files/{SERIAL}", "file_name": "notes.pdf", "metadata_json": meta, "sha256": "ab" * 32},
    )
    info = database.get_dataset(SERIAL)
    assert info.layout is None
    assert info.frames is False
    (file_global,) = _rows(database, "SELECT * FROM file_global")
    (data_set,) = _rows(database, "SELECT * FROM data_set")
    assert file_global["dataset_id"] == data_set["id"]
    assert (info.storage_dir, info.file_name, info.sha256) == (f"raw_files/{SERIAL}", "notes.pdf", "ab" * 32)
    assert info.metadata == meta
    assert _count(database, "frames_global") == 0


def test_file_dataset_twice(database):
    file_global = {"storage_dir": "d", "file_name": "f", "metadata_json": {}, "sha256": "0" * 64}
    database.insert_file_dataset(_record(frames=False), file_global)
    with pytest.raises(DatasetExistsError, match=rf"^dataset {SERIAL} is already in the database$"):
        database.insert_file_dataset(_record(frames=False), {**file_global, "file_name": "g"})
    assert _rows(database, "SELECT file_name FROM file_global") == [{"file_name": "f"}]


def test_second_insert_of_same_id_leaves_first_untouched(database):
    _insert(database, description="first")
    with pytest.raises(DatasetExistsError, match=rf"^dataset {SERIAL} is already in the database$"):
        _insert(database, frames=[_frame(c, 1, 0, 0) for c in range(3)], description="second")
    assert _rows(database, "SELECT description FROM data_set") == [{"description": "first"}]
    assert _count(database, "frames_global") == 1
    assert _rows(database, "SELECT slice_idx, channel_idx FROM frames ORDER BY channel_idx") == [
        {"slice_idx": 0, "channel_idx": 0}, {"slice_idx": 0, "channel_idx": 1}]


def test_dataset_exists_error_is_an_input_error(database):
    _insert(database)
    with pytest.raises(InputError):
        _insert(database)


def test_duplicate_frames_roll_back_everything(database):
    _insert(database, serial=OTHER)  # an unrelated dataset must survive
    frames = [_frame(0, 0, 0, 0), _frame(1, 0, 0, 0), _frame(0, 0, 0, 0)]
    with pytest.raises(DatabaseError, match=rf"^dataset {SERIAL}: database .* refused the rows: ") as info:
        _insert(database, frames=frames)
    assert not isinstance(info.value, DatasetExistsError)
    assert _count(database, "data_set", "dataset_serial = :s", s=SERIAL) == 0
    assert _count(database, "data_set") == 1
    assert _count(database, "frames_global") == 1
    assert _count(database, "frames") == 2
    assert database.existing_serials([SERIAL, OTHER]) == {OTHER}


def test_bad_frame_columns_roll_back_everything(database):
    frames = [_frame(0, 0, 0, 0), {**_frame(1, 0, 0, 0), "file_name": None}]
    with pytest.raises(DatabaseError, match=rf"^dataset {SERIAL}: "):
        _insert(database, frames=frames)
    assert (_count(database, "data_set"), _count(database, "frames_global"), _count(database, "frames")) == (0, 0, 0)


def test_parent_link(database):
    _insert(database, serial=OTHER)
    _insert(database, serial=SERIAL, parent=OTHER)
    parent_id = _rows(database, "SELECT id FROM data_set WHERE dataset_serial = :s", s=OTHER)[0]["id"]
    child = _rows(database, "SELECT parent_id FROM data_set WHERE dataset_serial = :s", s=SERIAL)[0]
    assert child["parent_id"] == parent_id
    assert database.get_dataset(SERIAL).parent_serial == OTHER
    assert database.get_dataset(OTHER).parent_serial is None


def test_unknown_parent(database):
    with pytest.raises(InputError, match=rf"^dataset {SERIAL}: parent_dataset_id {OTHER} is not in the database$"):
        _insert(database, parent=OTHER)
    assert (_count(database, "data_set"), _count(database, "frames_global"), _count(database, "frames")) == (0, 0, 0)


def test_foreign_keys_are_enforced(database):
    with pytest.raises(sa.exc.IntegrityError):
        with database.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO frames_global (dataset_id, storage_dir, nbr_frames, im_width, im_height, im_colors, "
                "bit_depth, nbr_slices, nbr_channels, nbr_timepoints, nbr_positions) "
                "VALUES (999, 'x', 0, 1, 1, 1, 'uint8', 1, 1, 1, 1)"))


def test_orm_relationships(database):
    _insert(database)
    with Session(database.engine) as session:
        data_set = session.scalars(sa.select(DataSet).where(DataSet.dataset_serial == SERIAL)).one()
        assert data_set.frames_global.nbr_frames == 2
        assert data_set.frames_global.data_set is data_set
        assert data_set.file_global is None


# --------------------------------------------------------------------------- looking up
def test_get_dataset(database):
    _insert(database)
    info = database.get_dataset(SERIAL)
    assert info.serial == SERIAL
    assert info.date_time == datetime.datetime(2018, 11, 7, 9, 35, 54)
    assert info.parent_serial is None
    assert (info.frames, info.description, info.microscope) == (True, "a dataset", "Leica SP8")
    assert dataclasses.asdict(info.layout) == {k: v for k, v in _frames_global(2, c=2).items()
                                               if k not in ("storage_dir", "metadata_json")}
    assert (info.storage_dir, info.metadata) == (f"raw_frames/{SERIAL}", GLOBAL_META)
    assert (info.file_name, info.sha256) == (None, None)


def test_get_unknown_dataset(database):
    _insert(database)
    with pytest.raises(NotFoundError, match=rf"^dataset {OTHER} is not in the database "):
        database.get_dataset(OTHER)


def test_database_without_tables(db_url):
    database = Database(db_url)  # no create_tables()
    try:
        with pytest.raises(NotFoundError, match=rf"^dataset {SERIAL} is not in the database .*: it holds no imaging_db tables yet$"):
            database.get_dataset(SERIAL)
        assert database.existing_serials([SERIAL]) == set()
    finally:
        database.dispose()


def test_create_tables_is_idempotent(database):
    _insert(database)
    database.create_tables()
    assert database.existing_serials([SERIAL]) == {SERIAL}


def test_existing_serials(database):
    _insert(database, serial=SERIAL)
    _insert(database, serial=OTHER)
    assert database.existing_serials([SERIAL, "ML-2019-01-01-00-00-00-0001"]) == {SERIAL}
    assert database.existing_serials([SERIAL, OTHER]) == {SERIAL, OTHER}
    assert database.existing_serials(["ML-2019-01-01-00-00-00-0001"]) == set()
    assert database.existing_serials([]) == set()


# --------------------------------------------------------------------------- frames
@pytest.fixture
def grid(database):
    """A dataset of 2 channels x 3 slices x 2 times x 2 positions, inserted in random order, plus another dataset."""
    frames = [_frame(c, z, t, p) for c, z, t, p in itertools.product(range(2), range(3), range(2), range(2))]
    random.Random(1).shuffle(frames)
    database.insert_frames_dataset(_record(), _frames_global(len(frames), c=2, z=3, t=2, p=2), frames)
    _insert(database, serial=OTHER, frames=[_frame(c, 0, 0, 0, channel_name="GFP") for c in range(2)])
    return SERIAL


def _ctzp(rows):
    return [r.indices for r in rows]


def _expected(c=range(2), z=range(3), t=range(2), p=range(2)):
    """The frames in get_frames order: position, then time, channel, slice."""
    return [(ci, zi, ti, pi) for pi in p for ti in t for ci in c for zi in z]


def test_get_frames_returns_the_dataset_in_order(database, grid):
    rows = database.get_frames(grid, with_metadata=True)
    assert _ctzp(rows) == _expected()
    assert dataclasses.asdict(rows[0]) == _frame(0, 0, 0, 0)
    assert tuple(dataclasses.asdict(rows[0])) == FRAME_COLUMNS


def test_get_frames_leaves_metadata_out_unless_asked(database, grid):
    rows = database.get_frames(grid, channel_ids=[1])
    assert rows[0].metadata_json is None
    assert dataclasses.asdict(rows[0]) == {**_frame(1, 0, 0, 0), "metadata_json": None}


def test_frames_rows_given_as_json_text(database):
    """The upload pipeline serializes metadata in its workers; text and dicts are stored alike."""
    text_row = {**_frame(0, 0, 0, 0), "metadata_json": '{"Tab":"a\\tb","Line":"x\\ny","Back":"c:\\\\d"}'}
    dict_row = {**_frame(0, 1, 0, 0), "metadata_json": {"Tab": "a\tb", "Line": "x\ny", "Back": "c:\\d"}}
    database.insert_frames_dataset(_record(), _frames_global(2), [text_row, dict_row])
    rows = database.get_frames(SERIAL, with_metadata=True)
    assert [r.metadata_json for r in rows] == [{"Tab": "a\tb", "Line": "x\ny", "Back": "c:\\d"}] * 2


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"channel_ids": [1]}, _expected(c=[1])),
        ({"channel_names": ["DAPI"]}, _expected(c=[1])),
        ({"channel_names": ["GFP", "DAPI"]}, _expected()),
        ({"slice_ids": [0, 2]}, _expected(z=[0, 2])),
        ({"time_ids": [1]}, _expected(t=[1])),
        ({"pos_ids": [0]}, _expected(p=[0])),
        ({"channel_ids": [0], "slice_ids": [2], "time_ids": [1], "pos_ids": [1]}, [(0, 2, 1, 1)]),
        ({"channel_names": ["GFP"], "slice_ids": (1, 2), "pos_ids": [1]}, _expected(c=[0], z=[1, 2], p=[1])),
        ({"channel_ids": [0], "channel_names": ["DAPI"]}, []),  # filters combine with AND
        ({"slice_ids": [7]}, []),
        ({"channel_names": ["mCherry"]}, []),
        ({"time_ids": []}, []),
        ({"channel_ids": None, "slice_ids": None}, _expected()),
    ],
)
def test_get_frames_filters(database, grid, filters, expected):
    assert _ctzp(database.get_frames(grid, **filters)) == expected


def test_get_frames_of_unknown_dataset(database, grid):
    assert database.get_frames("ML-2019-01-01-00-00-00-0001") == []


def test_frame_index_values(database, grid):
    assert database.frame_index_values(grid) == {
        "channel_name": ["DAPI", "GFP"],
        "channel_idx": [0, 1],
        "slice_idx": [0, 1, 2],
        "time_idx": [0, 1],
        "pos_idx": [0, 1],
    }
    other = OTHER
    assert database.frame_index_values(other)["channel_name"] == ["GFP"]
    assert database.frame_index_values(other)["slice_idx"] == [0]


# --------------------------------------------------------------------------- schema
def test_ctzp_index_is_unique(database):
    indexes = {ix["name"]: ix for ix in sa.inspect(database.engine).get_indexes("frames")}
    index = indexes["ix_frames_global_ctzp"]
    assert index["unique"]
    assert index["column_names"] == ["frames_global_id", "channel_idx", "slice_idx", "time_idx", "pos_idx"]


@pytest.mark.parametrize("table", ["frames_global", "frames", "file_global"])
def test_metadata_json_column_type(database, table):
    (column,) = [c for c in sa.inspect(database.engine).get_columns(table) if c["name"] == "metadata_json"]
    if database.engine.dialect.name == "postgresql":
        assert isinstance(column["type"], JSONB)
        data_type = _rows(
            database,
            "SELECT data_type FROM information_schema.columns WHERE table_name = :t AND column_name = 'metadata_json'",
            t=table,
        )
        assert data_type == [{"data_type": "jsonb"}]
    else:
        assert database.engine.dialect.name == "sqlite"
        assert isinstance(column["type"], sa.JSON)


@pytest.mark.postgresql
def test_jsonb_can_be_queried_on_postgresql(pg_url):
    database = Database(pg_url)
    try:
        database.create_tables()
        _insert(database)
        found = _rows(database, "SELECT channel_idx FROM frames WHERE metadata_json -> 'Nested' ->> 't' = '0' "
                                "AND metadata_json @> '{\"ChannelIndex\": 1}'")
        assert found == [{"channel_idx": 1}]
    finally:
        database.dispose()


def test_large_frame_metadata_is_compressed_with_lz4_on_postgresql(pg_url):
    """Micro-Manager metadata runs to kilobytes a frame: it is toasted with lz4, several times faster than pglz."""
    database = Database(pg_url)
    try:
        database.create_tables()
        with database.engine.connect() as conn:
            lz4 = conn.execute(sa.text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                                       "WHERE name = 'default_toast_compression'")).scalar()
        assert lz4, "this PostgreSQL server was built without lz4"
        big = {f"Device{i}-Property": f"value {i} " * 8 for i in range(120)}
        database.insert_frames_dataset(_record(), _frames_global(2),
                                       [{**_frame(0, 0, 0, 0), "metadata_json": big}, _frame(0, 1, 0, 0)])
        found = _rows(database, "SELECT slice_idx, pg_column_compression(metadata_json) AS method FROM frames "
                                "ORDER BY slice_idx")
        assert found == [{"slice_idx": 0, "method": "lz4"}, {"slice_idx": 1, "method": None}]
        rows = database.get_frames(SERIAL, with_metadata=True)
        assert rows[0].metadata_json == big
    finally:
        database.dispose()


def test_frames_are_written_in_several_batches(database, monkeypatch):
    """Rows stream in batches (COPY chunks on PostgreSQL, executemany batches elsewhere); none is lost."""
    monkeypatch.setattr(bulk_insert, "_BATCH_ROWS", 3)
    monkeypatch.setattr(bulk_insert, "_COPY_CHUNK", 50)
    frames = [{**_frame(0, z, 0, 0), "metadata_json": {"z": z, "text": "tab\there\nnew line \\ back"}}
              for z in range(10)]
    database.insert_frames_dataset(_record(), _frames_global(10, z=10), frames)
    rows = database.get_frames(SERIAL, with_metadata=True)
    assert [r.slice_idx for r in rows] == list(range(10))
    assert [r.metadata_json for r in rows] == [f["metadata_json"] for f in frames]


# --------------------------------------------------------------------------- the frames' metadata summary
def _summary_rows(database) -> dict:
    """frames_meta_summary as {key: (values as a set, overflow, min, max, has_other, has_object, has_array)}.

    Values are tagged with their JSON type (True is not 1); numbers are compared as floats.
    """
    def tagged(value):
        if value is None or isinstance(value, (bool, str)):
            return type(value).__name__, value
        return "number", float(value)

    summary = {}
    for row in _rows(database, "SELECT * FROM frames_meta_summary ORDER BY key"):
        values = row["distinct_values"]
        if isinstance(values, str):  # SQLite returns the JSON text, psycopg2 the decoded list
            values = json.loads(values)
        number = (lambda n: None if n is None else float(n))
        summary[row["key"]] = (None if values is None else {tagged(v) for v in values}, bool(row["overflow"]),
                               number(row["min_number"]), number(row["max_number"]), bool(row["has_other"]),
                               bool(row["has_object"]), bool(row["has_array"]))
    return summary


def test_insert_frames_dataset_summarizes_the_frames_metadata(database):
    """One row per top-level key: its distinct scalars (list elements included), their number range and kinds."""
    metas = [
        {"Exposure-ms": 10, "Camera": "Andor", "flags": [True, 2.5, "x", [1], {"a": 1}], "Stage": {"Z": 1.5},
         "n": None, "caf\u00e9": 1},
        {"Exposure-ms": 10.0, "Camera": "Andor", "flags": 3, "Stage": [1], "Count": "5"},
        json.dumps({"Exposure-ms": 20.5, "Camera": "5", "caf\u00e9": 1}, ensure_ascii=False),  # text, as stored
        None, "[1, 2]", '"a JSON text"',  # no object: nothing to summarize
        *({"Elapsed": i, "Binning": "1x1"} for i in range(frames_summary.MAX_LISTED + 6)),
    ]
    frames = [{**_frame(0, z, 0, 0), "metadata_json": meta} for z, meta in enumerate(metas)]
    database.insert_frames_dataset(_record(), _frames_global(len(frames), z=len(frames)), frames)
    number = (lambda n: ("number", float(n)))
    assert _summary_rows(database) == {
        "Binning": ({("str", "1x1")}, False, None, None, True, False, False),
        "Camera": ({("str", "Andor"), ("str", "5")}, False, None, None, True, False, False),
        "Count": ({("str", "5")}, False, None, None, True, False, False),
        # More distinct values than MAX_LISTED: none listed, the range kept.
        "Elapsed": (None, True, 0.0, frames_summary.MAX_LISTED + 5.0, False, False, False),
        "Exposure-ms": ({number(10), number(20.5)}, False, 10.0, 20.5, False, False, False),  # 10 and 10.0 are one
        "Stage": ({number(1)}, False, 1.0, 1.0, False, True, True),
        "caf\u00e9": ({number(1)}, False, 1.0, 1.0, False, False, False),  # the key as it reads, however escaped
        "flags": ({("bool", True), number(2.5), ("str", "x"), number(3)}, False, 2.5, 3.0, True, False, True),
        "n": ({("NoneType", None)}, False, None, None, True, False, False),
    }
    (frames_global_id,) = [r["id"] for r in _rows(database, "SELECT id FROM frames_global")]
    assert {r["frames_global_id"] for r in _rows(database, "SELECT * FROM frames_meta_summary")} == {frames_global_id}


def test_summary_numbers_are_the_databases_own(database):
    """Numbers are listed and bounded exactly as the database reads them from the frames' JSON."""
    values = [0.1 + 0.2, 9007199254740993, -2.5e-300, 1e300, 0.1]
    frames = [{**_frame(0, z, 0, 0), "metadata_json": {"x": value}} for z, value in enumerate(values)]
    database.insert_frames_dataset(_record(), _frames_global(len(frames), z=len(frames)), frames)
    (row,) = _rows(database, "SELECT distinct_values, min_number, max_number FROM frames_meta_summary")
    listed = row["distinct_values"]
    listed = json.loads(listed) if isinstance(listed, str) else listed
    exact = (lambda v: decimal.Decimal(repr(v)) if isinstance(v, float) else decimal.Decimal(v))
    assert sorted(map(exact, listed)) == sorted(map(exact, values))  # 0.30000000000000004 and 2**53 + 1 not rounded
    assert (row["min_number"], row["max_number"]) in ((-2.5e-300, 1e300), (decimal.Decimal("-2.5E-300"),
                                                                            decimal.Decimal("1E+300")))


def test_each_frames_dataset_has_its_own_summary_and_file_datasets_none(database):
    _insert(database)
    _insert(database, serial=OTHER, frames=[{**_frame(0, 0, 0, 0), "metadata_json": {"Other": 1}}])
    database.insert_file_dataset(_record(serial=SERIAL[:-1] + "2", frames=False),
                                 {"storage_dir": "d", "file_name": "f", "metadata_json": {"File": 1}, "sha256": None})
    rows = _rows(database, "SELECT g.id, s.key FROM frames_meta_summary AS s "
                           "JOIN frames_global AS g ON g.id = s.frames_global_id ORDER BY g.id, s.key")
    assert [r["key"] for r in rows] == ["ChannelIndex", "Nested", "Slice", "Other"]
    assert len({r["id"] for r in rows}) == 2


def test_a_refused_dataset_leaves_no_summary(database):
    """The summary is written in the dataset's transaction: rolled back with it."""
    frames = [_frame(0, 0, 0, 0), _frame(1, 0, 0, 0), _frame(0, 0, 0, 0)]
    with pytest.raises(DatabaseError, match=rf"^dataset {SERIAL}: database .* refused the rows: "):
        _insert(database, frames=frames)
    assert _count(database, "frames_meta_summary") == 0
    _insert(database)
    assert _count(database, "frames_meta_summary") == 3
