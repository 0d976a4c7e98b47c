"""Schema migrations (alembic): an empty database upgraded is exactly the models' schema; data survives upgrades."""

import datetime
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from imaging_db.cli import data_downloader, data_uploader, imaging_db_migrate
from imaging_db.database import migrate
from imaging_db.database.db_ops import Database, DatasetRecord
from imaging_db.errors import DatabaseError

ID = "ML-2018-11-07-09-35-54-0010"


def _config(conn) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _at_first_revision_with_data(engine, stamped: bool = True) -> None:
    """A database as imaging_db made it before the renaming migration, with one frames and one file dataset."""
    with engine.begin() as conn:
        command.upgrade(_config(conn), migrate.FIRST)
        conn.execute(sa.text("INSERT INTO data_set (id, dataset_serial, description, microscope, frames, date_time) "
                             "VALUES (1, :a, 'frames', 'scope', :t, :d), (2, :b, 'file', NULL, :f, :d)"),
                     {"a": ID, "b": ID[:-1] + "1", "t": True, "f": False, "d": datetime.datetime(2018, 11, 7)})
        conn.execute(sa.text("INSERT INTO frames_global (id, data_set_id, storage_dir, nbr_frames, im_width, "
                             "im_height, im_colors, bit_depth, nbr_slices, nbr_channels, nbr_timepoints, "
                             "nbr_positions, metadata_json) VALUES (5, 1, :s, 1, 4, 3, 1, 'uint16', 1, 1, 1, 1, :m)"),
                     {"s": f"raw_frames/{ID}", "m": json.dumps({"protein_name": "TOPOR"})})
        conn.execute(sa.text("INSERT INTO frames (frames_global_id, channel_idx, slice_idx, time_idx, pos_idx, "
                             "channel_name, file_name, sha256) VALUES (5, 0, 0, 0, 0, 'GFP', 'im.png', :h)"),
                     {"h": "ab" * 32})
        conn.execute(sa.text("INSERT INTO file_global (id, data_set_id, storage_dir, file_name, sha256) "
                             "VALUES (7, 2, 'raw_files/x', 'notes.txt', :h)"), {"h": "cd" * 32})
        if not stamped:
            conn.execute(sa.text("DROP TABLE alembic_version"))


def test_head_is_the_newest_migration():
    assert ScriptDirectory(str(migrate.MIGRATIONS)).get_current_head() == migrate.HEAD


def test_an_empty_database_upgraded_is_exactly_the_models_schema(db_url):
    """Every migration run on an empty database gives the models' schema: autogenerate finds nothing to change."""
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_config(conn), "head")
        with engine.connect() as conn:
            assert migrate.database_revision(conn) == migrate.HEAD
            assert migrate.differences(conn) == []
    finally:
        engine.dispose()


def test_a_first_upload_creates_the_tables_at_head(database):
    """database.create_tables() on an empty database creates the models' tables and stamps HEAD, as upgrading would."""
    with database.engine.connect() as conn:
        assert migrate.database_revision(conn) == migrate.HEAD
        assert migrate.differences(conn) == []
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert versions == [(migrate.HEAD,)]
    assert migrate.upgrade(database.engine, database.describe()) == (migrate.HEAD, migrate.HEAD)


@pytest.mark.parametrize("stamped", [True, False], ids=["at-0001", "made-before-migrations"])
def test_a_database_with_data_upgrades_keeping_every_row(db_url, stamped):
    database = Database(db_url)
    try:
        _at_first_revision_with_data(database.engine, stamped)
        with pytest.raises(DatabaseError, match=r"has an older schema \(revision 0001, this imaging_db needs "
                                                rf"{migrate.HEAD}\): upgrade it with `imaging_db_migrate`"):
            database.check_schema()
        assert migrate.upgrade(database.engine, database.describe()) == (migrate.FIRST, migrate.HEAD)
        database.check_schema()
        info = database.get_dataset(ID)
        assert (info.storage_dir, info.metadata, info.layout.im_width) == (f"raw_frames/{ID}", {"protein_name": "TOPOR"}, 4)
        assert [(r.channel_name, r.file_name) for r in database.get_frames(ID)] == [("GFP", "im.png")]
        assert database.get_dataset(ID[:-1] + "1").file_name == "notes.txt"
        with database.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT dataset_id FROM frames_global WHERE id = 5")).scalar() == 1
            assert conn.execute(sa.text("SELECT dataset_id FROM file_global WHERE id = 7")).scalar() == 2
            assert migrate.differences(conn) == []
        assert migrate.upgrade(database.engine, database.describe()) == (migrate.HEAD, migrate.HEAD)
    finally:
        database.dispose()


