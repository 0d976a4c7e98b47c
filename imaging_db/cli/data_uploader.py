"""data_uploader: upload the datasets listed in a CSV to storage and the database."""

import argparse
import logging
import sys

if __package__ in (None, ""):  # run as `python imaging_db/cli/data_uploader.py`
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[2])

from imaging_db.cli.cli_common import (EXIT_FAILED, EXIT_OK, add_common_arguments, add_json_argument,
                                       add_store_arguments, console_script, print_json, store_options)
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
    parser.add_argument("--skip-existing", "--skip_existing", dest="skip_existing", action="store_true",
                        help="a dataset id already registered is reported as skipped (exit 0), not as a failure: "
                             "a nightly job can rerun its CSV")
    add_json_argument(parser, "each dataset's status, counts, bytes and seconds, and the totals")
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
    """Upload the CSV's datasets; print one line per dataset (or, with --json, one document)."""
    from imaging_db.pipeline.upload import upload_from_csv

    results = upload_from_csv(args.csv, config=args.config, override=resume_flag(args),
                              skip_existing=args.skip_existing, **store_options(args))
    failed = sum(not r.ok for r in results)
    if args.json:
        print_json(report(results))
    else:
        for result in results:
            print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    if failed:
        print(f"data_uploader: {failed} of {len(results)} dataset(s) failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def report(results) -> dict:
    """The --json document: each dataset's outcome and figures, and the totals."""
    datasets = [result.to_dict() for result in results]
    totals = {status: sum(d["status"] == status for d in datasets) for status in ("uploaded", "skipped", "failed")}
    for figure in ("nbr_frames", "raw_bytes", "stored_bytes"):
        totals[figure] = sum(d[figure] for d in datasets if d["status"] == "uploaded")
    totals["seconds"] = round(sum(result.seconds for result in results), 3)
    return {"command": "data_uploader", "ok": not totals["failed"], "exit_status": EXIT_FAILED if totals["failed"]
            else EXIT_OK, "datasets": datasets, "totals": totals}


main = console_script(
    "data_uploader", build_parser, upload, imports=["imaging_db.pipeline.upload"],
    on_interrupt="; nothing of the interrupted dataset was registered: rerun with --override to resume it")


if __name__ == "__main__":
    sys.exit(main())
