"""The summary of a frames dataset's frame metadata: one row per top-level key (table frames_meta_summary).

A search for datasets whose frames hold some metadata value would otherwise
read the metadata of every frame of every dataset. The summary answers it
from one row per dataset and key (see :mod:`imaging_db.database.search`):

- ``distinct_values``: every distinct scalar (number, text, true, false,
  null) found at the key, or as an element of a list there, in any frame; a
  JSON list. NULL when there are more than MAX_LISTED (``overflow``): the
  search then reads the frames of that dataset.
- ``min_number``, ``max_number``: the range of the numbers among them, always
  complete, so ``KEY>N`` and ``KEY<N`` need no frame.
- ``has_other``, ``has_object``, ``has_array``: whether a text, true, false or
  null is among the values, and whether some frame holds an object or a list
  at the key (nested paths and containment read the frames, but only of the
  datasets where they can match).

Values are compared as each database compares JSON: numbers by value
(5 and 5.0 are one), texts exactly, true, false and null by type.

An upload makes the summary in Python, frame by frame as its encoding workers
serialize each frame's metadata (:class:`SummaryBuilder`), and writes one row
per key in the transaction that registers the frames. Numbers are listed by
the very JSON text the frame holds, and the range is read from those texts by
the database, so both mean what the database reads in the frames. Measured
on 100,000 Micro-Manager frames (115 keys each, benchmarks/bench.py --rows,
quiet machine): 13 us per frame in the workers, 1.3 s in all; the commit then
takes 5.3 s on PostgreSQL and 1.4 s on SQLite, as with no summary at all (5.1
and 1.4 s), where making it with one SQL aggregate over the frames rows once
sent (:func:`fill`, still what backfills a database upgraded by migration
0005) took 10.5 and 5.9 s. Searches rely on every frames dataset
having its summary: whatever registers frames must write it.

The two ways agree on every key and flag; where they can differ, the answers
of a search cannot: the SQL aggregate lists no real number that SQLite prints
with no text reading back the same (the key then counts as overflowing), and
an integer beyond 2**53 next to a real that a database reads as equal is one
value there and two here.
"""

import json
import math
import threading
from typing import Any, Iterable, Iterator

import sqlalchemy as sa

from imaging_db.json_text import clean_text, to_json_text

# At most this many distinct values of a key are listed; beyond, the key overflows. Enough for a text that
# changes with every frame (a UUID, a time) in datasets of a few hundred frames, and for the position names of
# a plate; a search tests at most this many per dataset and key (on 1,000 datasets of ~100 frames, a UUID is
# found in 0.03 s from the lists where reading the frames took 0.56 s on SQLite).
MAX_LISTED = 256
# (key, type, value) triples gathered before they are folded into the keys' summaries: bounds the memory
# taken by keys whose value changes with every frame (times, positions).
_FOLD_AT = 20000

_COLUMNS = ("frames_global_id, key, distinct_values, overflow, min_number, max_number, has_other, has_object, "
            "has_array")


class _Literal:
    """true, false or null as a summary value: bool and None must not equal the numbers 1 and 0."""

    def __init__(self, text: str):
        self.text = text


_TRUE, _FALSE, _NULL = _Literal("true"), _Literal("false"), _Literal("null")


class _Key:
    """What the frames hold at one key (see the module's description)."""

    __slots__ = ("values", "int_lo", "int_hi", "real_lo", "real_hi", "has_other", "has_object", "has_array")

    def __init__(self):
        self.values: dict | None = {}  # value -> its JSON text, in the order first seen; None once overflowing
        self.int_lo = self.int_hi = self.real_lo = self.real_hi = None
        self.has_other = self.has_object = self.has_array = False

    def scalar(self, value) -> None:
        """Count one scalar found at the key or in a list there (nested lists and objects are not)."""
        kind = type(value)
        if kind is str:
            self.has_other = True
            item, text = value, None
        elif kind is bool or value is None:
            self.has_other = True
            item = _TRUE if value is True else _FALSE if value is False else _NULL
            text = item.text
        elif isinstance(value, (int, float)):  # (subclasses too, as json writes them)
            if isinstance(value, float) and not math.isfinite(value):
                self.scalar(None)  # stored as null (see json_text)
                return
            self._number(value)
            item, text = value, None
        elif isinstance(value, str):
            self.scalar(str(value))
            return
        else:
            return  # nothing JSON can hold: the frame's metadata could not be stored either
        values = self.values
        if values is None or item in values:
            return
        if len(values) >= MAX_LISTED:
            self.values = None
            return
        if text is None:
            text = to_json_text(clean_text(item) if kind is str else item)
        values[item] = text

    def _number(self, value) -> None:
        # Integers and reals apart: the database takes the lowest and highest of the two as it reads them.
        if isinstance(value, int):
            if self.int_lo is None or value < self.int_lo:
                self.int_lo = value
            if self.int_hi is None or value > self.int_hi:
                self.int_hi = value
        else:
            if self.real_lo is None or value < self.real_lo:
                self.real_lo = value
            if self.real_hi is None or value > self.real_hi:
                self.real_hi = value

    def value(self, value) -> None:
        """Count a value found at the key in one frame."""
        if isinstance(value, dict):
            self.has_object = True
        elif isinstance(value, (list, tuple)):
            self.has_array = True
            for element in value:
                if not isinstance(element, (dict, list, tuple)):
                    self.scalar(element)
        else:
            self.scalar(value)


