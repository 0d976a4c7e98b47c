"""The tables, as SQLAlchemy Core: data_set, frames_global, frames, frames_meta_summary, file_global.

The upload and download paths use these Core tables only, so that they do not
pay for importing the ORM; :mod:`imaging_db.database.models` maps ORM classes
onto the same tables for notebooks.
"""

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.types import TypeDecorator


class JSONContains(sa.sql.expression.ColumnElement):
    """``column.contains(value)`` on a metadata column: the stored JSON holds ``value``.

    PostgreSQL compiles it to ``@>`` (which a GIN index serves). SQLite
    compiles it to one ``json_extract``/``json_type`` test per leaf of
    ``value``: dicts match key by key at any depth, a list matches when each
    of its scalars is in the stored list, and scalars match by type and value
    (PostgreSQL's rules for ``@>``, which also lets a list hold objects).
    """

    inherit_cache = False  # the SQL differs with the shape of ``value``, so it is not cached by the column alone
    type = sa.Boolean()

    def __init__(self, column: sa.ColumnElement, value):
        self.column = column
        self.value = value


class JSONMetadata(sa.JSON):
    """JSON whose ``contains()`` is JSON containment rather than a substring test."""

    class Comparator(sa.JSON.Comparator):
        def contains(self, other, **kwargs) -> JSONContains:
            return JSONContains(self.expr, other)

    comparator_factory = Comparator


class _JSONB(TypeDecorator):
    """JSONB, with PostgreSQL's dialect imported only when a PostgreSQL engine uses it (it slows every start-up)."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect):
        from sqlalchemy.dialects.postgresql import JSONB

        return dialect.type_descriptor(JSONB())


@compiles(JSONContains, "postgresql")
def _contains_on_postgresql(element: JSONContains, compiler, **kwargs) -> str:
    from sqlalchemy.dialects.postgresql import JSONB

    value = sa.cast(sa.bindparam(None, element.value, type_=JSONB), JSONB)
    return compiler.process(element.column.op("@>", is_comparison=True)(value), **kwargs)


def _json_path(keys: tuple) -> str:
    if any('"' in str(key) for key in keys):
        raise ValueError(f"a metadata key with a double quote cannot be queried on SQLite: {keys!r}")
    return "$" + "".join(f'."{key}"' for key in keys)


def _leaf_tests(column: sa.ColumnElement, keys: tuple, value) -> list[sa.ColumnElement]:
    """SQLite tests that ``column`` at path ``keys`` contains ``value``."""
    path = _json_path(keys)
    if isinstance(value, dict):
        if not value:
            return [sa.func.json_type(column, path) == "object"]
        return [test for key, item in value.items() for test in _leaf_tests(column, keys + (str(key),), item)]
    if isinstance(value, (list, tuple)):
        tests = [sa.func.json_type(column, path) == "array"]
        for item in value:
            if isinstance(item, (dict, list, tuple)):
                raise ValueError("containment of objects or lists inside a list is not supported on SQLite")
            each = sa.func.json_each(column, path).table_valued("value", "type")
            tests.append(sa.exists(sa.select(1).select_from(each).where(*_scalar_tests(each.c.value, each.c.type,
                                                                                        item))))
        return tests
    return _scalar_tests(sa.func.json_extract(column, path), sa.func.json_type(column, path), value)


def _scalar_tests(extracted, json_type, value) -> list[sa.ColumnElement]:
    if value is None:
        return [json_type == "null"]
    if isinstance(value, bool):
        return [json_type == ("true" if value else "false")]
    if isinstance(value, (int, float)):
        return [json_type.in_(["integer", "real"]), extracted == value]
    return [json_type == "text", extracted == str(value)]


@compiles(JSONContains)
def _contains_elsewhere(element: JSONContains, compiler, **kwargs) -> str:
    return compiler.process(sa.and_(*_leaf_tests(element.column, (), element.value)), **kwargs)


# JSONB on PostgreSQL (indexable, and the ORM's ``@>``), JSON text elsewhere.
JSON_METADATA = JSONMetadata().with_variant(_JSONB(), "postgresql")


metadata = sa.MetaData()

data_set = sa.Table(
    "data_set",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dataset_serial", sa.String(64), nullable=False, unique=True),
    sa.Column("description", sa.Text),
    sa.Column("microscope", sa.Text),
    sa.Column("frames", sa.Boolean, nullable=False),
    sa.Column("date_time", sa.DateTime, nullable=False, index=True),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("data_set.id"), index=True),
    # Where the dataset's objects were stored (imaging_db's addition; NULL for datasets uploaded without it):
    # the storage backend, its folder or bucket, and the S3 endpoint when not the default.
    sa.Column("storage", sa.String(32)),
    sa.Column("storage_access", sa.Text),
    sa.Column("s3_endpoint_url", sa.Text),
)


def _global_columns() -> list[sa.Column]:
    """The columns a dataset's frames_global or file_global row starts with: its own id, its data_set, its prefix."""
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("data_set.id"), nullable=False, unique=True),
        sa.Column("storage_dir", sa.Text, nullable=False),
    ]