# Slices of the dataset summarized: its UUIDs (two per slice) overflow the summary's lists, its slices do not.
SLICES = 140


def _frame_meta(c: int, z: int) -> dict:
    """Frame metadata with a bit of everything the summary keeps: numbers, text, null, lists, objects, many values."""
    return {"Exposure-ms": [10, 20.5][c], "Camera": "Andor", "Slice": z, "UUID": f"u{c}-{z}", "ROI": [0, 0, 64, c],
            "Stage": {"Z": 1.5 * z}, "Label": None if z else "first", "caf\u00e9": c == 0}


def _listed_set(values) -> frozenset | None:
    """A summary's listed values (JSON text on SQLite, a list from psycopg2) as a set of their JSON texts."""
    if values is None:
        return None
    return frozenset(json.dumps(v) for v in (json.loads(values) if isinstance(values, str) else values))


def test_the_upgrade_summarizes_existing_datasets_as_a_fresh_upload_does(db_url):
    """The frames_meta_summary rows the upgrade makes for a dataset equal those that registering it makes."""
    database = Database(db_url)
    try:
        _at_first_revision_with_data(database.engine)
        frames = [{"channel_idx": c, "slice_idx": z, "time_idx": 0, "pos_idx": 0, "channel_name": f"ch{c}",
                   "file_name": f"im_c{c:03d}_z{z:03d}_t000_p000.png", "sha256": "ab" * 32,
                   "metadata_json": _frame_meta(c, z)} for c in range(2) for z in range(SLICES)]
        with database.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO data_set (id, dataset_serial, frames, date_time) VALUES (3, :s, :t, :d)"),
                         {"s": ID[:-1] + "3", "t": True, "d": datetime.datetime(2018, 11, 7)})
            conn.execute(sa.text("INSERT INTO frames_global (id, data_set_id, storage_dir, nbr_frames, im_width, "
                                 "im_height, im_colors, bit_depth, nbr_slices, nbr_channels, nbr_timepoints, "
                                 f"nbr_positions) VALUES (6, 3, 'raw_frames/x', {2 * SLICES}, 4, 3, 1, 'uint16', "
                                 f"{SLICES}, 2, 1, 1)"))
            conn.execute(sa.text("INSERT INTO frames (frames_global_id, channel_idx, slice_idx, time_idx, pos_idx, "
                                 "channel_name, file_name, sha256, metadata_json) VALUES (6, :channel_idx, "
                                 ":slice_idx, :time_idx, :pos_idx, :channel_name, :file_name, :sha256, :m)"),
                         [{**frame, "m": json.dumps(frame["metadata_json"])} for frame in frames])
        migrate.upgrade(database.engine, database.describe())
        if database.engine.dialect.name == "postgresql":  # the rows above were given their ids
            with database.engine.begin() as conn:
                for table in ("data_set", "frames_global"):
                    conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                         f"(SELECT max(id) FROM {table}))"))
        fresh = ID[:-1] + "4"
        database.insert_frames_dataset(
            DatasetRecord(fresh, datetime.datetime(2018, 11, 7), True),
            {"storage_dir": f"raw_frames/{fresh}", "nbr_frames": 2 * SLICES, "im_width": 4, "im_height": 3,
             "im_colors": 1, "bit_depth": "uint16", "nbr_slices": SLICES, "nbr_channels": 2, "nbr_timepoints": 1,
             "nbr_positions": 1,
             "metadata_json": None}, frames)
        with database.engine.connect() as conn:
            fresh_id = conn.execute(sa.text("SELECT g.id FROM frames_global AS g JOIN data_set AS d "
                                            "ON d.id = g.dataset_id WHERE d.dataset_serial = :s"),
                                    {"s": fresh}).scalar()
            # The listed values in no particular order: the upgrade lists them in SQL, an upload as it meets them.
            def unordered(row):
                return (row[0], _listed_set(row[1]), *row[2:])

            summaries = {
                frames_global_id: [unordered(row) for row in conn.execute(sa.text(
                    "SELECT key, distinct_values, overflow, min_number, max_number, has_other, has_object, has_array "
                    "FROM frames_meta_summary WHERE frames_global_id = :g ORDER BY key"), {"g": frames_global_id})]
                for frames_global_id in (5, 6, fresh_id)}
        assert summaries[5] == []  # its one frame has no metadata
        assert [row[0] for row in summaries[6]] == sorted(_frame_meta(0, 0))
        assert summaries[6] == summaries[fresh_id]
        overflowing = {row[0] for row in summaries[6] if row[2]}
        assert overflowing == {"UUID"}  # 2 * SLICES distinct values, past MAX_LISTED; Slice, SLICES
    finally:
        database.dispose()