class SummaryBuilder:
    """Makes a frames dataset's summary from its frames' metadata, one frame at a time.

    ``add`` may be called from several threads at once (the upload's encoding
    workers). Each frame costs one set update of its (key, type, value)
    triples, done in C, while the values repeat from frame to frame; the
    distinct triples are folded into the keys' summaries every _FOLD_AT.
    """

    def __init__(self):
        self._triples: set = set()
        self._keys: dict[str, _Key] = {}
        self._names: dict[Any, str] = {}  # a key as given -> as stored (cleaned, a JSON object's key text)
        self._lock = threading.Lock()

    def add(self, metadata) -> None:
        """Count one frame's metadata: a dict, or JSON text (anything but an object has no keys)."""
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if not isinstance(metadata, dict):
            return
        with self._lock:
            try:
                self._triples.update(zip(metadata.keys(), map(type, metadata.values()), metadata.values()))
            except TypeError:  # a list or an object among the values: those one by one
                for key, value in metadata.items():
                    if isinstance(value, (dict, list, tuple)):
                        self._key(key).value(value)
                    else:
                        self._triples.add((key, type(value), value))
            if len(self._triples) >= _FOLD_AT:
                self._fold()

    def counting(self, rows: Iterable[dict]) -> Iterator[dict]:
        """Yield the frames rows, counting the metadata of each (a dict or JSON text) as it passes."""
        for row in rows:
            self.add(row["metadata_json"])
            yield row

    def _key(self, key) -> _Key:
        name = self._names.get(key)
        if name is None:
            # As the frame's JSON text has it: cleaned, and a number, true, false or null as a JSON writer
            # turns them into an object's key.
            name = clean_text(key) if isinstance(key, str) else next(iter(json.loads(to_json_text({key: 0}))))
            self._names[key] = name
        summary = self._keys.get(name)
        if summary is None:
            summary = self._keys[name] = _Key()
        return summary

    def _fold(self) -> None:
        for key, _kind, value in self._triples:
            self._key(key).value(value)
        self._triples.clear()

    def rows(self, frames_global_id: int) -> list[dict]:
        """The summary's rows, with the numbers' bounds as JSON texts (see ``write``)."""
        with self._lock:
            self._fold()
            rows = []
            for name, key in self._keys.items():
                rows.append({
                    "frames_global_id": frames_global_id,
                    "key": name,
                    "distinct_values": None if key.values is None else "[" + ",".join(key.values.values()) + "]",
                    "overflow": key.values is None,
                    "int_lo": _number_text(key.int_lo), "real_lo": _number_text(key.real_lo),
                    "int_hi": _number_text(key.int_hi), "real_hi": _number_text(key.real_hi),
                    "has_other": key.has_other, "has_object": key.has_object, "has_array": key.has_array,
                })
            return rows


def _number_text(number: int | float | None) -> str | None:
    return None if number is None else to_json_text(number)


# Each database reads the bounds from the JSON texts as it reads the frames' numbers, and takes the lowest
# and the highest of the integers' and reals' (a NULL when the key holds no number of that kind).
_WRITE = {
    "sqlite": (
        "INSERT INTO frames_meta_summary ({columns}) VALUES (:frames_global_id, :key, :distinct_values, :overflow, "
        "min(coalesce(json_extract(:int_lo, '$'), json_extract(:real_lo, '$')), "
        "coalesce(json_extract(:real_lo, '$'), json_extract(:int_lo, '$'))), "
        "max(coalesce(json_extract(:int_hi, '$'), json_extract(:real_hi, '$')), "
        "coalesce(json_extract(:real_hi, '$'), json_extract(:int_hi, '$'))), "
        ":has_other, :has_object, :has_array)"),
    "postgresql": (
        "INSERT INTO frames_meta_summary ({columns}) VALUES (:frames_global_id, :key, "
        "CAST(:distinct_values AS jsonb), :overflow, "
        "LEAST(CAST(:int_lo AS numeric), CAST(:real_lo AS numeric)), "
        "GREATEST(CAST(:int_hi AS numeric), CAST(:real_hi AS numeric)), "
        ":has_other, :has_object, :has_array)"),
}


def write(conn: sa.Connection, rows: Iterable[dict]) -> None:
    """Insert summary rows made by :meth:`SummaryBuilder.rows`, in the caller's transaction."""
    rows = list(rows)
    if rows:
        conn.execute(sa.text(_WRITE[conn.dialect.name].format(columns=_COLUMNS)), rows)

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
