"""Adopt a database made by the original imagingDB (its last schema, alembic revision 8e0d2514fd1f) in place.

The original's tables have our tables' names and columns, without constraints:
every column may be NULL, nothing is unique, nothing is indexed. Adopting adds
what imaging_db relies on (NOT NULL, unique ids and frames, indexes, column
types) and stamps the database at revision 0002, from which the migrations
continue. No row is changed, added or removed. Where a row breaks a rule
(a duplicate, a NULL where a value is needed, an orphan), nothing at all is
changed: every such row is reported, for a person to decide.

The original ran on PostgreSQL only (its metadata columns are JSONB).
"""

from dataclasses import dataclass

import sqlalchemy as sa

# The original imagingDB's last alembic revision, and those before it.
ORIGINAL = "8e0d2514fd1f"
ORIGINAL_OLDER = ("818bfb535590", "7a7422f19234", "bae28d7da970")
# The revision whose schema adopting gives.
ADOPTED_AT = "0002"

# Per table: the columns that must hold a value.
_REQUIRED = {
    "data_set": ("dataset_serial", "frames", "date_time"),
    "frames_global": ("dataset_id", "storage_dir", "nbr_frames", "im_width", "im_height", "im_colors", "bit_depth",
                      "nbr_slices", "nbr_channels", "nbr_timepoints", "nbr_positions"),
    "frames": ("frames_global_id", "channel_idx", "slice_idx", "time_idx", "pos_idx", "file_name"),
    "file_global": ("dataset_id", "storage_dir", "file_name"),
}
# Per table: every column of the original at 8e0d2514fd1f.
_COLUMNS = {
    "data_set": ("id", "dataset_serial", "description", "microscope", "frames", "date_time", "parent_id"),
    "frames_global": ("id", *_REQUIRED["frames_global"], "metadata_json"),
    "frames": ("id", *_REQUIRED["frames"], "channel_name", "sha256", "metadata_json"),
    "file_global": ("id", "dataset_id", "storage_dir", "file_name", "metadata_json", "sha256"),
}
# Columns given a maximum length: (table, column, length).
_LENGTHS = (("data_set", "dataset_serial", 64), ("frames_global", "bit_depth", 16), ("frames", "sha256", 64),
            ("file_global", "sha256", 64))
# Values that must be unique: (table, columns, what they mean).
_UNIQUE = (
    ("data_set", ("dataset_serial",), "dataset_serial"),
    ("frames_global", ("dataset_id",), "frames_global rows of one dataset"),
    ("file_global", ("dataset_id",), "file_global rows of one dataset"),
    ("frames", ("frames_global_id", "channel_idx", "slice_idx", "time_idx", "pos_idx"), "frames at one c/z/t/p"),
)
# References: (table, column, referenced table).
_REFERENCES = (("data_set", "parent_id", "data_set"), ("frames_global", "dataset_id", "data_set"),
               ("frames", "frames_global_id", "frames_global"), ("file_global", "dataset_id", "data_set"))


def is_original(conn: sa.Connection) -> bool:
    """Whether a database with imaging_db's tables and no alembic_version was made by the original imagingDB.

    The original named the column frames_global.dataset_id from the start;
    imaging_db before migrations named it data_set_id.
    """
    columns = {column["name"] for column in sa.inspect(conn).get_columns("frames_global")}
    return "data_set_id" not in columns


@dataclass
class AdoptionPlan:
    """What adopting a database would change, and the rows that stop it."""

    problems: list[str]
    statements: list[str]
    counts: dict[str, int]

    def describe(self, describe: str) -> str:
        """The report ``imaging_db_migrate --check`` prints (and the error when there are problems)."""
        rows = ", ".join(f"{n} {table}" for table, n in self.counts.items())
        head = f"database {describe} was made by the original imagingDB (revision {ORIGINAL}" + \
            (f"; rows: {rows})" if rows else ")")
        if self.problems:
            return "\n".join([f"{head}: {len(self.problems)} row(s) break imaging_db's rules, so nothing was "
                              "changed; fix or remove them, then run imaging_db_migrate again:",
                              *(f"  {problem}" for problem in self.problems)])
        return "\n".join([f"{head}: imaging_db_migrate would keep every row and column as they are, run these "
                          "statements in one transaction, then the migrations after revision "
                          f"{ADOPTED_AT}:", *(f"  {statement};" for statement in self.statements)])


def _ids(values) -> str:
    return ", ".join(str(v) for v in values)


def _missing(conn: sa.Connection) -> list[str]:
    """The tables and columns of the original's last schema that the database lacks."""
    inspector = sa.inspect(conn)
    missing = []
    for table, columns in _COLUMNS.items():
        if not inspector.has_table(table):
            missing.append(f"table {table} is missing")
            continue
        present = {column["name"] for column in inspector.get_columns(table)}
        missing += [f"table {table} has no column {column}" for column in columns if column not in present]
    return [f"{line}: this is not a database at the original imagingDB's revision {ORIGINAL}" for line in missing]


