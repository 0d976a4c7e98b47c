"""Serialize metadata to JSON text that every database accepts."""

import json
import math


def json_compatible(value):
    """Return ``value`` with NaN/Infinity as None and NUL characters removed.

    PostgreSQL's JSON types refuse both (a whole dataset would fail at its final
    commit), and they are not valid JSON for other readers of SQLite either; doing
    it for every backend keeps SQLite and PostgreSQL storing the same metadata.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {json_compatible(k) if isinstance(k, str) else k: json_compatible(v) for k, v in value.items()}
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
    if "\\u0000" in text:
        return json.dumps(json_compatible(value), allow_nan=False, separators=(",", ":"))
    return text
