"""The ORM as the original imagingDB notebooks use it: relationships, JSON containment and fields, the GIN index."""

import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from imaging_db.database import migrate, schema
from imaging_db.database.db_ops import DatasetRecord
from imaging_db.database.models import DataSet, FileGlobal, Frames, FramesGlobal

TOPOR = "ML-2018-11-07-09-35-54-0010"
CHILD = "ML-2018-11-07-09-35-54-0011"
OTHER = "ML-2018-11-08-10-00-00-0001"
NOTES = "ML-2018-11-09-10-00-00-0001"


def _frames_global(metadata):
    return {"storage_dir": "raw_frames/x", "nbr_frames": 2, "im_width": 8, "im_height": 4, "im_colors": 1,
            "bit_depth": "uint16", "nbr_slices": 2, "nbr_channels": 1, "nbr_timepoints": 1, "nbr_positions": 1,
            "metadata_json": metadata}


def _frame(z, metadata):
    return {"channel_idx": 0, "slice_idx": z, "time_idx": 0, "pos_idx": 0, "channel_name": "GFP",
            "file_name": f"im_c000_z{z:03d}_t000_p000.png", "sha256": f"{z}" * 64, "metadata_json": metadata}


@pytest.fixture
def filled(database):
    when = datetime.datetime(2018, 11, 7, 9, 35, 54)
    database.insert_frames_dataset(
        DatasetRecord(TOPOR, when, True, "kidney"),
        _frames_global({"protein_name": "TOPOR", "Summary": {"Slices": 2, "ChNames": ["GFP"]}, "bin": 1}),
        [_frame(z, {"Exposure-ms": 10.0 * (z + 1), "Channel": "GFP"}) for z in range(2)])
    database.insert_frames_dataset(DatasetRecord(CHILD, when, True, "child", parent_serial=TOPOR),
                                   _frames_global({"protein_name": "TOPORS", "bin": True}), [_frame(0, None)])
    database.insert_frames_dataset(DatasetRecord(OTHER, when, True, "liver"),
                                   _frames_global({"protein_name": "ACTB", "Summary": {"Slices": 3}}), [])
    database.insert_file_dataset(DatasetRecord(NOTES, when, False, "notes"),
                                 {"storage_dir": "raw_files/x", "file_name": "notes.txt", "sha256": "0" * 64,
                                  "metadata_json": {"protein_name": "TOPOR"}})
    return database


def _serials(session, *where):
    query = sa.select(DataSet.dataset_serial).join(FramesGlobal).where(*where).order_by(DataSet.dataset_serial)
    return session.scalars(query).all()


def test_relationships_have_the_original_names(filled):
    with Session(filled.engine) as session:
        child = session.scalars(sa.select(DataSet).where(DataSet.dataset_serial == CHILD)).one()
        assert child.parent.dataset_serial == TOPOR
        frames_global = child.parent.frames_global
        assert frames_global.data_set.dataset_serial == TOPOR
        frame = session.scalars(sa.select(Frames).where(Frames.frames_global_id == frames_global.id,
                                                        Frames.slice_idx == 1)).one()
        assert frame.frames_global is frames_global and frame.metadata_json == {"Exposure-ms": 20.0, "Channel": "GFP"}
        assert sorted(f.slice_idx for f in frames_global.frames) == [0, 1]
        notes = session.scalars(sa.select(FileGlobal)).one()
        assert notes.data_set.dataset_serial == NOTES and notes.data_set.file_global is notes


def test_contains_is_json_containment_as_in_the_original_notebooks(filled):
    column = FramesGlobal.metadata_json
    with Session(filled.engine) as session:
        assert _serials(session, column.contains({"protein_name": "TOPOR"})) == [TOPOR]  # not TOPORS: no substring
        assert _serials(session, column.contains({"Summary": {"Slices": 2}})) == [TOPOR]
        assert _serials(session, column.contains({"Summary": {"ChNames": ["GFP"]}})) == [TOPOR]
        assert _serials(session, column.contains({"bin": 1})) == [TOPOR]  # 1 is not true, as in JSON
        assert _serials(session, column.contains({"bin": True})) == [CHILD]
        assert _serials(session, column.contains({"protein_name": "TOPOR", "bin": 2})) == []
        assert _serials(session, column.contains({})) == [TOPOR, CHILD, OTHER]
        frames = session.scalars(sa.select(Frames.slice_idx).where(Frames.metadata_json.contains({"Exposure-ms": 20})))
        assert frames.all() == [1]


def test_contains_compiles_to_the_jsonb_operator_on_postgresql(filled):
    statement = sa.select(FramesGlobal.id).where(FramesGlobal.metadata_json.contains({"protein_name": "TOPOR"}))
    sql = str(statement.compile(filled.engine))
    if filled.engine.dialect.name == "postgresql":
        assert "frames_global.metadata_json @> CAST(" in sql and "AS JSONB)" in sql
    else:
        assert "json_extract(frames_global.metadata_json" in sql and "LIKE" not in sql


def test_a_field_is_selected_by_key(filled):
    with Session(filled.engine) as session:
        names = session.execute(
            sa.select(FramesGlobal.metadata_json["protein_name"].as_string()).order_by(FramesGlobal.id)).scalars()
        assert names.all() == ["TOPOR", "TOPORS", "ACTB"]
        distinct = session.execute(sa.select(FramesGlobal.metadata_json["protein_name"].as_string()).distinct())
        assert sorted(distinct.scalars()) == ["ACTB", "TOPOR", "TOPORS"]
        slices = session.execute(sa.select(FramesGlobal.metadata_json[("Summary", "Slices")].as_integer())
                                 .where(FramesGlobal.metadata_json[("Summary", "Slices")].as_integer() > 2)).scalars()
        assert slices.all() == [3]
    sql = str(sa.select(FramesGlobal.metadata_json["protein_name"]).compile(filled.engine))
    assert ("frames_global.metadata_json -> " in sql) == (filled.engine.dialect.name == "postgresql")


@pytest.mark.postgresql
def test_a_gin_index_serves_containment_on_postgresql(pg_url):
    from imaging_db.database.db_ops import Database

    for made_by in ("first upload", "migrations"):
        engine = sa.create_engine(pg_url)
        if made_by == "first upload":
            database = Database(pg_url)
            database.create_tables()
            database.dispose()
        else:
            with engine.begin() as conn:
                for table in ("alembic_version", "imaging_db_settings", "file_global", "frames", "frames_meta_summary",
                              "frames_global", "data_set"):
                    conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            with engine.begin() as conn:
                from alembic import command
                from alembic.config import Config

                config = Config()
                config.set_main_option("script_location", str(migrate.MIGRATIONS))
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        with engine.connect() as conn:
            definition = conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                                      {"n": schema.FRAMES_GLOBAL_GIN}).scalar()
            assert definition and "USING gin (metadata_json)" in definition, made_by
            conn.execute(sa.text("SET enable_seqscan = off"))
            plan = conn.execute(sa.text("EXPLAIN " + str(
                sa.select(FramesGlobal.id).where(FramesGlobal.metadata_json.contains({"protein_name": "TOPOR"}))
                .compile(engine, compile_kwargs={"literal_binds": False})
            ).replace("%(param_1)s", "'{\"protein_name\": \"TOPOR\"}'"))).scalars().all()
            assert any(schema.FRAMES_GLOBAL_GIN in line for line in plan), plan
            # The frames table has none: it doubled the insert time of 100,000 rows (see schema.py).
            assert "gin" not in " ".join(conn.execute(sa.text(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'frames'")).scalars())
        engine.dispose()
