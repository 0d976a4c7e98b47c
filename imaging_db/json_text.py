"""Serialize metadata to JSON text that every database accepts."""

import json
import math
import re

# Code points of UTF-16 surrogates: in a str they are halves of nothing (a JSON "\udc80" escape, or a
# file name's undecodable byte), which no UTF-8 text can hold.
_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """Return ``value`` without NUL characters, each lone surrogate replaced by U+FFFD."""
    return _SURROGATES.sub("\ufffd", value.replace("\x00", ""))


def text_problem(value: str) -> str | None:
    """Say why a database could not store ``value`` as text, or None if every database can.

    PostgreSQL refuses a NUL character in text; neither it nor SQLite can
    encode a lone surrogate (an undecodable byte of a file name, or a JSON
    ``\\udc80`` escape) as UTF-8.
    """
    if "\x00" in value:
        return "holds a NUL character"
    found = _SURROGATES.search(value)
    if found:
        return f"is not valid Unicode (lone surrogate {found.group()!r} at character {found.start()})"
    return None


def json_compatible(value):
    """Return ``value`` with NaN/Infinity as None, NUL characters removed and lone surrogates replaced.

    PostgreSQL's JSON types refuse all three (a whole dataset would fail at its
    final commit), and they are not valid JSON for other readers of SQLite either;
    doing it for every backend keeps SQLite and PostgreSQL storing the same metadata.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: json_compatible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_compatible(v) for v in value]
    return value


def to_json_text(value) -> str:
    """Serialize a metadata value as compact JSON, cleaned as :func:`json_compatible` says."""
    # Fast path in C for the usual clean metadata; walk the value only when it needs cleaning.
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(json_compatible(value), allow_nan=False, separators=(",", ":"))
    # "\ud" also starts each half of a valid pair (characters beyond U+FFFF): the walk leaves those as they are.
    if "\\u0000" in text or "\\ud" in text:
        return json.dumps(json_compatible(value), allow_nan=False, separators=(",", ":"))
    return text
