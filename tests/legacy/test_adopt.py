"""imaging_db_migrate adopts a database made by the original imagingDB in place, keeping every row."""

import datetime
import json

import numpy as np
import pytest
import sqlalchemy as sa

from imaging_db.cli import data_downloader, imaging_db_migrate
from imaging_db.database import adopt, migrate
from imaging_db.database.db_ops import Database, DatasetRecord
from imaging_db.filestorage import StorageLocation
from tests.conftest import _login_dict
from tests.legacy.original_db import (create_original_tables, dump, insert_file_dataset, insert_frames_dataset)

pytestmark = pytest.mark.postgresql

SERIAL = "ML-2018-11-07-09-35-54-0010"
CHILD = "ML-2018-11-07-09-35-54-0011"
NOTES = "ML-2019-01-02-03-04-05-0001"


def _frames(c=2, z=2):
    rng = np.random.default_rng(7)
    return {(ci, zi, 0, 0): rng.integers(0, 4096, (6, 5), dtype=np.uint16) for ci in range(c) for zi in range(z)}


@pytest.fixture
def original(pg_url, tmp_path):
    """A PostgreSQL database made by the original imagingDB, with frames, a child, a file; and its login file."""
    engine = sa.create_engine(pg_url)
    create_original_tables(engine, stamped=True)
    with engine.begin() as conn:
        parent = insert_frames_dataset(conn, SERIAL, _frames(), ["GFP", "RFP"], {"protein_name": "TOPOR"},
                                       description="kidney")
        insert_frames_dataset(conn, CHILD, _frames(1, 1), ["GFP"], checksums="none", parent_id=parent)
        insert_file_dataset(conn, NOTES, "notes.txt", b"hello")
    login = tmp_path / "login.json"
    login.write_text(json.dumps(_login_dict(pg_url)))
    yield engine, login
    engine.dispose()


def _migrate(login, *flags):
    return imaging_db_migrate.main(["--login", str(login), *flags])


def _schema(engine):
    inspector = sa.inspect(engine)
    return {table: (sorted((c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)),
                    sorted(ix["name"] for ix in inspector.get_indexes(table)))
            for table in inspector.get_table_names()}


@pytest.mark.parametrize("stamped", [True, False], ids=["stamped-8e0d2514fd1f", "create_all-unstamped"])
def test_an_original_database_is_adopted_keeping_every_row(pg_url, tmp_path, stamped, capsys):
    engine = sa.create_engine(pg_url)
    create_original_tables(engine, stamped=stamped)
    with engine.begin() as conn:
        parent = insert_frames_dataset(conn, SERIAL, _frames(), ["GFP", "RFP"], {"protein_name": "TOPOR"})
        insert_frames_dataset(conn, CHILD, _frames(1, 1), ["GFP"], checksums="none", parent_id=parent)
        insert_file_dataset(conn, NOTES, "notes.txt", b"hello")
    login = tmp_path / "login.json"
    login.write_text(json.dumps(_login_dict(pg_url)))
    before = dump(engine)
    with engine.connect() as conn:
        assert migrate.database_revision(conn) == adopt.ORIGINAL

    assert _migrate(login) == 0
    assert "the original imagingDB's database adopted, every row kept" in capsys.readouterr().out
    assert dump(engine) == before
    with engine.connect() as conn:
        assert migrate.database_revision(conn) == migrate.HEAD
        assert migrate.differences(conn) == []
    database = Database(pg_url)
    try:
        info = database.get_dataset(SERIAL)
        assert (info.metadata, info.layout.nbr_channels, info.location) == ({"protein_name": "TOPOR"}, 2, None)
        assert database.get_dataset(CHILD).parent_serial == SERIAL
        assert [r.sha256 for r in database.get_frames(CHILD)] == [None]
        # New uploads go on with the original's ids.
        database.insert_file_dataset(DatasetRecord("ML-2020-01-01-00-00-00-0001", datetime.datetime(2020, 1, 1), False),
                                     {"storage_dir": "raw_files/x", "file_name": "a.txt", "sha256": "0" * 64,
                                      "metadata_json": None})
        with database.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT max(id) FROM data_set")).scalar() == 4
    finally:
        database.dispose()
    engine.dispose()


def test_the_commands_refuse_an_original_database_and_check_shows_the_plan(original, tmp_path, capsys):
    engine, login = original
    before, schema_before = dump(engine), _schema(engine)
    assert data_downloader.main(["--id", SERIAL, "--dest", str(tmp_path / "dl"), "--login", str(login)]) != 0
    err = capsys.readouterr().err
    assert "was made by the original imagingDB (revision 8e0d2514fd1f): adopt it with `imaging_db_migrate`" in err
    assert _migrate(login, "--check") == 1
    out = capsys.readouterr().out
    assert "rows: 3 data_set, 2 frames_global, 5 frames, 1 file_global" in out
    assert "ALTER TABLE frames ALTER COLUMN id TYPE BIGINT" in out
    assert "CREATE UNIQUE INDEX ix_frames_global_ctzp ON frames" in out
    assert (dump(engine), _schema(engine)) == (before, schema_before)


