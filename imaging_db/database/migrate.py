"""The schema's version: which alembic revision a database is at, and upgrading it to this code's.

The revision is read with one query (no alembic import), so every command can
check it at start-up; alembic itself is loaded only to upgrade.
"""

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from imaging_db.database import adopt, schema
from imaging_db.database.claims import schema_lock
from imaging_db.database.connection import first_line
from imaging_db.errors import DatabaseError

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest revision in migrations/versions: the schema this code reads and writes (a test checks it).
HEAD = "0005"
# The revision of a database imaging_db made before it used migrations (tables, no alembic_version).
FIRST = "0001"


def database_revision(conn: sa.Connection) -> str | None:
    """The alembic revision of the database; None when it holds no imaging_db tables.

    A database with imaging_db tables but no version table was made before
    migrations existed, at revision FIRST, or by the original imagingDB
    (its create_all made no version table): adopt.ORIGINAL.
    """
    inspector = sa.inspect(conn)
    if not inspector.has_table("data_set"):
        return None
    if not inspector.has_table("alembic_version"):
        return adopt.ORIGINAL if adopt.is_original(conn) else FIRST
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def schema_problem(revision: str | None, describe: str) -> str | None:
    """One line saying what to run when a database at ``revision`` is not at this code's HEAD, else None."""
    if revision is None or revision == HEAD:
        return None
    if revision == adopt.ORIGINAL:
        return (f"database {describe} was made by the original imagingDB (revision {revision}): adopt it with "
                "`imaging_db_migrate` (given the same --login; with --check it first shows what would change)")
    if revision in adopt.ORIGINAL_OLDER:
        return (f"database {describe} was made by an older original imagingDB (revision {revision}): bring it to "
                f"its last revision {adopt.ORIGINAL} with the original imagingDB's alembic, then run "
                "`imaging_db_migrate`")
    if _is_known(revision):
        return (f"database {describe} has an older schema (revision {revision}, this imaging_db needs {HEAD}): "
                "upgrade it with `imaging_db_migrate` (given the same --login)")
    return (f"database {describe} has a newer schema (revision {revision}) than this imaging_db knows "
            f"(up to {HEAD}): install the newer imaging_db that upgraded it")


def include_object(obj, name: str, type_: str, reflected: bool, compare_to) -> bool:
    """alembic's filter for comparing a database with the models.

    The indexes made by DDL on PostgreSQL only (schema.POSTGRESQL_ONLY_INDEXES) are not in the models'
    metadata, so they are left out of the comparison; a test checks they exist.
    """
    return not (type_ == "index" and name in schema.POSTGRESQL_ONLY_INDEXES)


def differences(conn: sa.Connection) -> list:
    """What alembic's autogenerate finds between the database on ``conn`` and the models (empty: identical)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"include_object": include_object})
    return compare_metadata(context, schema.metadata)


def _is_known(revision: str) -> bool:
    return any(path.name.startswith(f"{revision}_") for path in (MIGRATIONS / "versions").glob("*.py"))


@contextlib.contextmanager
def _migration_connection(engine: Engine, describe: str) -> Iterator[sa.Connection]:
    """A connection in one transaction, under the schema lock, on which migrations run."""
    with schema_lock(engine, describe) as locked:
        if locked is not None:
            yield locked
            return
        with engine.connect() as conn:
            # SQLite alters a table by copying it (batch mode); with foreign keys enforced, dropping
            # the old copy would fail. The pragma only takes effect outside a transaction.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            # pysqlite commits before each CREATE or ALTER on its own: other processes would see the
            # tables before the version row. Driving the transaction by hand makes the change one commit.
            driver = conn.connection.driver_connection
            isolation_level, driver.isolation_level = driver.isolation_level, None
            try:
                with conn.begin():
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                    yield conn
            finally:
                driver.isolation_level = isolation_level
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def _create_at_head(conn: sa.Connection) -> None:
    """An empty database: the models' tables, stamped at HEAD, as alembic's own upgrade would leave them.

    Creating the tables directly takes a hundredth of the time of running
    every migration (a test checks both give the same schema).
    """
    schema.metadata.create_all(conn)
    version = sa.Table("alembic_version", sa.MetaData(), sa.Column("version_num", sa.String(32), nullable=False),
                       sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))
    version.create(conn)
    conn.execute(version.insert().values(version_num=HEAD))


def upgrade(engine: Engine, describe: str) -> tuple[str | None, str]:
    """Upgrade the database to HEAD, creating the tables in an empty one; return (revision before, after).

    Safe when several processes do it at once: they take turns under the
    schema lock, and the later ones find the database at HEAD.

    Raises
    ------
    DatabaseError
        If the database is newer than this code, or a migration fails (nothing is changed then).
    """
    try:
        with _migration_connection(engine, describe) as conn:
            before = database_revision(conn)
            if before == adopt.ORIGINAL:
                adoption = adopt.plan(conn)
                if adoption.problems:
                    raise DatabaseError(adoption.describe(describe))
                adopt.adopt(conn, adoption)
                logger.info("database %s: the original imagingDB's tables adopted at revision %s", describe,
                            adopt.ADOPTED_AT)
            elif before is not None and not _is_known(before):
                raise DatabaseError(schema_problem(before, describe))
            if before == HEAD:
                return before, HEAD
            if before is None:
                _create_at_head(conn)
                return before, HEAD
            # Imported only here: loading alembic costs about a quarter of a second.
            from alembic import command
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            if before == FIRST and not sa.inspect(conn).has_table("alembic_version"):
                command.stamp(config, FIRST)
            command.upgrade(config, "head")
            logger.info("database %s upgraded from revision %s to %s", describe, before, HEAD)
            return before, HEAD
    except sa.exc.SQLAlchemyError as exc:
        raise DatabaseError(f"database {describe}: upgrading the schema failed: {first_line(exc)}") from exc