def _problems(conn: sa.Connection) -> list[str]:
    """Every row that breaks a rule imaging_db's schema enforces."""
    problems = []
    for table, columns in _REQUIRED.items():
        for column in columns:
            query = f"SELECT id FROM {table} WHERE {column} IS NULL ORDER BY id"
            problems += [f"{table} id {row.id}: {column} is NULL" for row in conn.execute(sa.text(query))]
    for table, column, length in _LENGTHS:
        query = f"SELECT id, {column} AS value FROM {table} WHERE length({column}) > {length} ORDER BY id"
        problems += [f"{table} id {row.id}: {column} {row.value!r} is longer than {length} characters"
                     for row in conn.execute(sa.text(query))]
    for table, columns, what in _UNIQUE:
        listed = ", ".join(columns)
        query = (f"SELECT {listed}, array_agg(id ORDER BY id) AS ids FROM {table} "
                 f"WHERE {' AND '.join(f'{c} IS NOT NULL' for c in columns)} "
                 f"GROUP BY {listed} HAVING count(*) > 1 ORDER BY min(id)")
        for row in conn.execute(sa.text(query)).mappings():
            key = ", ".join(f"{c} {row[c]!r}" for c in columns)
            problems.append(f"{table} ids {_ids(row['ids'])}: the same {key} (only one of {what} may be)")
    for table, column, target in _REFERENCES:
        query = (f"SELECT t.id, t.{column} AS ref FROM {table} t LEFT JOIN {target} r ON r.id = t.{column} "
                 f"WHERE t.{column} IS NOT NULL AND r.id IS NULL ORDER BY t.id")
        problems += [f"{table} id {row.id}: {column} {row.ref} names no {target} row"
                     for row in conn.execute(sa.text(query))]
    return problems


def _statements(conn: sa.Connection) -> list[str]:
    """The DDL that gives the original's tables imaging_db's schema at revision 0002."""
    inspector = sa.inspect(conn)

    def not_null(table: str) -> list[str]:
        return [f"ALTER COLUMN {column} SET NOT NULL" for column in _REQUIRED[table]]

    def alter(table: str, clauses: list[str]) -> str:
        return f"ALTER TABLE {table} " + ", ".join(clauses)

    statements = [
        alter("data_set", ["ALTER COLUMN dataset_serial TYPE VARCHAR(64)", "ALTER COLUMN description TYPE TEXT",
                           "ALTER COLUMN microscope TYPE TEXT", *not_null("data_set"),
                           "ADD CONSTRAINT data_set_dataset_serial_key UNIQUE (dataset_serial)"]),
        "CREATE INDEX ix_data_set_date_time ON data_set (date_time)",
        "CREATE INDEX ix_data_set_parent_id ON data_set (parent_id)",
        alter("frames_global", ["ALTER COLUMN storage_dir TYPE TEXT", "ALTER COLUMN bit_depth TYPE VARCHAR(16)",
                                *not_null("frames_global"),
                                "ADD CONSTRAINT frames_global_dataset_id_key UNIQUE (dataset_id)"]),
        # BIGINT ids, as imaging_db's frames have: the one change that rewrites the table's storage (not its rows).
        alter("frames", ["ALTER COLUMN id TYPE BIGINT", "ALTER COLUMN channel_name TYPE TEXT",
                         "ALTER COLUMN file_name TYPE TEXT", "ALTER COLUMN sha256 TYPE VARCHAR(64)",
                         *not_null("frames")]),
        "CREATE UNIQUE INDEX ix_frames_global_ctzp ON frames "
        "(frames_global_id, channel_idx, slice_idx, time_idx, pos_idx)",
        "CREATE INDEX ix_frames_global_channel_name ON frames (frames_global_id, channel_name)",
        alter("file_global", ["ALTER COLUMN storage_dir TYPE TEXT", "ALTER COLUMN file_name TYPE TEXT",
                              "ALTER COLUMN sha256 TYPE VARCHAR(64)", *not_null("file_global"),
                              "ADD CONSTRAINT file_global_dataset_id_key UNIQUE (dataset_id)"]),
    ]
    sequence = conn.execute(sa.text("SELECT pg_get_serial_sequence('frames', 'id')")).scalar()
    if sequence:
        statements.append(f"ALTER SEQUENCE {sequence} AS BIGINT")
    for table, column, target in _REFERENCES:  # the original's create_all made them; add any that are not there
        if not any(fk["constrained_columns"] == [column] for fk in inspector.get_foreign_keys(table)):
            statements.append(f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fkey FOREIGN KEY ({column}) "
                              f"REFERENCES {target} (id)")
    if not inspector.has_table("alembic_version"):
        statements.append("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                          "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
    statements += ["DELETE FROM alembic_version", f"INSERT INTO alembic_version (version_num) VALUES ('{ADOPTED_AT}')"]
    return statements


def plan(conn: sa.Connection) -> AdoptionPlan:
    """What adopting the original's database on ``conn`` would do, or the rows that prevent it."""
    if conn.dialect.name != "postgresql":
        return AdoptionPlan([f"the original imagingDB's tables are on {conn.dialect.name}; it only ran on "
                             "PostgreSQL, and only such a database can be adopted"], [], {})
    missing = _missing(conn)
    if missing:
        return AdoptionPlan(missing, [], {})
    counts = {table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() for table in _COLUMNS}
    problems = _problems(conn)
    return AdoptionPlan(problems, [] if problems else _statements(conn), counts)


def adopt(conn: sa.Connection, adoption: AdoptionPlan) -> None:
    """Run an adoption plan that found no problems, on ``conn`` (inside the caller's transaction)."""
    if adoption.problems:
        raise ValueError("an adoption plan with problems cannot be run")
    for statement in adoption.statements:
        conn.exec_driver_sql(statement)