@pytest.mark.parametrize("damage, expected", [
    ("INSERT INTO data_set (dataset_serial, frames, date_time) VALUES ('{SERIAL}', true, '2018-11-07')",
     "data_set ids 1, 4: the same dataset_serial '{SERIAL}' (only one of dataset_serial may be)"),
    ("UPDATE frames SET file_name = NULL WHERE id = 2", "frames id 2: file_name is NULL"),
    ("UPDATE frames SET slice_idx = 0 WHERE id = 2",
     "frames ids 1, 2: the same frames_global_id 1, channel_idx 0, slice_idx 0, time_idx 0, pos_idx 0 "
     "(only one of frames at one c/z/t/p may be)"),
    ("UPDATE frames_global SET bit_depth = 'uint16 little endian' WHERE id = 1",
     "frames_global id 1: bit_depth 'uint16 little endian' is longer than 16 characters"),
    ("ALTER TABLE frames DROP CONSTRAINT frames_frames_global_id_fkey; UPDATE frames SET frames_global_id = 9 "
     "WHERE id = 5", "frames id 5: frames_global_id 9 names no frames_global row"),
    ("UPDATE data_set SET date_time = NULL WHERE id = 3", "data_set id 3: date_time is NULL"),
])
def test_rows_that_break_the_rules_stop_the_adoption_before_any_change(original, damage, expected, capsys):
    engine, login = original
    with engine.begin() as conn:
        conn.exec_driver_sql(damage.format(SERIAL=SERIAL))
    before, schema_before = dump(engine), _schema(engine)
    assert _migrate(login) == 1
    err = capsys.readouterr().err
    assert "row(s) break imaging_db's rules, so nothing was changed" in err
    assert f"  {expected.format(SERIAL=SERIAL)}" in err.splitlines()
    assert (dump(engine), _schema(engine)) == (before, schema_before)
    assert _migrate(login, "--check") == 1
    assert f"  {expected.format(SERIAL=SERIAL)}" in capsys.readouterr().out.splitlines()


def test_every_offending_row_is_listed(original, capsys):
    engine, login = original
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE frames SET channel_idx = NULL")
    assert _migrate(login) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.endswith("channel_idx is NULL")]
    assert lines == [f"  frames id {i}: channel_idx is NULL" for i in range(1, 6)]


def test_an_older_original_revision_is_sent_to_the_original_alembic(original, tmp_path, capsys):
    engine, login = original
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'bae28d7da970'")
    assert _migrate(login) == 1
    assert "older original imagingDB (revision bae28d7da970): bring it to its last revision 8e0d2514fd1f" in \
        capsys.readouterr().err


def test_a_default_storage_is_recorded_for_datasets_that_record_none(original, tmp_path, capsys):
    engine, login = original
    assert _migrate(login, "--default-storage", "local", "--default-storage-access", str(tmp_path / "nas")) == 0
    assert f"read from local:{tmp_path / 'nas'}" in capsys.readouterr().out
    database = Database(engine.url)
    try:
        assert database.get_dataset(SERIAL).location == StorageLocation("local", str(tmp_path / "nas"))
        assert {loc.location for loc in database.dataset_locations()} == {StorageLocation("local", str(tmp_path / "nas"))}
        with database.engine.begin() as conn:  # a dataset that records its own storage keeps it
            conn.execute(sa.text("UPDATE data_set SET storage = 's3', storage_access = 'b' WHERE id = 2"))
        assert database.get_dataset(CHILD).location == StorageLocation("s3", "b")
    finally:
        database.dispose()
    assert _migrate(login, "--default-storage-access", "x") == 1
    assert "need --default-storage" in capsys.readouterr().err


def test_only_an_original_layout_is_taken_for_the_original(pg_url):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE data_set (id SERIAL PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE frames_global (id SERIAL PRIMARY KEY, data_set_id INTEGER)")
        assert migrate.database_revision(conn) == migrate.FIRST  # imaging_db's own schema before migrations
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE frames_global RENAME COLUMN data_set_id TO dataset_id")
        assert migrate.database_revision(conn) == adopt.ORIGINAL
        plan = adopt.plan(conn)
    assert "table frames_global has no column storage_dir: this is not a database at the original imagingDB's " \
           "revision 8e0d2514fd1f" in plan.problems
    engine.dispose()
