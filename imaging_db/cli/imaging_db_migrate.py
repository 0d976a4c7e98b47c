"""imaging_db_migrate: upgrade a database to the schema of this imaging_db (alembic migrations)."""

import argparse
import sys

if __package__ in (None, ""):  # run as `python imaging_db/cli/imaging_db_migrate.py`
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[2])

from imaging_db.cli.cli_common import EXIT_FAILED, EXIT_OK, add_common_arguments, console_script


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imaging_db_migrate",
        description="Upgrade a database to the schema this imaging_db uses, keeping every row. "
                    "With --check, only print its schema revision (exit 1 when it needs upgrading).",
    )
    parser.add_argument("--login", help="database login JSON (default: embedded SQLite in $IMAGING_DB_HOME)")
    parser.add_argument("--check", action="store_true", help="print the revision; exit 1 when behind or ahead")
    add_common_arguments(parser)
    return parser


def migrate_database(args: argparse.Namespace) -> int:
    """Upgrade, or with --check report, the database's schema revision."""
    from imaging_db.database import migrate
    from imaging_db.database.connection import load_login
    from imaging_db.database.db_ops import Database

    database = Database(load_login(args.login), create=not args.check)
    try:
        with database.errors("reading the schema revision"), database.engine.connect() as conn:
            revision = migrate.database_revision(conn)
        if args.check:
            problem = migrate.schema_problem(revision, database.describe())
            if revision is None:
                print(f"database {database.describe()}: no imaging_db tables yet (they are made at revision "
                      f"{migrate.HEAD} on first upload, or by imaging_db_migrate)")
                return EXIT_OK
            print(problem or f"database {database.describe()}: schema revision {revision}, up to date")
            return EXIT_FAILED if problem else EXIT_OK
        before, after = migrate.upgrade(database.engine, database.describe())
        if before == after:
            print(f"database {database.describe()}: schema revision {after}, already up to date")
        else:
            print(f"database {database.describe()}: schema upgraded from revision {before or 'empty'} to {after}")
        return EXIT_OK
    finally:
        database.dispose()


main = console_script("imaging_db_migrate", build_parser, migrate_database,
                      imports=["imaging_db.database.db_ops", "imaging_db.database.migrate"])


if __name__ == "__main__":
    sys.exit(main())
