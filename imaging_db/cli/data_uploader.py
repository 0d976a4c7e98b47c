"""data_uploader: upload the datasets listed in a CSV to storage and the database."""

import argparse
import sys

if __package__ in (None, ""):  # run as `python imaging_db/cli/data_uploader.py`
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[2])

from imaging_db.cli.cli_common import EXIT_FAILED, EXIT_OK, add_common_arguments, imports_done, positive_int, run
from imaging_db.pipeline.allocator import reuse_freed_buffers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="data_uploader",
        description="Split image stacks into 2D PNG frames (or store files as is) and register them.",
    )
    parser.add_argument("--csv", required=True, help="CSV with columns dataset_id, file_name "
                        "[, description, parent_dataset_id, positions, meta_schema]")
    parser.add_argument("--login", help="database login JSON (default: embedded SQLite in $IMAGING_DB_HOME)")
    parser.add_argument("--config", required=True, help="upload config JSON (upload_type, frames_format, ...)")
    parser.add_argument("--override", action="store_true",
                        help="resume an interrupted upload: keep frames already stored with the same content")
    parser.add_argument("--storage", choices=("local", "s3"), help="storage backend (default: config, else local)")
    parser.add_argument("--storage_access", help="local folder or S3 bucket (default: config, else "
                        "$IMAGING_DB_HOME/storage)")
    parser.add_argument("--nbr_workers", type=positive_int, help="worker threads (default: config, else CPU count)")
    add_common_arguments(parser)
    return parser.parse_args(argv)


def _main(args: argparse.Namespace) -> int:
    from imaging_db.pipeline.upload import upload_from_csv

    imports_done()
    results = upload_from_csv(
        args.csv,
        login=args.login,
        config=args.config,
        storage=args.storage,
        storage_access=args.storage_access,
        nbr_workers=args.nbr_workers,
        override=args.override,
        progress=args.progress,
    )
    for result in results:
        print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    failed = sum(not r.ok for r in results)
    if failed:
        print(f"data_uploader: {failed} of {len(results)} dataset(s) failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``data_uploader`` console script."""
    args = parse_args(argv)
    reuse_freed_buffers()
    return run(_main, args, "data_uploader",
               on_interrupt="; nothing of the interrupted dataset was registered: rerun with --override to resume it")


if __name__ == "__main__":
    sys.exit(main())