def test_commands_refuse_a_database_behind_or_ahead(tmp_path, capsys):
    db_file = tmp_path / "db.sqlite"
    login = tmp_path / "login.json"
    login.write_text(json.dumps({"drivername": "sqlite", "dbname": str(db_file)}))
    engine = sa.create_engine(f"sqlite:///{db_file}")
    _at_first_revision_with_data(engine)
    code = data_downloader.main(["--id", ID, "--dest", str(tmp_path / "dl"), "--login", str(login), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "has an older schema (revision 0001" in err[0]
    assert "imaging_db_migrate" in err[0] and not (tmp_path / "dl").exists()

    (tmp_path / "files.csv").write_text(f"dataset_id,file_name\n{ID[:-1]}2,{login}\n")
    (tmp_path / "config.json").write_text(json.dumps({"upload_type": "file", "storage_access": str(tmp_path / "s")}))
    assert data_uploader.main(["--csv", str(tmp_path / "files.csv"), "--config", str(tmp_path / "config.json"),
                               "--login", str(login), "--no-progress"]) == 1
    assert "has an older schema" in capsys.readouterr().err and not (tmp_path / "s").exists()

    assert imaging_db_migrate.main(["--login", str(login), "--check"]) == 1
    assert "revision 0001" in capsys.readouterr().out
    assert imaging_db_migrate.main(["--login", str(login)]) == 0
    assert f"schema upgraded from revision 0001 to {migrate.HEAD}" in capsys.readouterr().out
    assert imaging_db_migrate.main(["--login", str(login), "--check"]) == 0
    assert f"schema revision {migrate.HEAD}, up to date" in capsys.readouterr().out

    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    code = data_downloader.main(["--id", ID, "--dest", str(tmp_path / "dl"), "--login", str(login), "--no-progress"])
    assert code == 1 and "has a newer schema (revision 0999) than this imaging_db knows" in capsys.readouterr().err
    assert imaging_db_migrate.main(["--login", str(login)]) == 1
    engine.dispose()


def test_migrations_ship_inside_the_package():
    assert (Path(migrate.__file__).parent / "migrations" / "versions" / "0002_original_column_names.py").is_file()


def test_other_processes_never_see_tables_without_their_revision(tmp_path, monkeypatch):
    """On SQLite the tables and the version row are one commit: until then another connection sees no table."""
    db_file = tmp_path / "db.sqlite"
    database = Database(sa.engine.URL.create("sqlite+pysqlite", database=str(db_file)))
    other = sa.create_engine(f"sqlite:///{db_file}")
    seen = []
    real = migrate._create_at_head

    def create_and_look(conn):
        real(conn)
        with other.connect() as look:
            seen.append(sa.inspect(look).get_table_names())

    monkeypatch.setattr(migrate, "_create_at_head", create_and_look)
    try:
        database.create_tables()
        assert seen == [[]]
        with other.connect() as look:
            assert migrate.database_revision(look) == migrate.HEAD
    finally:
        other.dispose()
        database.dispose()
