"""The frames' metadata summary made in Python (uploads) against the one SQL makes (migration backfill).

Both are written for the same frames on each database and must agree key by
key: the listed values as the database reads them, the overflow, the number
range and the kinds found.
"""

import datetime
import decimal
import json
import random
import threading

import pytest
import sqlalchemy as sa

from imaging_db.database import frames_summary
from imaging_db.database.db_ops import DatasetRecord

SERIAL = "ISP-2005-06-09-20-00-00-0001"


def _frame(z: int, metadata) -> dict:
    return {"channel_idx": 0, "slice_idx": z, "time_idx": 0, "pos_idx": 0, "channel_name": "GFP",
            "file_name": f"im_c000_z{z:03d}_t000_p000.png", "sha256": f"{z:064x}", "metadata_json": metadata}


def _insert(database, metadatas: list, summary=None) -> int:
    frames = [_frame(z, metadata) for z, metadata in enumerate(metadatas)]
    frames_global = {"storage_dir": "d", "nbr_frames": len(frames), "im_width": 4, "im_height": 4, "im_colors": 1,
                     "bit_depth": "uint16", "nbr_slices": len(frames), "nbr_channels": 1, "nbr_timepoints": 1,
                     "nbr_positions": 1, "metadata_json": {}}
    database.insert_frames_dataset(DatasetRecord(SERIAL, datetime.datetime(2005, 6, 9), frames=True),
                                   frames_global, frames, summary)
    with database.engine.connect() as conn:
        return conn.execute(sa.text("SELECT id FROM frames_global")).scalar_one()


def _read(database) -> dict:
    """The summary as {key: row}, the listed values as the database reads them (kind, exact value)."""
    dialect = database.engine.dialect.name
    with database.engine.connect() as conn:
        if dialect == "postgresql":
            listed = ("SELECT s.key, jsonb_typeof(e.value) AS kind, "
                      "CASE jsonb_typeof(e.value) WHEN 'number' THEN (e.value #>> '{}')::numeric::text "
                      "ELSE e.value #>> '{}' END AS value "
                      "FROM frames_meta_summary AS s, jsonb_array_elements(s.distinct_values) AS e")
            bounds = "min_number::text AS lo, max_number::text AS hi"
        else:
            listed = ("SELECT s.key, e.type AS kind, CASE WHEN e.type IN ('integer', 'real') THEN "
                      "printf('%!.17g', e.value) ELSE e.value END AS value "
                      "FROM frames_meta_summary AS s, json_each(s.distinct_values) AS e")
            bounds = ("CASE WHEN min_number IS NOT NULL THEN printf('%!.17g', min_number) END AS lo, "
                      "CASE WHEN max_number IS NOT NULL THEN printf('%!.17g', max_number) END AS hi")
        rows = conn.execute(sa.text(f"SELECT key, overflow, {bounds}, has_other, has_object, has_array, "
                                    "distinct_values IS NULL AS unlisted FROM frames_meta_summary")).mappings()
        summary = {r["key"]: {"overflow": bool(r["overflow"]), "unlisted": bool(r["unlisted"]),
                              "lo": r["lo"], "hi": r["hi"], "has_other": bool(r["has_other"]),
                              "has_object": bool(r["has_object"]), "has_array": bool(r["has_array"]),
                              "values": set()} for r in rows}
        for key, kind, value in conn.execute(sa.text(listed)):
            if kind in ("integer", "real", "number"):
                kind, value = "number", decimal.Decimal(value).normalize()  # 5 and 5.0 read as one
            kind = {"string": "text"}.get(kind, kind)  # PostgreSQL's name
            summary[key]["values"].add((kind, value))
    return summary


def _python_and_sql(database, metadatas: list) -> tuple[dict, dict]:
    frames_global_id = _insert(database, metadatas)
    made_in_python = _read(database)
    with database.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM frames_meta_summary"))
        frames_summary.fill(conn, frames_global_id)
    return made_in_python, _read(database)


def _random_scalar(rng: random.Random):
    kind = rng.randrange(9)
    if kind == 0:
        return rng.randint(-10, 10)
    if kind == 1:
        return rng.randint(-2**70, 2**70)
    if kind == 2:
        return round(rng.uniform(-1e3, 1e3), rng.randint(0, 6))
    if kind == 3:
        return rng.choice([0.1 + 0.2, -0.0, 1e300, -2.5e-300, 2.0**53 + 2, 5.0, float("nan"), float("inf")])
    if kind == 4:
        return rng.choice(["Andor", "", "5", "caf\u00e9", "a\x00b", "\ud800x", "true", "null", "\U0001F52C"])
    if kind == 5:
        return rng.choice([True, False, None])
    if kind == 6:
        return f"value-{rng.randrange(100)}"
    if kind == 7:
        return rng.randrange(3) * 0.5  # 0.0, 0.5, 1.0: equal to the integers 0 and 1 where they meet
    return rng.randint(0, 1)  # not true or false


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(10)
    if kind == 0 and depth < 2:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 1 and depth < 2:
        return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randrange(3))}
    return _random_scalar(rng)


