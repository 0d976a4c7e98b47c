"""What both CLIs share: logging set-up and turning errors into one line and an exit code."""

import argparse
import gc
import logging
import os
import sys
import traceback
from typing import Callable

from imaging_db.errors import ImagingDBError

# Set before numpy is imported: imaging_db does no linear algebra, and OpenBLAS's
# idle threads otherwise spin on the cores that encode frames.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNEXPECTED = 2
EXIT_INTERRUPTED = 130


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--verbose`` and ``--no-progress``."""
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log details, and show a traceback on error")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="hide progress bars (shown by default on a terminal)")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def imports_done() -> None:
    """Called by a CLI once its heavy imports are done (see ``run``).

    The modules' objects live as long as the process: freezing them keeps the
    cyclic garbage collector from walking them again at every collection.
    """
    gc.freeze()
    gc.enable()


def run(main: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str,
        on_interrupt: str = "") -> int:
    """Run ``main(args)``; print any error as one line on stderr and return the exit code.

    ``on_interrupt`` is added to the line printed on Ctrl-C (what the user can do next).
    The cyclic garbage collector is off until ``main`` calls ``imports_done``:
    importing SQLAlchemy and numpy otherwise triggers collections that cost
    about a tenth of the start-up.
    """
    gc.disable()
    try:
        return _run(main, args, prog, on_interrupt)
    finally:
        gc.enable()


def _run(main: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str, on_interrupt: str) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # Third-party chatter (botocore, urllib3) only with --verbose.
        for name in ("botocore", "boto3", "urllib3", "s3transfer"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return main(args)
    except ImagingDBError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{on_interrupt}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # anything unforeseen still gets one line, never a bare traceback
        if args.verbose:
            traceback.print_exc()
        print(f"{prog}: unexpected error: {type(exc).__name__}: {exc} (rerun with --verbose for a traceback)",
              file=sys.stderr)
        return EXIT_UNEXPECTED


__all__ = ["EXIT_FAILED", "EXIT_OK", "add_common_arguments", "imports_done", "positive_int", "run"]
