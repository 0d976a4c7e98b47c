"""Finding datasets: by project, microscope, date, description, parent, and global or frame metadata.

:func:`find_datasets` runs one query for the datasets and one for the
channel names of all of them, with SQLAlchemy Core, on SQLite and PostgreSQL
alike. Metadata filters (:class:`MetaFilter`) test the dataset's global
metadata (``frames_global`` or ``file_global``) or, failing that, each of its
frames' metadata; a dataset matches when one of them does.

Frames are tested through their summary (:mod:`imaging_db.database.frames_summary`:
one row per dataset and top-level key), not one by one: ``KEY>N`` and ``KEY<N``
compare the range of the numbers there, ``KEY=VALUE`` tests the listed
distinct values. The frames themselves are read only where the summary cannot
answer, and only of the datasets where they can match: a key with too many
distinct values to list (and, for a number, within its range), a dotted path
below a key holding an object, or a dict or list to be contained.

How a filter becomes SQL depends on the database, with the same results:

- PostgreSQL: one jsonpath test, ``metadata_json @? 'strict $."key" ? (...)'``,
  per filter and document (a GIN index on the column serves it). One test
  rather than several ``@>``: each operator detoasts the stored JSONB again,
  and on 100,000 Micro-Manager frame rows four ORed ``@>`` took 1.0 s where
  one jsonpath took 0.34 s. A dict or list value is a ``@>`` containment.
- SQLite: ``json_type``/``json_extract`` on the path, ``json_each`` for the
  elements of a list (JSON1).
"""

import dataclasses
import datetime
import decimal
import json
import logging
import re
import time
from typing import Any, Iterable, Mapping

import sqlalchemy as sa

from imaging_db.database import schema
from imaging_db.errors import DatabaseError, InputError

logger = logging.getLogger(__name__)

_data_set = schema.data_set
_frames_global = schema.frames_global
_frames = schema.frames
_file_global = schema.file_global
_meta_summary = schema.frames_meta_summary