def _random_metadata(rng: random.Random, frame: int):
    keys = ["Exposure-ms", "Camera", "flags", "Stage", "n", "caf\u00e9", "mixed", "\U0001F52C", "a\x00key"]
    metadata = {key: _random_value(rng) for key in rng.sample(keys, rng.randrange(len(keys)))}
    metadata["ElapsedTime-ms"] = frame * 10.25  # a new value in every frame: overflows
    metadata["Few"] = frame % 3
    if frame % 5 == 0:
        metadata[7] = "a number as a key"
    return metadata


def test_python_summary_is_the_sql_summary(database):
    rng = random.Random(20051209)
    metadatas = [_random_metadata(rng, frame) for frame in range(300)]
    metadatas += [None, "[1, 2]", "\"a JSON text\"", {}]  # no object: nothing to count
    python, sql = _python_and_sql(database, metadatas)
    assert python.keys() == sql.keys()
    assert {"ElapsedTime-ms", "Few", "7", "a\ufffdkey", "akey"} & python.keys()
    for key in python:
        if python[key] != sql[key]:
            # The SQL aggregate lists no real number SQLite prints no round-tripping text for (the key then
            # counts as overflowing there); integers beyond 2**53 next to reals read as equal are one value in
            # SQL and two in Python. Neither changes what a search finds.
            assert python[key]["lo"] == sql[key]["lo"] and python[key]["hi"] == sql[key]["hi"], key
            assert {k: v for k, v in python[key].items() if k not in ("values", "overflow", "unlisted")} == \
                {k: v for k, v in sql[key].items() if k not in ("values", "overflow", "unlisted")}, key
            if not sql[key]["unlisted"] and not python[key]["unlisted"]:
                assert python[key]["values"] >= sql[key]["values"], key
    differing = [key for key in python if python[key] != sql[key]]
    assert len(differing) <= 2, differing
    assert python["ElapsedTime-ms"]["overflow"] and python["ElapsedTime-ms"]["lo"] is not None
    assert python["Few"]["values"] == {("number", decimal.Decimal(n)) for n in (0, 1, 2)}


def test_counted_by_several_threads_at_once(database):
    """The upload's workers add frames concurrently: the summary is the same as one made in one thread."""
    rng = random.Random(5)
    metadatas = [_random_metadata(rng, frame) for frame in range(2000)]
    alone = frames_summary.SummaryBuilder()
    for metadata in metadatas:
        alone.add(metadata)
    shared = frames_summary.SummaryBuilder()
    threads = [threading.Thread(target=lambda part=part: [shared.add(m) for m in metadatas[part::4]])
               for part in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    def unordered(rows):  # the values are listed in the order first met, which the threads change
        return {row["key"]: {**row, "distinct_values": row["distinct_values"] and
                             sorted(json.dumps(v) for v in json.loads(row["distinct_values"]))} for row in rows}

    assert unordered(shared.rows(1)) == unordered(alone.rows(1))
    assert len(alone.rows(1)) > 10


def test_summary_given_by_the_upload_is_written_as_given(database):
    """insert_frames_dataset writes the summary it is given (the rows' metadata as text are not parsed again)."""
    builder = frames_summary.SummaryBuilder()
    builder.add({"Given": 1})
    _insert(database, [json.dumps({"Rows": 2})], summary=builder)
    assert set(_read(database)) == {"Given"}


@pytest.mark.parametrize("value, listed", [
    (float("nan"), ("null", None)),
    (float("-inf"), ("null", None)),
    ("a\x00b", ("text", "ab")),
    (2**64 + 1, ("number", 2**64 + 1)),
])
def test_values_are_summarized_as_stored(database, value, listed):
    """NaN and infinities are stored as null, NUL characters removed: the summary says what the frames hold."""
    _insert(database, [{"x": value}])
    (row,) = _read(database).values()
    kind, item = listed
    if kind == "number":
        if database.engine.dialect.name == "sqlite":  # SQLite reads integers past 64 bits as reals
            assert float(row["lo"]) == float(row["hi"]) == float(item)
            item = "%.17g" % float(item)  # as _read prints it
        else:
            assert int(row["lo"]) == int(row["hi"]) == item
        item = decimal.Decimal(item).normalize()
    else:
        assert row["lo"] is None and row["hi"] is None and row["has_other"]
    assert row["values"] == {(kind, item)}
