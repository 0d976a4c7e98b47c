"""The summary of a frames dataset's frame metadata: one row per top-level key (table frames_meta_summary).

A search for datasets whose frames hold some metadata value would otherwise
read the metadata of every frame of every dataset. The summary answers it
from one row per dataset and key (see :mod:`imaging_db.database.search`):

- ``distinct_values``: every distinct scalar (number, text, true, false,
  null) found at the key, or as an element of a list there, in any frame; a
  JSON list. NULL when there are more than MAX_LISTED (``overflow``), or (on
  SQLite, rarely) when a real number among them has no decimal text that reads
  back as the same double: the search then reads the frames of that dataset.
- ``min_number``, ``max_number``: the range of the numbers among them, always
  complete, so ``KEY>N`` and ``KEY<N`` need no frame.
- ``has_other``, ``has_object``, ``has_array``: whether a text, true, false or
  null is among the values, and whether some frame holds an object or a list
  at the key (nested paths and containment read the frames, but only of the
  datasets where they can match).

Values are compared as each database compares JSON: numbers by value
(5 and 5.0 are one), texts exactly, true, false and null by type. The summary
is made by one SQL statement over the dataset's frames rows, in the
transaction that registers them (``json_each`` on SQLite, ``jsonb_each`` on
PostgreSQL), so the upload does no per-frame work in Python. Searches rely on
every frames dataset having its summary: whatever registers frames must fill it.

Its cost is reading every key and value of every frame once more. Measured on
100,000 Micro-Manager frames (115 keys each, 2 cores, load 2-4): PostgreSQL
12.7 s to insert the rows, 26.1 s with the summary (benchmarks/bench.py
--rows); SQLite 2.4-3.0 s, then 10.9-12.8 s for the summary. Neither engine
goes much below a few hundred ns per key and value (SQLite's json_each with
DISTINCT, PostgreSQL's jsonb_each with a hash aggregate were the fastest of
the forms tried), so the cost follows the size of the frames' metadata.
"""

import sqlalchemy as sa

# At most this many distinct values of a key are listed; beyond, the key overflows.
MAX_LISTED = 64

_COLUMNS = ("frames_global_id, key, distinct_values, overflow, min_number, max_number, has_other, has_object, "
            "has_array")

# SQLite. The distinct pairs come from DISTINCT, whose index holds only them, rather than GROUP BY, which
# sorts every pair (measured on 20,000 Micro-Manager frames: 1.9 s against 3.5 s). json_each gives SQL
# values: a real is listed by the shortest of its 15, 16 or 17-digit texts that the JSON reader reads back
# as the same double (SQLite's own float printing is not exact at 17 digits), else not at all (the key is
# then treated as overflowing). A JSON 'integer' may be read as a real (beyond 64 bits): typeof() decides.
# The kinds group integer and real as 'number', as a search compares them.
_SQLITE_KIND = "CASE {t} WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' ELSE {t} END"
_SQLITE_REAL_TEXT = " ".join(
    f"WHEN json_extract(printf('%!.{digits}g', value), '$') = value THEN printf('%!.{digits}g', value)"
    for digits in (15, 16, 17))
