"""imaging_db_migrate: upgrade a database to the schema of this imaging_db (alembic migrations)."""

import argparse
import sys

if __package__ in (None, ""):  # run as `python imaging_db/cli/imaging_db_migrate.py`
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[2])

from imaging_db.cli.cli_common import (EXIT_FAILED, EXIT_OK, add_common_arguments, add_json_argument, console_script,
                                       print_json)
from imaging_db.filestorage import StorageLocation, storage_names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imaging_db_migrate",
        description="Upgrade a database to the schema this imaging_db uses, keeping every row; a database made "
                    "by the original imagingDB is adopted in place. With --check, only print its schema revision "
                    "and what upgrading would do (exit 1 when it needs upgrading).",
    )
    parser.add_argument("--login", help="database login JSON (default: embedded SQLite in $IMAGING_DB_HOME)")
    parser.add_argument("--check", action="store_true",
                        help="print the revision and what upgrading would do; exit 1 when behind or ahead")
    default = parser.add_argument_group(
        "default storage", "where datasets that record no storage are (those the original imagingDB uploaded); "
        "recorded in the database after upgrading it")
    default.add_argument("--default-storage", "--default_storage", dest="default_storage", choices=storage_names(),
                         help="the backend")
    default.add_argument("--default-storage-access", "--default_storage_access", dest="default_storage_access",
                         metavar="DIR_OR_BUCKET", help="its folder or bucket")
    default.add_argument("--default-s3-endpoint-url", "--default_s3_endpoint_url", dest="default_s3_endpoint_url",
                         metavar="URL", help="its S3 endpoint, when not AWS")
    add_json_argument(parser, "the database, its revision before and after, the code's, and what was done")
    add_common_arguments(parser)
    return parser


def migrate_database(args: argparse.Namespace) -> int:
    """Upgrade, or with --check report, the database's schema revision."""
    from imaging_db.database import migrate
    from imaging_db.database.connection import load_login
    from imaging_db.database.db_ops import Database
    from imaging_db.errors import InputError

    default = None
    if args.default_storage_access or args.default_s3_endpoint_url:
        if not args.default_storage:
            raise InputError("--default-storage-access and --default-s3-endpoint-url need --default-storage")
    if args.default_storage:
        if args.check:
            raise InputError("--check only reports; it records no --default-storage")
        default = StorageLocation(args.default_storage, args.default_storage_access, args.default_s3_endpoint_url)
        default.open(max_connections=1)  # a bad setting (S3 without a bucket) is an error before anything is written
    database = Database(load_login(args.login), create=not args.check)
    try:
        lines, document, status = _migrate(args, database, default)
    finally:
        database.dispose()
    if args.json:
        print_json({"command": "imaging_db_migrate", "ok": status == EXIT_OK, "exit_status": status,
                    "database": database.describe(), "head": migrate.HEAD, **document})
    else:
        print("\n".join(lines))
    return status


def _migrate(args: argparse.Namespace, database, default: StorageLocation | None) -> tuple[list[str], dict, int]:
    """Check or upgrade the database: (lines for people, the --json fields, exit status)."""
    from imaging_db.database import migrate

    where = database.describe()
    with database.errors("reading the schema revision"), database.engine.connect() as conn:
        revision = migrate.database_revision(conn)
        adoption = migrate.adopt.plan(conn) if args.check and revision == migrate.adopt.ORIGINAL else None
    if adoption is not None:
        return [adoption.describe(where)], {"revision": revision, "action": "adopt original imagingDB",
                                            "plan": adoption.describe(where)}, EXIT_FAILED
    if args.check:
        if revision is None:
            return [f"database {where}: no imaging_db tables yet (they are made at revision "
                    f"{migrate.HEAD} on first upload, or by imaging_db_migrate)"], \
                {"revision": None, "action": "none"}, EXIT_OK
        problem = migrate.schema_problem(revision, where)
        return [problem or f"database {where}: schema revision {revision}, up to date"], \
            {"revision": revision, "action": "none", "problem": problem}, EXIT_FAILED if problem else EXIT_OK
    before, after = migrate.upgrade(database.engine, where)
    if before == after:
        line, action = f"database {where}: schema revision {after}, already up to date", "none"
    elif before == migrate.adopt.ORIGINAL:
        line = (f"database {where}: the original imagingDB's database adopted, every row kept; "
                f"schema now at revision {after}")
        action = "adopted"
    else:
        line, action = f"database {where}: schema upgraded from revision {before or 'empty'} to {after}", "upgraded"
    lines, document = [line], {"revision_before": before, "revision": after, "action": action}
    if default is not None:
        database.set_default_location(default)
        described = default.open(max_connections=1).describe()
        lines.append(f"database {where}: datasets that record no storage are read from {described}")
        document["default_storage"] = described
    return lines, document, EXIT_OK


main = console_script("imaging_db_migrate", build_parser, migrate_database,
                      imports=["imaging_db.database.db_ops", "imaging_db.database.migrate"])


if __name__ == "__main__":
    sys.exit(main())
