"""query_data: list the datasets matching filters on project, microscope, dates, description, parent and metadata."""

import argparse
import csv
import json
import shlex
import sys

if __package__ in (None, ""):  # run as `python imaging_db/cli/query_data.py`
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[2])

from imaging_db.cli.cli_common import EXIT_OK, add_common_arguments, console_script

FORMATS = ("table", "csv", "json")
# The filters, by flag and attribute, in the order a message names them.
FILTER_FLAGS = (("--project_id", "project_id"), ("--microscope", "microscope"), ("--start_date", "start_date"),
                ("--end_date", "end_date"), ("--description", "description"), ("--parent", "parent"),
                ("--meta", "meta"))
# Table columns: header, the widest a column gets (None: never cut), right-aligned.
TABLE_COLUMNS = (("dataset_id", None, False), ("date_time", None, False), ("microscope", 24, False),
                 ("description", 40, False), ("type", None, False), ("nbr_frames", None, True),
                 ("channels", 30, False))
ELLIPSIS = "..."

EXAMPLES = """examples:
  query_data --project_id ML --start_date 2018-11-01 --end_date 2018-11-30
  query_data --microscope leica --description kidney --login db_credentials.json
  query_data --parent ML-2018-11-07-09-35-54-0010
  query_data --meta protein_name=TOPOR --meta "Exposure-ms>50" --format csv
  query_data --meta Summary.ChNames=GFP --format json"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="query_data",
        description="List the datasets that match every given filter, oldest first.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--login", help="database login JSON (default: embedded SQLite in $IMAGING_DB_HOME)")
    parser.add_argument("--project_id", help="project: the part of the dataset id before its first '-', e.g. ML")
    parser.add_argument("--microscope", help="text the microscope contains, in any case")
    parser.add_argument("--start_date", metavar="YYYY-MM-DD", help="first acquisition day, included")
    parser.add_argument("--end_date", metavar="YYYY-MM-DD", help="last acquisition day, included")
    parser.add_argument("--description", help="text the description contains, in any case")
    parser.add_argument("--parent", metavar="ID", help="only the datasets whose parent is dataset ID")
    parser.add_argument("--meta", action="append", metavar="FILTER",
                        help="KEY=VALUE, KEY>N or KEY<N on the global metadata or any frame's metadata; KEY may be "
                             "dotted (Summary.ChNames); VALUE matches a number, text or list element. "
                             "Repeat: all must match")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="a readable table (default), or csv or json with every field in full, for scripts")
    parser.add_argument("--json", action="store_true", help="the same as --format json")
    add_common_arguments(parser)
    return parser


def query(args: argparse.Namespace) -> int:
    """Print the matching datasets, or one line saying none matches."""
    from imaging_db.database.connection import load_login
    from imaging_db.database.db_ops import Database
    from imaging_db.database.search import DatasetFilters, search
    from imaging_db.errors import InputError, NotFoundError

    if args.json and args.format not in (None, "json"):
        raise InputError(f"--json and --format {args.format} ask for two formats: give one")
    args.format = "json" if args.json else args.format or "table"

    filters = DatasetFilters.make(project_id=args.project_id, microscope=args.microscope,
                                  start_date=args.start_date, end_date=args.end_date,
                                  description=args.description, parent=args.parent, meta=args.meta)
    url = load_login(args.login)
    try:
        database = Database(url, create=False)  # a reader never creates the database
    except NotFoundError as exc:
        raise NotFoundError(f"no datasets: {exc}") from None
    try:
        database.check_schema("searching datasets")
        found = search(database, filters)
        where = database.describe()
    finally:
        database.dispose()
    if args.format == "table":
        print("\n".join(table_lines(found)) if found else no_match(args, where))
    else:
        print(csv_text(found) if args.format == "csv" else json_text(found), end="")
        if not found:
            print(no_match(args, where), file=sys.stderr)
    return EXIT_OK


def no_match(args: argparse.Namespace, where: str) -> str:
    """The line saying that nothing matches, naming the filters given."""
    given = []
    for flag, name in FILTER_FLAGS:
        values = getattr(args, name)
        for value in values if isinstance(values, list) else [values]:
            if value is not None:
                given.append(f"{flag} {shlex.quote(value)}")
    if not given:
        return f"no datasets in the database {where}"
    return f"no dataset matches {' '.join(given)}"


def records(found) -> list[dict]:
    """The datasets as plain records, every field in full: dates in ISO 8601, channels a list."""
    from imaging_db.database.search import FIELDS

    rows = []
    for summary in found:
        row = {name: getattr(summary, name) for name in FIELDS}  # dataclasses.asdict deep-copies: 4x slower
        row["date_time"] = summary.date_time.isoformat()
        row["channels"] = list(summary.channels) if summary.channels is not None else None
        rows.append(row)
    return rows


def json_text(found) -> str:
    """A JSON list with one dataset per line (json's indent= would take its pure-Python encoder: 70 ms a 1000)."""
    lines = [json.dumps(row, ensure_ascii=False) for row in records(found)]
    return "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"


def csv_text(found) -> str:
    """One row per dataset: booleans as true/false, channels joined by ';', None as an empty field."""
    import io

    from imaging_db.database.search import FIELDS

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for row in records(found):
        row["frames"] = "true" if row["frames"] else "false"
        if row["channels"] is not None:
            row["channels"] = ";".join(name or "" for name in row["channels"])
        writer.writerow(row[name] for name in FIELDS)
    return out.getvalue()


def _cell(text: str, width: int | None) -> str:
    if not text.isprintable():  # a newline or tab would break the row
        text = "".join(character if character.isprintable() else " " for character in text)
    if width is not None and len(text) > width:
        return text[:width - len(ELLIPSIS)].rstrip() + ELLIPSIS
    return text


def table_lines(found) -> list[str]:
    """A fixed-width table: one line per dataset, long microscopes, descriptions and channel lists cut."""
    rows = []
    for summary in found:
        channels = "" if summary.channels is None else ",".join(name or "?" for name in summary.channels)
        values = (summary.dataset_id, f"{summary.date_time:%Y-%m-%d %H:%M:%S}", summary.microscope or "",
                  summary.description or "", "frames" if summary.frames else "file",
                  "" if summary.nbr_frames is None else str(summary.nbr_frames), channels)
        rows.append([_cell(value, width) for value, (_, width, _) in zip(values, TABLE_COLUMNS)])
    headers = [name for name, _, _ in TABLE_COLUMNS]
    widths = [max(len(cells[i]) for cells in rows + [headers]) for i in range(len(headers))]

    def line(cells) -> str:
        return "  ".join(cell.rjust(width) if right else cell.ljust(width)
                         for cell, width, (_, _, right) in zip(cells, widths, TABLE_COLUMNS)).rstrip()

    lines = [line(headers), line("-" * width for width in widths)]
    lines += [line(cells) for cells in rows]
    lines.append(f"{len(found)} dataset{'s' if len(found) != 1 else ''}")
    return lines


main = console_script("query_data", build_parser, query,
                      imports=["imaging_db.database.search", "imaging_db.database.db_ops"])


if __name__ == "__main__":
    sys.exit(main())
