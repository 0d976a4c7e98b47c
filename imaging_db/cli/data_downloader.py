"""data_downloader: fetch a dataset's frames (or file) and metadata into a local folder."""

import argparse
import sys

if __package__ in (None, ""):  # run as `python imaging_db/cli/data_downloader.py`
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[2])

from imaging_db.cli.cli_common import EXIT_OK, add_common_arguments, add_store_arguments, console_script, store_options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="data_downloader",
        description="Download a dataset into <dest>/<id>/, optionally only some channels, slices, times, positions.",
    )
    parser.add_argument("--id", required=True, dest="dataset_id", help="dataset id, e.g. ML-2018-11-07-09-35-54-0010")
    parser.add_argument("--dest", required=True, help="folder in which <id>/ is created")
    parser.add_argument("--metadata", action=argparse.BooleanOptionalAction, default=True,
                        help="write global_metadata.json and frames_meta.csv (default: on)")
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                        help="fetch the frames or file (default: on)")
    parser.add_argument("-c", "--channels", nargs="+", help="channel names, or indices when all are integers")
    parser.add_argument("-z", "--slices", nargs="+", type=int, help="slice indices")
    parser.add_argument("-t", "--times", nargs="+", type=int, help="time indices")
    parser.add_argument("-p", "--positions", nargs="+", type=int, help="position indices")
    add_store_arguments(parser)
    add_common_arguments(parser)
    return parser


def download(args: argparse.Namespace) -> int:
    """Download one dataset; print what was written."""
    from imaging_db.pipeline.download import FrameSelection, download_dataset

    selection = FrameSelection(channels=args.channels, slices=args.slices, times=args.times,
                               positions=args.positions)
    result = download_dataset(args.dataset_id, args.dest, selection=selection, metadata=args.metadata,
                              download=args.download, **store_options(args))
    print(result.summary())
    return EXIT_OK


main = console_script("data_downloader", build_parser, download, imports=["imaging_db.pipeline.download"])


if __name__ == "__main__":
    sys.exit(main())