frames_global = sa.Table(
    "frames_global",
    metadata,
    *_global_columns(),
    sa.Column("nbr_frames", sa.Integer, nullable=False),
    sa.Column("im_width", sa.Integer, nullable=False),
    sa.Column("im_height", sa.Integer, nullable=False),
    sa.Column("im_colors", sa.Integer, nullable=False),
    sa.Column("bit_depth", sa.String(16), nullable=False),
    sa.Column("nbr_slices", sa.Integer, nullable=False),
    sa.Column("nbr_channels", sa.Integer, nullable=False),
    sa.Column("nbr_timepoints", sa.Integer, nullable=False),
    sa.Column("nbr_positions", sa.Integer, nullable=False),
    sa.Column("metadata_json", JSON_METADATA),
)
# Serves metadata containment (``@>``) over datasets on PostgreSQL. frames has none: measured on 100,000
# Micro-Manager frame rows, a GIN index there doubled the insert (7.5 s -> 14.5 s) for a query 20% faster.
# Made by DDL rather than sa.Index(postgresql_using=...), which would import the PostgreSQL dialect at every
# start-up; alembic's comparison leaves it out (see migrate.object_filter), and a test checks it exists.
FRAMES_GLOBAL_GIN = "ix_frames_global_metadata_json"
sa.event.listen(frames_global, "after_create", sa.DDL(
    f"CREATE INDEX {FRAMES_GLOBAL_GIN} ON frames_global USING gin (metadata_json)").execute_if(dialect="postgresql"))
POSTGRESQL_ONLY_INDEXES = frozenset({FRAMES_GLOBAL_GIN})


frames = sa.Table(
    "frames",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("frames_global_id", sa.Integer, sa.ForeignKey("frames_global.id"), nullable=False),
    sa.Column("channel_idx", sa.Integer, nullable=False),
    sa.Column("slice_idx", sa.Integer, nullable=False),
    sa.Column("time_idx", sa.Integer, nullable=False),
    sa.Column("pos_idx", sa.Integer, nullable=False),
    sa.Column("channel_name", sa.Text),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("metadata_json", JSON_METADATA),
    # The stored PNG's sha256; NULL only in rows the original imagingDB wrote before it kept checksums.
    sa.Column("sha256", sa.String(64)),
    # Serves every c/z/t/p filter of a dataset and forbids duplicate frames.
    sa.Index("ix_frames_global_ctzp", "frames_global_id", "channel_idx", "slice_idx", "time_idx", "pos_idx",
             unique=True),
    sa.Index("ix_frames_global_channel_name", "frames_global_id", "channel_name"),
)

# One row per frames dataset and top-level key of its frames' metadata: what the frames hold there, so that a
# search tests one row per dataset rather than every frame (imaging_db's addition; filled when the dataset is
# registered, see imaging_db.database.frames_summary). The values are the distinct numbers, texts, true,
# false and null found at the key or as elements of a list there: all of them, or none when there are more
# than frames_summary.MAX_LISTED (overflow); the range of the numbers among them is kept in either case.
frames_meta_summary = sa.Table(
    "frames_meta_summary",
    metadata,
    sa.Column("frames_global_id", sa.Integer, sa.ForeignKey("frames_global.id"), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("distinct_values", JSON_METADATA),  # a JSON list; NULL when overflow
    sa.Column("overflow", sa.Boolean, nullable=False),
    # NUMERIC: exact on PostgreSQL; on SQLite it keeps integers and reals as the JSON functions read them.
    # (Read and written with SQL only: SQLAlchemy's Numeric would turn SQLite values into floats.)
    sa.Column("min_number", sa.Numeric),
    sa.Column("max_number", sa.Numeric),
    sa.Column("has_other", sa.Boolean, nullable=False),  # a text, true, false or null among the values
    sa.Column("has_object", sa.Boolean, nullable=False),  # some frame holds an object at the key
    sa.Column("has_array", sa.Boolean, nullable=False),  # some frame holds a list at the key
)

file_global = sa.Table(
    "file_global",
    metadata,
    *_global_columns(),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("metadata_json", JSON_METADATA),
    sa.Column("sha256", sa.String(64)),  # NULL only in rows of the original imagingDB from before checksums
)

# Settings of the database itself, by name (e.g. the storage of datasets that record none).
imaging_db_settings = sa.Table(
    "imaging_db_settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text),
)
