"""data_downloader: fetch a dataset's frames (or file) and metadata into a local folder."""

import argparse
import sys

if __package__ in (None, ""):  # run as `python imaging_db/cli/data_downloader.py`
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[2])

from imaging_db.cli.cli_common import EXIT_OK, add_common_arguments, imports_done, positive_int, run
from imaging_db.pipeline.allocator import reuse_freed_buffers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="data_downloader",
        description="Download a dataset into <dest>/<id>/, optionally only some channels, slices, times, positions.",
    )
    parser.add_argument("--id", required=True, dest="dataset_id", help="dataset id, e.g. ML-2018-11-07-09-35-54-0010")
    parser.add_argument("--dest", required=True, help="folder in which <id>/ is created")
    parser.add_argument("--login", help="database login JSON (default: embedded SQLite in $IMAGING_DB_HOME)")
    parser.add_argument("--metadata", action=argparse.BooleanOptionalAction, default=True,
                        help="write global_metadata.json and frames_meta.csv (default: on)")
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                        help="fetch the frames or file (default: on)")
    parser.add_argument("-c", "--channels", nargs="+", help="channel names, or indices when all are integers")
    parser.add_argument("-z", "--slices", nargs="+", type=int, help="slice indices")
    parser.add_argument("-t", "--times", nargs="+", type=int, help="time indices")
    parser.add_argument("-p", "--positions", nargs="+", type=int, help="position indices")
    parser.add_argument("--storage", choices=("local", "s3"), default="local", help="storage backend (default: local)")
    parser.add_argument("--storage_access", help="local folder or S3 bucket (default: $IMAGING_DB_HOME/storage)")
    parser.add_argument("--s3_endpoint_url", help="S3 endpoint (default: $AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--nbr_workers", type=positive_int, help="worker threads (default: CPU count)")
    add_common_arguments(parser)
    return parser.parse_args(argv)


def _main(args: argparse.Namespace) -> int:
    from imaging_db.pipeline.download import FrameSelection, download_dataset

    imports_done()
    selection = FrameSelection(channels=args.channels, slices=args.slices, times=args.times,
                               positions=args.positions)
    result = download_dataset(
        args.dataset_id,
        args.dest,
        login=args.login,
        selection=selection,
        metadata=args.metadata,
        download=args.download,
        storage=args.storage,
        storage_access=args.storage_access,
        s3_endpoint_url=args.s3_endpoint_url,
        nbr_workers=args.nbr_workers,
        progress=args.progress,
    )
    print(result.summary())
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``data_downloader`` console script."""
    args = parse_args(argv)
    reuse_freed_buffers()
    return run(_main, args, "data_downloader")


if __name__ == "__main__":
    sys.exit(main())
