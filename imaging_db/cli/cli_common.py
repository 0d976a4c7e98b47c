"""What every command shares: its entry (:func:`console_script`), its common arguments, logging with
credentials masked, and turning errors into one line and an exit code."""

import argparse
import importlib
import json
import logging
import os
import re
import sys
import traceback
from typing import Callable, Sequence
from urllib.parse import quote, quote_plus

from imaging_db import __version__, process
from imaging_db.errors import ImagingDBError
from imaging_db.filestorage import storage_names

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNEXPECTED = 2
EXIT_INTERRUPTED = 130

MASK = "***"
# Environment variables that hold credentials (boto3 and libpq read them).
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "PGPASSWORD")
# Credentials in the shapes libraries write them, whatever their value or where they came from (a profile,
# an instance role): botocore's DEBUG log shows every request's headers and its canonical request, session
# token included; URLs carry user:password@; libpq connection strings password=...
_SECRET_PATTERNS = (
    (re.compile(r"(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,}&;]+", re.IGNORECASE), r"\1" + MASK),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(@)", re.IGNORECASE), r"\1" + MASK + r"\2"),
    (re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE), r"\1" + MASK),
)
# Shorter values are not masked: masking every "ab" in the output would hide more than the secret.
_MIN_SECRET_LENGTH = 4


def console_script(prog: str, build_parser: Callable[[], argparse.ArgumentParser],
                   body: Callable[[argparse.Namespace], int], imports: Sequence[str] = (),
                   on_interrupt: str = "") -> Callable[[list[str] | None], int]:
    """Return the ``main(argv)`` of a console script: every command enters through it.

    ``main`` sets up the process (:func:`imaging_db.process.prepare`), parses
    the arguments, sets up logging with credentials masked, imports the
    modules ``body`` needs (``imports``, with the collector paused), then runs
    ``body(args)`` and turns any error into one line on stderr and an exit code.

    Parameters
    ----------
    prog : str
        The command's name, which starts its error lines.
    build_parser : callable
        Returns the command's argument parser (see :func:`add_common_arguments`).
    body : callable
        Does the work and returns the exit code.
    imports : sequence of str
        The library modules ``body`` uses, loaded after the arguments are parsed.
    on_interrupt : str
        Added to the line printed on Ctrl-C (what the user can do next).
    """

    def main(argv: list[str] | None = None) -> int:
        process.prepare()
        try:
            args = build_parser().parse_args(argv)

            def load_and_run(args: argparse.Namespace) -> int:
                for name in imports:
                    importlib.import_module(name)
                process.imports_done()
                return body(args)

            return run(load_and_run, args, prog, on_interrupt)
        finally:
            process.finished()

    main.__doc__ = f"Entry point of the ``{prog}`` console script."
    return main


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--verbose``, ``--no-progress`` and ``--version``."""
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log details, and show a traceback on error")
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                        help="hide progress bars (shown by default on a terminal)")
    parser.add_argument("--version", action="version", version=f"%(prog)s (imaging_db {__version__})")


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--json``: ``what`` is printed as one JSON document on stdout, and so is an error (see :func:`run`)."""
    parser.add_argument("--json", action="store_true",
                        help=f"print one JSON document on stdout ({what}) instead of the lines for people")


def print_json(document: dict) -> None:
    """Print ``document`` as the run's one JSON document on stdout."""
    print(json.dumps(document, indent=2, ensure_ascii=False))


def add_store_arguments(parser: argparse.ArgumentParser, from_config: bool = False) -> None:
    """Add the arguments every command has to reach its data: ``--login``, the storage flags, ``--nbr_workers``.

    ``from_config``: the upload config gives the defaults, and the flags
    override it. Otherwise (readers) the dataset's record says where it is
    stored, and the flags override that.
    """
    fallback = "config, else " if from_config else "where the dataset was stored, else "
    parser.add_argument("--login", help="database login JSON (default: embedded SQLite in $IMAGING_DB_HOME)")
    parser.add_argument("--storage", choices=storage_names(), help=f"storage backend (default: {fallback}local)")
    parser.add_argument("--storage_access", help=f"local folder or S3 bucket (default: {fallback}"
                        "$IMAGING_DB_HOME/storage)")
    parser.add_argument("--s3_endpoint_url", help=f"S3 endpoint (default: {fallback}$AWS_ENDPOINT_URL, else AWS)")
    parser.add_argument("--nbr_workers", type=positive_int, help=f"worker threads (default: {'config, else ' if from_config else ''}CPU count)")