_SQLITE = f"""
INSERT INTO frames_meta_summary ({_COLUMNS})
WITH each_pair AS (
    SELECT DISTINCT j.key AS key, j.type AS type, j.value AS value
    FROM frames AS f, json_each(f.metadata_json) AS j
    WHERE f.frames_global_id = :frames_global_id
), pairs AS (
    SELECT key, {_SQLITE_KIND.format(t="type")} AS kind, value FROM each_pair
    WHERE typeof(key) = 'text'  -- the members of an object (a list's elements have numbers)
), items AS (
    SELECT key, kind, value FROM pairs WHERE kind NOT IN ('array', 'object')
    UNION
    SELECT p.key, {_SQLITE_KIND.format(t="e.type")}, e.value
    FROM pairs AS p, json_each(p.value) AS e
    WHERE p.kind = 'array' AND e.type NOT IN ('array', 'object')
), listed AS (
    SELECT key, kind, value, CASE
        WHEN kind = 'text' THEN json_quote(value)
        WHEN kind <> 'number' THEN kind
        WHEN typeof(value) = 'integer' THEN CAST(value AS TEXT)
        WHEN abs(value) > 1.7976931348623157e308 THEN NULL
        {_SQLITE_REAL_TEXT}
    END AS item
    FROM items
), stats AS (
    SELECT key, count(*) AS n, count(item) AS n_listed,
           min(CASE WHEN kind = 'number' THEN value END) AS lo, max(CASE WHEN kind = 'number' THEN value END) AS hi,
           max(kind <> 'number') AS has_other, json_group_array(json(item)) AS list
    FROM listed GROUP BY key
), keys AS (
    SELECT key, max(kind = 'object') AS has_object, max(kind = 'array') AS has_array FROM pairs GROUP BY key
)
SELECT :frames_global_id, k.key,
       CASE WHEN coalesce(s.n, 0) <= :max_listed AND coalesce(s.n, 0) = coalesce(s.n_listed, 0)
            THEN coalesce(s.list, '[]') END,
       NOT (coalesce(s.n, 0) <= :max_listed AND coalesce(s.n, 0) = coalesce(s.n_listed, 0)),
       s.lo, s.hi, coalesce(s.has_other, 0), k.has_object, k.has_array
FROM keys AS k LEFT JOIN stats AS s ON s.key = k.key
"""

# PostgreSQL: jsonb compares numbers by value, so grouping and UNION keep 5 and 5.0 as one; numeric is exact.
_POSTGRESQL = f"""
INSERT INTO frames_meta_summary ({_COLUMNS})
WITH pairs AS (
    SELECT e.key, e.value
    FROM frames AS f
    CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(f.metadata_json) = 'object' THEN f.metadata_json END) AS e
    WHERE f.frames_global_id = :frames_global_id
    GROUP BY e.key, e.value
), items AS (
    SELECT key, value FROM pairs WHERE jsonb_typeof(value) NOT IN ('array', 'object')
    UNION
    SELECT p.key, x.value
    FROM pairs AS p
    CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(p.value) = 'array' THEN p.value END) AS x
    WHERE jsonb_typeof(x.value) NOT IN ('array', 'object')
), stats AS (
    SELECT key, count(*) AS n,
           min(CASE WHEN jsonb_typeof(value) = 'number' THEN value::numeric END) AS lo,
           max(CASE WHEN jsonb_typeof(value) = 'number' THEN value::numeric END) AS hi,
           bool_or(jsonb_typeof(value) <> 'number') AS has_other, jsonb_agg(value) AS list
    FROM items GROUP BY key
), keys AS (
    SELECT key, bool_or(jsonb_typeof(value) = 'object') AS has_object,
           bool_or(jsonb_typeof(value) = 'array') AS has_array
    FROM pairs GROUP BY key
)
SELECT :frames_global_id, k.key,
       CASE WHEN coalesce(s.n, 0) <= :max_listed THEN coalesce(s.list, '[]'::jsonb) END,
       coalesce(s.n, 0) > :max_listed,
       s.lo, s.hi, coalesce(s.has_other, false), k.has_object, k.has_array
FROM keys AS k LEFT JOIN stats AS s ON s.key = k.key
"""

_STATEMENTS = {"sqlite": sa.text(_SQLITE), "postgresql": sa.text(_POSTGRESQL)}


def fill(conn: sa.Connection, frames_global_id: int) -> None:
    """Summarize the frames rows of one dataset into frames_meta_summary (the dataset must have no rows there).

    Runs in the caller's transaction, so the summary becomes visible with the frames.
    """
    conn.execute(_STATEMENTS[conn.dialect.name],
                 {"frames_global_id": frames_global_id, "max_listed": MAX_LISTED})


def fill_all(conn: sa.Connection) -> int:
    """Summarize every frames dataset that has no summary rows yet; return how many were summarized."""
    todo = conn.execute(sa.text(
        "SELECT id FROM frames_global AS g WHERE NOT EXISTS "
        "(SELECT 1 FROM frames_meta_summary AS s WHERE s.frames_global_id = g.id) ORDER BY id")).scalars().all()
    for frames_global_id in todo:
        fill(conn, frames_global_id)
    return len(todo)
