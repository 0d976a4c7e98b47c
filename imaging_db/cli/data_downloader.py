"""data_downloader: fetch a dataset's frames (or file) and metadata into a local folder."""

import argparse
import json
import sys

if __package__ in (None, ""):  # run as `python imaging_db/cli/data_downloader.py`
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[2])

from imaging_db.cli.cli_common import EXIT_OK, add_common_arguments, add_store_arguments, console_script, store_options
from imaging_db.pipeline.export import FORMATS, STORED_FORMAT


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
    parser.add_argument("-c", "--channels", nargs="+",
                        help="channel names, or indices when all are integers and none is a channel name")
    parser.add_argument("-z", "--slices", nargs="+", type=int, help="slice indices")
    parser.add_argument("-t", "--times", nargs="+", type=int, help="time indices")
    parser.add_argument("-p", "--positions", nargs="+", type=int, help="position indices")
    parser.add_argument("--format", choices=FORMATS, default=STORED_FORMAT,
                        help="png: the stored frames as they are (default); ome-zarr: an OME-Zarr (NGFF 0.5) image "
                             "per position; tiff: an OME-TIFF per position (axes TCZYX, opens in Fiji as a hyperstack)")
    parser.add_argument("--frame-metadata", "--frame_metadata", dest="frame_metadata", action="store_true",
                        help="add each frame's own metadata to frames_meta.csv, a column per key (nested keys "
                             "dotted, lists as JSON); off by default: Micro-Manager frames have 100+ keys")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout (dataset id, format, frames, bytes, seconds, files) "
                             "instead of the summary line")
    add_store_arguments(parser)
    add_common_arguments(parser)
    return parser


def download(args: argparse.Namespace) -> int:
    """Download one dataset; print what was written."""
    from imaging_db.pipeline.download import FrameSelection, download_dataset

    selection = FrameSelection(channels=args.channels, slices=args.slices, times=args.times,
                               positions=args.positions)
    result = download_dataset(args.dataset_id, args.dest, selection=selection, metadata=args.metadata,
                              download=args.download, frame_metadata=args.frame_metadata, format=args.format,
                              **store_options(args))
    if args.json:
        print(json.dumps(report(result), indent=2, ensure_ascii=False))
    else:
        print(result.summary())
    return EXIT_OK


def report(result) -> dict:
    """The --json document: the dataset's outcome and figures (as data_verify's and data_uploader's)."""
    return {"command": "data_downloader", "ok": True, "exit_status": EXIT_OK, **result.to_dict()}


main = console_script("data_downloader", build_parser, download, imports=["imaging_db.pipeline.download"])


if __name__ == "__main__":
    sys.exit(main())