def store_options(args: argparse.Namespace) -> dict:
    """The keyword arguments that :func:`add_store_arguments` and ``--no-progress`` give the library's entry points."""
    return {"login": args.login, "storage": args.storage, "storage_access": args.storage_access,
            "s3_endpoint_url": args.s3_endpoint_url, "nbr_workers": args.nbr_workers, "progress": args.progress}


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


class SecretScrubber(logging.Filter):
    """Mask credentials in log records before any handler writes them.

    Known values (``secrets``) are replaced wherever they appear, and so are
    credentials in the shapes libraries log them (see ``_SECRET_PATTERNS``).
    Installed on the root logger's handlers, it rewrites each record it
    passes (message, exception text, stack), so every later handler sees the
    masked record too.

    Parameters
    ----------
    secrets : iterable of str
        Values never to show; empty or very short values are ignored.
    """

    def __init__(self, secrets=()):
        super().__init__()
        self.secrets = sorted({s for s in secrets if isinstance(s, str) and len(s) >= _MIN_SECRET_LENGTH},
                              key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """Return ``text`` with every credential masked."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for pattern, replacement in _SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: let the handler report it as logging does
            return True
        record.msg, record.args = self.scrub(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def known_secrets(args: argparse.Namespace) -> list[str]:
    """The credentials this run may handle: the login file's password and the credential variables."""
    secrets = [os.environ.get(name, "") for name in SECRET_VARIABLES]
    login = getattr(args, "login", None)
    if login:
        try:
            with open(login, encoding="utf-8-sig") as handle:
                password = json.load(handle).get("password")
        except (OSError, ValueError, AttributeError):  # a bad login file is reported by whoever reads it
            password = None
        if password not in (None, ""):
            password = str(password)
            # Also as it appears percent-encoded in a URL.
            secrets += [password, quote(password, safe=""), quote_plus(password)]
    return secrets


def run(main: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str,
        on_interrupt: str = "") -> int:
    """Run ``main(args)`` with logging set up and credentials masked; print any error as one line on stderr.

    Returns the exit code: ``main``'s, or EXIT_FAILED, EXIT_UNEXPECTED, EXIT_INTERRUPTED.
    """
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # Third-party chatter (botocore, urllib3) only with --verbose.
        for name in ("botocore", "boto3", "urllib3", "s3transfer"):
            logging.getLogger(name).setLevel(logging.WARNING)
    scrubber = SecretScrubber(known_secrets(args))
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(scrubber)

    def failed(status: int, line: str, error: str) -> int:
        print(scrubber.scrub(line), file=sys.stderr)
        if getattr(args, "json", False):  # a script reading stdout still gets its one document
            print_json({"command": prog, "ok": False, "exit_status": status, "error": scrubber.scrub(error)})
        return status

    try:
        return main(args)
    except ImagingDBError as exc:
        if args.verbose:
            print(scrubber.scrub(traceback.format_exc()), end="", file=sys.stderr)
        return failed(EXIT_FAILED, f"{prog}: error: {exc}", str(exc))
    except KeyboardInterrupt:
        return failed(EXIT_INTERRUPTED, f"{prog}: interrupted{on_interrupt}", f"interrupted{on_interrupt}")
    except Exception as exc:  # anything unforeseen still gets one line, never a bare traceback
        if args.verbose:
            print(scrubber.scrub(traceback.format_exc()), end="", file=sys.stderr)
        return failed(EXIT_UNEXPECTED, f"{prog}: unexpected error: {type(exc).__name__}: {exc} "
                      "(rerun with --verbose for a traceback)", f"{type(exc).__name__}: {exc}")
    finally:
        for handler in handlers:
            handler.removeFilter(scrubber)


__all__ = ["EXIT_FAILED", "EXIT_OK", "SecretScrubber", "add_common_arguments", "add_json_argument",
           "add_store_arguments", "console_script", "known_secrets", "positive_int", "print_json", "run",
           "store_options"]
