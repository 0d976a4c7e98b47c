"""Reading small JSON input files with errors that name the file."""

import json
from pathlib import Path

from imaging_db.errors import InputError


def load_json_file(path: str | Path, what: str) -> object:
    """Read and parse a JSON file.

    Parameters
    ----------
    path : str or Path
        The file to read.
    what : str
        What the file is, for error messages (e.g. ``"config"``).

    Raises
    ------
    InputError
        If the file is missing, unreadable, not UTF-8 or not valid JSON.
    """
    path = Path(path)
    try:
        # utf-8-sig: editors on Windows often start the file with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{what} file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} file {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} file {str(path)!r} is not UTF-8 text: byte {exc.start} cannot be decoded; save it as UTF-8"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{what} file {str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
