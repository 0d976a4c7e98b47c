"""data_verify: re-read every stored object of datasets, compare checksums, report missing, corrupt and orphaned objects."""

import argparse
import sys

if __package__ in (None, ""):  # run as `python imaging_db/cli/data_verify.py`
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[2])

from imaging_db.cli.cli_common import (EXIT_FAILED, EXIT_OK, add_common_arguments, add_json_argument,
                                       add_store_arguments, console_script, print_json, store_options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="data_verify",
        description="Check that every stored object of one or all datasets is there and matches its sha256, "
                    "and find orphaned objects. Exit 0 if all is well, 1 if anything is wrong.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", nargs="+", dest="dataset_ids", metavar="ID",
                       help="dataset ids, e.g. ML-2018-11-07-09-35-54-0010")
    which.add_argument("--all", action="store_true",
                       help="every registered dataset, and the prefixes of no registered dataset")
    add_store_arguments(parser)
    add_json_argument(parser, "each dataset's counts and problems, the prefixes of no dataset, totals")
    parser.add_argument("--remove-orphans", "--remove_orphans", dest="remove_orphans", action="store_true",
                        help="remove orphaned objects and unfinished writes that no committed dataset owns "
                             "(never those of an upload in progress)")
    add_common_arguments(parser)
    return parser


def verify(args: argparse.Namespace) -> int:
    """Verify the datasets; print the report; exit 1 if anything is wrong."""
    from imaging_db.pipeline.verify import verify_datasets

    report = verify_datasets(None if args.all else args.dataset_ids, remove_orphans=args.remove_orphans,
                             **store_options(args))
    status = EXIT_OK if report.ok else EXIT_FAILED
    if args.json:
        print_json({"command": "data_verify", "exit_status": status, **report.to_dict()})
    else:
        print("\n".join(report.summary_lines(max_per_kind=None if args.verbose else 20)))
    return status


main = console_script("data_verify", build_parser, verify, imports=["imaging_db.pipeline.verify"])


if __name__ == "__main__":
    sys.exit(main())