OPERATORS = ("=", ">", "<")
# A number as a filter may give it (JSON's syntax, plus a leading + and a bare leading or trailing point).
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_PROJECT = re.compile(r"[A-Za-z]+", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
# Beyond a double's range SQLite and PostgreSQL would compare differently (SQLite's numbers are doubles).
_MAX_EXPONENT = 300
# Up to this many result datasets, their channels are read by id; beyond, all channels are read in the one
# query (bound parameters are limited, and by then most datasets are in the result anyway).
_MAX_IDS_IN_QUERY = 5000
_NUMERIC_TYPES = ("integer", "real")  # SQLite json_type() of a number


@dataclasses.dataclass(frozen=True)
class MetaFilter:
    """One test on a dataset's metadata: the value at ``path`` compared with ``value`` by ``op``.

    Attributes
    ----------
    path : tuple of str
        The keys from the top of the metadata down, e.g. ``("Summary", "ChNames")``.
    op : str
        ``"="``, ``">"`` or ``"<"``.
    value
        For ``"="``: a scalar (str, int, float, bool or None), or a dict or list,
        which the stored value must contain (JSON containment, as PostgreSQL's
        ``@>``). A scalar equals a stored number when it is, or is text that
        parses as, the same number; a stored string when its text is the same;
        a stored true, false or null when it is, or is the text, ``true``,
        ``false`` or ``null``; and a stored list when it equals one of its
        elements. For ``">"`` and ``"<"``: a number, compared with stored
        numbers (or the numbers of a stored list) only.

    Raises
    ------
    InputError
        On an empty path or key, a key holding a double quote (SQLite cannot
        look such keys up), an unknown operator, a ``>``/``<`` value that is
        not a number, or a list in a value that holds lists or dicts.
    """

    path: tuple[str, ...]
    op: str
    value: Any

    def __post_init__(self):
        path = tuple(self.path) if isinstance(self.path, (list, tuple)) else self.path
        object.__setattr__(self, "path", path)
        if not isinstance(path, tuple) or not path or not all(isinstance(key, str) for key in path):
            raise InputError(f"metadata filter {self}: the key path must be one or more keys (text)")
        _check_keys(self, path)
        if self.op not in OPERATORS:
            raise InputError(f"metadata filter {self}: unknown operator {self.op!r}; use one of {' '.join(OPERATORS)}")
        if self.op == "=":
            _check_value(self, self.value)
        elif _number(self.value) is None:
            raise InputError(f"metadata filter {self}: {self.op} needs a number, not {self.value!r}")

    def __str__(self) -> str:
        path = ".".join(map(str, self.path)) if isinstance(self.path, tuple) else repr(self.path)
        value = self.value if isinstance(self.value, str) else json.dumps(self.value, default=str)
        return f"'{path}{self.op}{value}'"

    def text(self) -> str:
        """The filter as ``query_data --meta`` takes it, e.g. ``Exposure-ms>50``."""
        return str(self)[1:-1]


def _check_keys(meta_filter: MetaFilter, keys: Iterable[str]) -> None:
    for key in keys:
        if not key.strip():
            raise InputError(f"metadata filter {meta_filter}: empty key; keys are separated by single dots")
        if '"' in key:
            raise InputError(f"metadata filter {meta_filter}: key {key!r} holds a double quote, which cannot be "
                             "searched")


def _check_value(meta_filter: MetaFilter, value, in_list: bool = False) -> None:
    if in_list and isinstance(value, (Mapping, list, tuple)):
        # SQLite's json_each cannot compare them; PostgreSQL could, and both must answer alike.
        raise InputError(f"metadata filter {meta_filter}: a list in a filter may only hold numbers, text, "
                         "true, false or null")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(f"metadata filter {meta_filter}: key {key!r} is not text")
            _check_keys(meta_filter, [key])
            _check_value(meta_filter, item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_value(meta_filter, item, in_list=True)
    elif isinstance(value, (float, decimal.Decimal)) and not isinstance(value, bool):
        if _number(value) is None:
            raise InputError(f"metadata filter {meta_filter}: {value!r} is not a number that can be searched")
    elif not (value is None or isinstance(value, (str, int))):
        raise InputError(f"metadata filter {meta_filter}: cannot search for a {type(value).__name__}")


def _number(value) -> decimal.Decimal | None:
    """``value`` as an exact number if it is one (or text that parses as one), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            return None
        number = decimal.Decimal(text)
    elif isinstance(value, int):
        number = decimal.Decimal(value)
    elif isinstance(value, float):
        number = decimal.Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
    elif isinstance(value, decimal.Decimal):
        number = value if value.is_finite() else None
    else:
        return None
    if number is None or (number and abs(number.adjusted()) > _MAX_EXPONENT):
        return None
    return number


def parse_meta_filter(text: str) -> MetaFilter:
    """Read a ``--meta`` filter: ``KEY=VALUE``, ``KEY>N`` or ``KEY<N``.

    KEY is one key or dotted keys into nested objects (``Summary.ChNames``);
    keys may hold any character but ``"``, ``=``, ``>``, ``<`` and ``.``
    (``Exposure-ms`` is one key). VALUE is text, compared as explained in
    :class:`MetaFilter`; N is a number. Spaces around KEY and VALUE are ignored.

    Raises
    ------
    InputError
        One line naming the filter and what is wrong with it.
    """
    if not isinstance(text, str):
        raise InputError(f"metadata filter {text!r} is not text: give KEY=VALUE, KEY>N or KEY<N")
    found = re.search(r"[=<>]", text)
    if found is None:
        raise InputError(f"metadata filter {text!r} has no operator: give KEY=VALUE, KEY>N or KEY<N")
    key, op, value = text[:found.start()].strip(), found.group(), text[found.end():].strip()
    if not key:
        raise InputError(f"metadata filter {text!r} has no key before {op!r}: give KEY=VALUE, KEY>N or KEY<N")
    if op in "<>" and value.startswith("="):
        strictly = "greater" if op == ">" else "less"
        raise InputError(f"metadata filter {text!r}: {op}= is not supported; use {op} (strictly {strictly} than)")
    if not value:
        raise InputError(f"metadata filter {text!r} has no value after {op!r}")
    if op != "=" and _number(value) is None:
        raise InputError(f"metadata filter {text!r}: {value!r} is not a number ({op} compares numbers)")
    path = tuple(part.strip() for part in key.split("."))
    if op != "=":
        value = int(value) if value.lstrip("+-").isdigit() else float(value)
    return MetaFilter(path, op, value)


def meta_filters(meta) -> list[MetaFilter]:
    """Turn what the Python API accepts as ``meta`` into filters (all of which must match).

    Parameters
    ----------
    meta : None, dict, str, MetaFilter, or a list of str or MetaFilter
        A dict maps keys, or dotted key paths, to the value they must equal
        (``{"protein_name": "TOPOR", "Summary.Slices": 3}``); a dict or list
        as a value must be contained in the stored value
        (``{"Summary": {"ChNames": ["GFP"]}}``). Strings are ``--meta``
        filters (``"Exposure-ms>50"``).

    Raises
    ------
    InputError
        On a malformed filter, or a ``meta`` of another type.
    """
    if meta is None:
        return []
    if isinstance(meta, (str, MetaFilter)):
        meta = [meta]
    if isinstance(meta, Mapping):
        filters = []
        for key, value in meta.items():
            if not isinstance(key, str):
                raise InputError(f"metadata filter key {key!r} is not text")
            filters.append(MetaFilter(tuple(part.strip() for part in key.split(".")), "=", value))
        return filters
    if isinstance(meta, (list, tuple)):
        return [item if isinstance(item, MetaFilter) else parse_meta_filter(item) for item in meta]
    raise InputError(f"meta must be a dict, a filter string or a list of filter strings, not {type(meta).__name__}")


@dataclasses.dataclass(frozen=True)
class DatasetSummary:
    """A dataset as a search lists it.

    ``nbr_frames``, ``channels`` (the channel names, by channel index) and the
    frames_global counts are None for a file dataset.
    """

    dataset_id: str
    date_time: datetime.datetime
    microscope: str | None
    description: str | None
    frames: bool
    nbr_frames: int | None
    channels: tuple[str | None, ...] | None
    parent_dataset_id: str | None
    im_width: int | None = None
    im_height: int | None = None
    im_colors: int | None = None
    bit_depth: str | None = None
    nbr_slices: int | None = None
    nbr_channels: int | None = None
    nbr_timepoints: int | None = None
    nbr_positions: int | None = None


FIELDS = tuple(field.name for field in dataclasses.fields(DatasetSummary))
_LAYOUT = FIELDS[FIELDS.index("im_width"):]


# --------------------------------------------------------------------------- the search
@dataclasses.dataclass(frozen=True)
class DatasetFilters:
    """A validated search: what :func:`find_datasets` takes, made by :meth:`make` before the database is opened.

    ``start`` and ``stop`` are the instants ``start <= date_time < stop``
    (see :func:`date_range`); ``microscope`` and ``description`` are case-folded.
    """

    project_id: str | None = None
    microscope: str | None = None
    description: str | None = None
    start: datetime.datetime | None = None
    stop: datetime.datetime | None = None
    parent: str | None = None
    meta: tuple[MetaFilter, ...] = ()

    @classmethod
    def make(cls, *, project_id: str | None = None, microscope: str | None = None,
             start_date: str | datetime.date | None = None, end_date: str | datetime.date | None = None,
             description: str | None = None, parent: str | None = None, meta=None) -> "DatasetFilters":
        """Check the filters of :func:`find_datasets` (same parameters).

        Raises
        ------
        InputError
            On a bad project id, date, date range (end before start), parent id or metadata filter.
        """
        start, stop = date_range(start_date, end_date)
        return cls(project_id=_project(project_id), microscope=_needle("microscope", microscope),
                   description=_needle("description", description), start=start, stop=stop,
                   parent=_parent_id(parent), meta=tuple(meta_filters(meta)))


def find_datasets(database, *, project_id: str | None = None, microscope: str | None = None,
                  start_date: str | datetime.date | None = None, end_date: str | datetime.date | None = None,
                  description: str | None = None, parent: str | None = None, meta=None) -> list[DatasetSummary]:
    """Return the datasets that match every given filter, ordered by date-time, then registration.

    Parameters
    ----------
    database : imaging_db.database.db_ops.Database
    project_id : str, optional
        The project: the part of the dataset id before the first ``-`` (exactly, e.g. ``ML``).
    microscope, description : str, optional
        Text the column contains, in any case (compared case-folded, so ``zeiss`` finds ``ZEISS``).
    start_date, end_date : str ``YYYY-MM-DD`` or datetime.date, optional
        The first and last day, both included. A datetime.datetime is taken as an exact instant.
    parent : str, optional
        A dataset id: only its children (datasets whose parent it is).
    meta : see :func:`meta_filters`
        Metadata filters, all of which must match.

    Returns
    -------
    list of DatasetSummary
        Empty if the database holds no imaging_db tables yet.

    Raises
    ------
    InputError
        On a bad project id, date, date range (end before start), metadata
        filter, or a parent that is not in the database.
    DatabaseError
        If the database cannot be read.
    """
    return search(database, DatasetFilters.make(
        project_id=project_id, microscope=microscope, start_date=start_date, end_date=end_date,
        description=description, parent=parent, meta=meta))


def search(database, filters: DatasetFilters) -> list[DatasetSummary]:
    """Return the datasets matching ``filters`` (see :func:`find_datasets`).

    Raises
    ------
    InputError
        If the parent is not in the database.
    DatabaseError
        If the database cannot be read.
    """
    started = time.perf_counter()
    try:
        with database.errors("searching datasets"), database.engine.connect() as conn:
            if filters.meta and conn.dialect.name == "postgresql":
                _scan_frames_in_parallel(conn)
            parent_row = None
            if filters.parent is not None:
                parent_row = conn.execute(
                    sa.select(_data_set.c.id).where(_data_set.c.dataset_serial == filters.parent)).scalar()
                if parent_row is None:
                    raise InputError(f"parent dataset {filters.parent} is not in the database {database.describe()}")
            rows = [row for row in conn.execute(_datasets_query(conn.dialect.name, filters, parent_row)).mappings()
                    if _contains(row["microscope"], filters.microscope)
                    and _contains(row["description"], filters.description)]
            channels = _channel_names(conn, [row["frames_global_id"] for row in rows
                                             if row["frames_global_id"] is not None])
    except DatabaseError as failure:
        # A database without the tables yet (nothing uploaded) has no datasets; one that cannot even be
        # inspected reports the search's own error.
        try:
            has_tables = database.has_tables()
        except DatabaseError:
            raise failure from failure.__cause__
        if has_tables:
            raise
        if filters.parent is not None:
            raise InputError(f"parent dataset {filters.parent} is not in the database {database.describe()}: "
                             "it holds no datasets yet") from None
        logger.debug("database %s holds no imaging_db tables: no datasets", database.describe())
        return []
    found = [_summary(row, channels.get(row["frames_global_id"])) for row in rows]
    logger.debug("%d datasets found in %.3f s", len(found), time.perf_counter() - started)
    return found


def _scan_frames_in_parallel(conn: sa.Connection) -> None:
    """Let PostgreSQL read the frames with parallel workers for this search's transaction.

    Its planner prices a jsonpath test like a cheap operator, so it finds a
    parallel scan of the frames not worth its start-up cost; decoding each
    frame's JSONB is in fact most of the time. Measured on 100,000
    Micro-Manager frame rows (2 cores): a frame metadata filter took 0.27 s
    instead of 0.52 s. ``set_config(..., true)`` lasts until the transaction ends.
    """
    conn.execute(sa.text("SELECT set_config('parallel_setup_cost', '10', true), "
                         "set_config('parallel_tuple_cost', '0.001', true)"))


def _summary(row: Mapping, channels: list | None) -> DatasetSummary:
    frames_dataset = row["frames_global_id"] is not None
    return DatasetSummary(
        dataset_id=row["dataset_serial"],
        date_time=row["date_time"],
        microscope=row["microscope"],
        description=row["description"],
        frames=bool(row["frames"]),
        nbr_frames=row["nbr_frames"],
        channels=tuple(channels or ()) if frames_dataset else None,
        parent_dataset_id=row["parent_serial"],
        **{name: row[name] for name in _LAYOUT},
    )


def _project(project_id: str | None) -> str | None:
    if project_id is None:
        return None
    if not isinstance(project_id, str) or not _PROJECT.fullmatch(project_id.strip()):
        raise InputError(f"project_id {project_id!r} is not a project id: letters only, the part of a dataset id "
                         "before its first '-' (e.g. ML)")
    return project_id.strip()


def _parent_id(parent: str | None) -> str | None:
    if parent is None:
        return None
    from imaging_db.metadata.dataset_id import parse_dataset_id

    try:
        return parse_dataset_id(parent).serial
    except InputError as exc:
        raise InputError(f"parent: {exc}") from None


def _needle(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, not {type(value).__name__}")
    return value.casefold()


def _contains(text: str | None, needle: str | None) -> bool:
    """Whether ``text`` holds ``needle`` (already case-folded), in any case; no needle: always.

    Done here rather than in SQL: SQLite's lower() and LIKE fold ASCII letters
    only, PostgreSQL's by its locale; Python's casefold() is the same everywhere.
    """
    return needle is None or (text is not None and needle in text.casefold())


def date_range(start_date, end_date) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """The instants a date range spans: from ``start_date``'s first moment to the end of ``end_date``.

    Returns ``(start, stop)``: the range is ``start <= date_time < stop``,
    where ``stop`` is the day after ``end_date`` (or, for a datetime, one
    microsecond after it, the columns' resolution); None for a bound not given.

    Raises
    ------
    InputError
        If a date is not ``YYYY-MM-DD`` or does not exist, or the end is before the start.
    """
    start = _instant("start_date", start_date)
    end = _instant("end_date", end_date)
    if start is not None and end is not None and end < start:
        raise InputError(f"end_date {_show(end_date)} is before start_date {_show(start_date)}")
    if end is not None:
        exact = isinstance(end_date, datetime.datetime)
        step = datetime.timedelta(microseconds=1) if exact else datetime.timedelta(days=1)
        end = end + step if end <= datetime.datetime.max - step else None
    return start, end


def _show(value) -> str:
    return value.isoformat() if isinstance(value, datetime.date) else str(value)


def _instant(name: str, value) -> datetime.datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone().replace(tzinfo=None)
    if isinstance(value, datetime.date):
        return datetime.datetime.combine(value, datetime.time())
    if not isinstance(value, str):
        raise InputError(f"{name} must be a date YYYY-MM-DD, not {type(value).__name__}")
    text = value.strip()
    if not _DATE.fullmatch(text):
        raise InputError(f"{name} {value!r} is not a date: expected YYYY-MM-DD, e.g. 2018-11-01")
    try:
        return datetime.datetime.combine(datetime.date.fromisoformat(text), datetime.time())
    except ValueError as exc:
        raise InputError(f"{name} {value!r} is not a valid date ({exc})") from None


def _datasets_query(dialect: str, filters: DatasetFilters, parent_row: int | None) -> sa.Select:
    """The datasets matching ``filters`` but microscope and description, with the columns a summary shows."""
    d, fg, fi = _data_set.c, _frames_global.c, _file_global.c
    parent = _data_set.alias("parent")
    query = (
        sa.select(d.id, d.dataset_serial, d.date_time, d.microscope, d.description, d.frames,
                  parent.c.dataset_serial.label("parent_serial"), fg.id.label("frames_global_id"), fg.nbr_frames,
                  *(getattr(fg, name) for name in _LAYOUT))
        .select_from(
            _data_set.outerjoin(parent, d.parent_id == parent.c.id)
            .outerjoin(_frames_global, fg.dataset_id == d.id)
            .outerjoin(_file_global, fi.dataset_id == d.id)
        )
        .order_by(d.date_time, d.id)
    )
    if filters.project_id is not None:
        # substr, not LIKE: SQLite's LIKE ignores case, and 'ML' is not the project 'ml'.
        prefix = filters.project_id + "-"
        query = query.where(sa.func.substr(d.dataset_serial, 1, len(prefix)) == prefix)
    if filters.start is not None:
        query = query.where(d.date_time >= filters.start)
    if filters.stop is not None:
        query = query.where(d.date_time < filters.stop)
    if parent_row is not None:
        query = query.where(d.parent_id == parent_row)
    # Metadata filters last: the cheap tests above narrow the datasets whose frames they read.
    for meta_filter in filters.meta:
        query = query.where(sa.or_(
            _matches(dialect, fg.metadata_json, meta_filter),
            _matches(dialect, fi.metadata_json, meta_filter),
            _frames_match(dialect, fg.id, meta_filter),
        ))
    return query


def _frames_match(dialect: str, frames_global_id: sa.ColumnElement, meta_filter: MetaFilter) -> sa.ColumnElement:
    """SQL that is true when a frame of the dataset ``frames_global_id`` matches ``meta_filter``.

    Asked of the dataset's summary row for the filter's first key (none: no
    frame holds the key). The frames are read only where that row cannot
    answer and they can match, dataset by dataset: measured on 1,000 datasets,
    PostgreSQL planned one scan of all frames when the test stood apart
    (0.31 s for a number in the range of a quarter of the datasets, against
    0.08 s so).
    """
    summary = _meta_summary.alias("summary")
    s = summary.c
    frame = _frames.alias("frame")
    # Correlated with the summary row: SQLAlchemy correlates with the enclosing query only.
    scan = sa.exists().where(frame.c.frames_global_id == s.frames_global_id,
                             _matches(dialect, frame.c.metadata_json, meta_filter))
    value = meta_filter.value
    if len(meta_filter.path) > 1 or isinstance(value, Mapping):
        test = sa.and_(s.has_object, scan)  # a path below the key, or a dict to contain: an object there
    elif isinstance(value, (list, tuple)):
        test = sa.and_(s.has_array, scan)  # a list to contain
    elif meta_filter.op != "=":
        bound = _summary_number(dialect, _number(value))
        test = s.max_number > bound if meta_filter.op == ">" else s.min_number < bound
    else:
        number, text, literal = _equal_candidates(value)
        may_hold = []  # where a value the summary does not list may equal this one
        if number is not None:
            bound = _summary_number(dialect, number)
            may_hold.append(sa.and_(s.min_number <= bound, s.max_number >= bound))
        if text is not None or literal is not None:
            may_hold.append(s.has_other)
        test = sa.or_(sa.and_(sa.not_(s.overflow), _listed(dialect, s.distinct_values, value)),
                      sa.and_(s.overflow, sa.or_(*may_hold), scan))
    return sa.exists().where(s.frames_global_id == frames_global_id, s.key == meta_filter.path[0], test)


def _summary_number(dialect: str, number: decimal.Decimal) -> sa.ColumnElement:
    """A number to compare with the summary's min_number/max_number as the frames' JSON numbers are compared."""
    if dialect == "postgresql":
        return sa.literal(number, sa.Numeric())  # numeric, exact (a float would make PostgreSQL compare doubles)
    return sa.literal(_sqlite_number(number))  # an int or float, as json_extract's values are


def _listed(dialect: str, values: sa.ColumnElement, value) -> sa.ColumnElement:
    """SQL that is true when the JSON list ``values`` holds a scalar that equals ``value`` by the rules of ``=``."""
    if dialect == "postgresql":
        test = " || ".join(f"@ == {literal}" for literal in _jsonpath_literals(value))
        return values.op("@?", is_comparison=True)(
            sa.cast(sa.literal(f"strict $[*] ? ({test})", sa.String), _PostgresType("jsonpath")))
    element = sa.func.json_each(values).table_valued("value", "type").alias("element")
    return sa.exists().select_from(element).where(
        sa.case(_sqlite_cases("=", value, element.c.value), value=element.c.type, else_=sa.false()))


def _channel_names(conn: sa.Connection, frames_global_ids: list[int]) -> dict[int, list]:
    """The channel names of each frames dataset, by channel index, in one query.

    The distinct (dataset, channel index) pairs come from the frames index
    alone; only one frame per channel is then read for its name.
    """
    if not frames_global_ids:
        return {}
    f = _frames.c
    pairs = sa.select(f.frames_global_id, f.channel_idx).distinct()
    if len(frames_global_ids) <= _MAX_IDS_IN_QUERY:
        pairs = pairs.where(f.frames_global_id.in_(frames_global_ids))
    pairs = pairs.subquery("pairs")
    one = _frames.alias("one")
    name = (
        sa.select(one.c.channel_name)
        .where(one.c.frames_global_id == pairs.c.frames_global_id, one.c.channel_idx == pairs.c.channel_idx)
        .limit(1)
        .scalar_subquery()
    )
    query = sa.select(pairs.c.frames_global_id, pairs.c.channel_idx, name).order_by(
        pairs.c.frames_global_id, pairs.c.channel_idx)
    channels: dict[int, list] = {}
    for frames_global_id, _channel_idx, channel_name in conn.execute(query):
        names = channels.setdefault(frames_global_id, [])
        if channel_name not in names:
            names.append(channel_name)
    return channels


# --------------------------------------------------------------------------- metadata tests in SQL
def _matches(dialect: str, column: sa.ColumnElement, meta_filter: MetaFilter) -> sa.ColumnElement:
    """SQL that is true when the JSON in ``column`` matches ``meta_filter`` (false or NULL otherwise)."""
    if dialect == "postgresql":
        return _postgresql_match(column, meta_filter)
    # SQLite (before 3.45) compares a path's keys with the keys' text as stored: Python's json, and so
    # imaging_db, writes non-ASCII keys as \u escapes, other writers as they are. One writer writes a
    # whole document, so the two spellings of the whole path are tried.
    match = _sqlite_match(column, meta_filter, ascii_keys=True)
    if all(key.isascii() for key in _keys(meta_filter.path, meta_filter.value)):
        return match
    return sa.or_(match, _sqlite_match(column, meta_filter, ascii_keys=False))


def _keys(path: tuple[str, ...], value) -> Iterable[str]:
    """The keys a filter names: its path's and those of a dict it must contain."""
    yield from path
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _keys((key,), item)


class _PostgresType(sa.types.UserDefinedType):
    """A PostgreSQL type named in casts (the dialect module is not imported for it)."""

    cache_ok = True

    def __init__(self, name: str):
        self.name = name

    def get_col_spec(self, **kwargs) -> str:
        return self.name


def _postgresql_match(column: sa.ColumnElement, meta_filter: MetaFilter) -> sa.ColumnElement:
    value = meta_filter.value
    if meta_filter.op == "=" and isinstance(value, (Mapping, list, tuple)):
        document: Any = _plain(value)
        for key in reversed(meta_filter.path):
            document = {key: document}
        containment = sa.cast(sa.literal(json.dumps(document), sa.String), _PostgresType("jsonb"))
        return column.op("@>", is_comparison=True)(containment)
    if meta_filter.op == "=":
        test = " || ".join(f"@ == {literal}" for literal in _jsonpath_literals(value))
    else:
        test = f"@ {meta_filter.op} {_number(value):f}"
    # strict: a key path does not step into lists (as SQLite's paths); a list's elements are tested one by one.
    path = "strict $" + "".join(f".{json.dumps(key, ensure_ascii=False)}" for key in meta_filter.path)
    jsonpath = f"{path} ? ({test} || exists (@[*] ? ({test})))"
    return column.op("@?", is_comparison=True)(sa.cast(sa.literal(jsonpath, sa.String), _PostgresType("jsonpath")))


def _plain(value):
    """A filter value as JSON data (tuples as lists, Decimals as numbers)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _equal_candidates(value) -> tuple[decimal.Decimal | None, str | None, str | None]:
    """What a scalar ``=`` value equals: a number, a text, and a JSON literal (true, false, null)."""
    if value is None:
        return None, "null", "null"
    if isinstance(value, bool):
        return None, json.dumps(value), json.dumps(value)
    if isinstance(value, str):
        literal = value.strip() if value.strip() in ("true", "false", "null") else None
        return _number(value), value, literal
    number = _number(value)
    return number, (json.dumps(_plain(value)) if number is not None else str(value)), None


def _jsonpath_literals(value) -> list[str]:
    number, text, literal = _equal_candidates(value)
    literals = []
    if number is not None:
        literals.append(f"{number:f}")
    if text is not None:
        literals.append(json.dumps(text, ensure_ascii=False))
    if literal is not None:
        literals.append(literal)
    return literals


def _sqlite_path(keys: Iterable[str], ascii_keys: bool) -> str:
    # The label is the key as a JSON writer escapes it; '"' is refused by MetaFilter.
    return "$" + "".join(f".{json.dumps(key, ensure_ascii=ascii_keys)}" for key in keys)


def _sqlite_match(column: sa.ColumnElement, meta_filter: MetaFilter, ascii_keys: bool) -> sa.ColumnElement:
    value = meta_filter.value
    if meta_filter.op == "=" and isinstance(value, (Mapping, list, tuple)):
        return sa.and_(*_sqlite_contains(column, tuple(meta_filter.path), value, ascii_keys))
    path = _sqlite_path(meta_filter.path, ascii_keys)
    # One CASE on json_type: a frame without the key (the usual case) costs one lookup, not one per test.
    # json_extract then reads the document SQLite has just parsed for json_type (its parse cache).
    element = sa.func.json_each(column, path).table_valued("value", "type").alias("element")
    cases = _sqlite_cases(meta_filter.op, value, sa.func.json_extract(column, path))
    cases["array"] = sa.exists().select_from(element).where(
        sa.case(_sqlite_cases(meta_filter.op, value, element.c.value), value=element.c.type, else_=sa.false()))
    return sa.case(cases, value=sa.func.json_type(column, path), else_=sa.false())


def _sqlite_cases(op: str, value, extracted) -> dict[str, sa.ColumnElement]:
    """``{json_type: test}``: how a stored scalar of each JSON type that can match ``op value`` is tested."""
    if op != "=":
        number = _sqlite_number(_number(value))
        test = extracted > number if op == ">" else extracted < number
        return {kind: test for kind in _NUMERIC_TYPES}
    number, text, literal = _equal_candidates(value)
    cases = {}
    if number is not None:
        cases.update({kind: extracted == _sqlite_number(number) for kind in _NUMERIC_TYPES})
    if text is not None:
        cases["text"] = extracted == text
    if literal is not None:
        cases[literal] = sa.true()
    return cases


def _sqlite_number(number: decimal.Decimal) -> int | float:
    if number == number.to_integral_value() and abs(number) < 2**63:
        return int(number)
    return float(number)


def _sqlite_contains(column: sa.ColumnElement, keys: tuple, value, ascii_keys: bool) -> list[sa.ColumnElement]:
    """SQLite tests that the JSON in ``column`` at ``keys`` contains ``value``, by PostgreSQL's ``@>`` rules.

    Objects match key by key at any depth, a list when each of its elements
    is in the stored list, and scalars by type and value.
    """
    path = _sqlite_path(keys, ascii_keys)
    json_type = sa.func.json_type(column, path)
    if isinstance(value, Mapping):
        if not value:
            return [json_type == "object"]
        return [test for key, item in value.items() for test in _sqlite_contains(column, keys + (key,), item,
                                                                                   ascii_keys)]
    if isinstance(value, (list, tuple)):
        tests = [json_type == "array"]
        for item in value:
            each = sa.func.json_each(column, path).table_valued("value", "type").alias("element")
            tests.append(sa.exists().select_from(each).where(*_sqlite_typed(each.c.value, each.c.type, item)))
        return tests
    return _sqlite_typed(sa.func.json_extract(column, path), json_type, value)


def _sqlite_typed(extracted, json_type, value) -> list[sa.ColumnElement]:
    """SQLite tests that a stored scalar is ``value``, type included (as inside PostgreSQL's ``@>``)."""
    if value is None:
        return [json_type == "null"]
    if isinstance(value, bool):
        return [json_type == ("true" if value else "false")]
    if isinstance(value, (int, float, decimal.Decimal)):
        return [json_type.in_(_NUMERIC_TYPES), extracted == _sqlite_number(_number(value))]
    return [json_type == "text", extracted == value]
