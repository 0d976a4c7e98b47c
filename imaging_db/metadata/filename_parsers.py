"""Parsers that turn a file name into metadata added to a dataset's global metadata."""

import os
import re
from typing import Callable

from imaging_db.errors import InputError

_SMS_PATTERN = re.compile(
    r"^img_(?P<channel_name>.+)_t(?P<time_idx>\d+)_p(?P<pos_idx>\d+)_z(?P<slice_idx>\d+)\.tiff?$",
    re.IGNORECASE,
)


def parse_ml_name(file_name: str) -> dict:
    """Parse ``<plate_id>_<stack_nbr>_<protein_name>_..._PyProcessed.tif``.

    Returns
    -------
    dict
        ``plate_id`` (str), ``stack_nbr`` (int) and ``protein_name`` (str).

    Raises
    ------
    InputError
        If the name does not have at least three ``_``-separated fields with an
        integer stack number.
    """
    base = os.path.basename(os.path.normpath(file_name))
    stem = base.split(".")[0]
    parts = stem.split("_")
    # isdigit() alone accepts '²', which int() rejects: require ASCII decimal digits.
    stack_ok = len(parts) >= 2 and parts[1].isascii() and parts[1].isdecimal()
    if len(parts) < 3 or not stack_ok or not parts[0] or not parts[2]:
        raise InputError(
            f"file name {base!r} does not match parse_ml_name: expected "
            "<plate_id>_<stack_nbr>_<protein_name>_..._PyProcessed.tif"
        )
    return {"plate_id": parts[0], "stack_nbr": int(parts[1]), "protein_name": parts[2]}


def parse_sms_name(file_name: str) -> dict:
    """Parse ``img_<channel name>_t000_p000_z000.tif``; the channel name may contain ``_``.

    Returns
    -------
    dict
        ``channel_name`` (str), ``time_idx``, ``pos_idx`` and ``slice_idx`` (int).

    Raises
    ------
    InputError
        If the name does not match the pattern.
    """
    base = os.path.basename(os.path.normpath(file_name))
    match = _SMS_PATTERN.match(base)
    if match is None:
        raise InputError(
            f"file name {base!r} does not match parse_sms_name: expected "
            "img_<channel name>_t000_p000_z000.tif"
        )
    return {
        "channel_name": match["channel_name"],
        "time_idx": int(match["time_idx"]),
        "pos_idx": int(match["pos_idx"]),
        "slice_idx": int(match["slice_idx"]),
    }


FILENAME_PARSERS: dict[str, Callable[[str], dict]] = {
    "parse_ml_name": parse_ml_name,
    "parse_sms_name": parse_sms_name,
}


def get_filename_parser(name: str | None) -> Callable[[str], dict] | None:
    """Return the parser called ``name``, or None when ``name`` is empty.

    Raises
    ------
    InputError
        If no parser has that name.
    """
    if not name:
        return None
    try:
        return FILENAME_PARSERS[name]
    except KeyError:
        raise InputError(
            f"unknown filename_parser {name!r}; choose one of {sorted(FILENAME_PARSERS)}"
        ) from None
