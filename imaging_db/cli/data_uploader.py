"""data_uploader: upload the datasets listed in a CSV to storage and the database."""

import argparse
import logging
import sys

if __package__ in (None, ""):  # run as `python imaging_db/cli/data_uploader.py`
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[2])

from imaging_db.cli.cli_common import (EXIT_FAILED, EXIT_OK, add_common_arguments, add_store_arguments,
                                       console_script, store_options)
from imaging_db.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="data_uploader",
        description="Split image stacks into 2D PNG frames (or store files as is) and register them.",
    )
    parser.add_argument("--csv", required=True, help="CSV with columns dataset_id, file_name "
                        "[, description, parent_dataset_id, positions, meta_schema]")
    parser.add_argument("--config", required=True, help="upload config JSON (upload_type, frames_format, ...)")
    parser.add_argument("--override", action="store_true",
                        help="resume an interrupted upload: keep frames already stored with the same content")
    parser.add_argument("--overwrite", action="store_true",
                        help="the original imagingDB's name for --override (accepted, with a warning)")
    add_store_arguments(parser, from_config=True)
    add_common_arguments(parser)
    return parser


def resume_flag(args: argparse.Namespace) -> bool:
    """``--override``, or ``--overwrite``, the original imagingDB's name for it (with a warning).

    Raises
    ------
    InputError
        If both are given.
    """
    if args.overwrite and args.override:
        raise InputError("--overwrite is the original imagingDB's name for --override: give only --override")
    if args.overwrite:
        logging.getLogger(__name__).warning("--overwrite is the original imagingDB's name; use --override")
    return args.override or args.overwrite


def upload(args: argparse.Namespace) -> int:
    """Upload the CSV's datasets; print one line per dataset."""
    from imaging_db.pipeline.upload import upload_from_csv

    results = upload_from_csv(args.csv, config=args.config, override=resume_flag(args), **store_options(args))
    for result in results:
        print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    failed = sum(not r.ok for r in results)
    if failed:
        print(f"data_uploader: {failed} of {len(results)} dataset(s) failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


main = console_script(
    "data_uploader", build_parser, upload, imports=["imaging_db.pipeline.upload"],
    on_interrupt="; nothing of the interrupted dataset was registered: rerun with --override to resume it")


if __name__ == "__main__":
    sys.exit(main())
