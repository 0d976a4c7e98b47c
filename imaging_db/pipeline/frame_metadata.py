"""The frames' own metadata as flat columns, for ``frames_meta.csv`` and the Python API's ``frames_meta``.

A frame's ``metadata_json`` (e.g. Micro-Manager's ``ElapsedTime-ms``,
``ZPositionUm``, ``Exposure-ms``) becomes one column per key: nested keys are
joined with dots (``{"Camera": {"Binning": 2}}`` gives ``Camera.Binning``),
lists are kept as their JSON text. A key that is also one of the frames
columns (``channel_idx``, ``file_name``...) is named ``metadata_json.<key>``
so that it cannot hide that column. The metadata columns come after the
frames columns in alphabetical order (case aside): the order the keys were
recorded in is not kept by PostgreSQL's JSONB, and the same download must give
the same file from either database. A frame without a key leaves that cell empty.
"""

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from imaging_db.database.records import FRAME_COLUMNS, FRAME_COLUMNS_WITHOUT_METADATA, FrameRow
from imaging_db.errors import StorageError

# The prefix of the metadata columns whose key is also a frames column.
METADATA_PREFIX = "metadata_json."


def flatten_metadata(meta: dict | None) -> dict[str, Any]:
    """One frame's metadata as ``{column: value}``: nested keys dotted, lists (and empty dicts) as JSON text.

    Values stay str, int, float, bool or None.
    """
    flat: dict[str, Any] = {}
    if not isinstance(meta, dict):
        return flat

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        elif isinstance(value, (dict, list)):
            flat[prefix] = json.dumps(value, ensure_ascii=False)
        else:
            flat[prefix] = value

    for key, value in meta.items():
        key = str(key)
        walk(METADATA_PREFIX + key if key in FRAME_COLUMNS else key, value)
    return flat


def column_order(keys: Iterable[str]) -> list[str]:
    """The metadata columns in the order they are written: alphabetical, case aside (then case)."""
    return sorted(keys, key=lambda key: (key.casefold(), key))


def csv_text(value: Any) -> str:
    """A metadata value as CSV text: text as it is, other values as JSON (``true``, ``null``, ``1.5``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def write_frames_meta_csv(path: Path, rows: Sequence[FrameRow], metadata: Iterable[dict | None] | None,
                          what: str) -> None:
    """Write ``frames_meta.csv``: one line per row, its frames columns, then (if given) its flattened metadata.

    ``metadata`` yields each row's metadata in the order of ``rows``. It is
    read once, as it streams: each frame's flattened metadata goes to a
    spool file beside ``path`` (JSON lines) while the columns are gathered,
    then the CSV is written from the spool. Memory holds one frame's metadata
    and the column names, whatever the number of frames.

    Raises
    ------
    StorageError
        If the file cannot be written (``what`` names the dataset in the message).
    """
    columns = list(FRAME_COLUMNS_WITHOUT_METADATA)
    spool = path.with_name(f".{path.name}.spool")
    try:
        if metadata is None:
            with open(path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                writer.writerows([getattr(row, column) for column in columns] for row in rows)
            return
        keys: dict[str, None] = {}
        with open(spool, "w", encoding="utf-8") as handle:
            for meta in metadata:
                flat = flatten_metadata(meta)
                keys.update(dict.fromkeys(flat))
                handle.write(json.dumps(flat, ensure_ascii=False))
                handle.write("\n")
        keys = column_order(keys)
        with open(spool, encoding="utf-8") as source, open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns + keys)
            for row, line in zip(rows, source, strict=True):
                flat = json.loads(line)
                writer.writerow([getattr(row, column) for column in columns]
                                + [csv_text(flat[key]) if key in flat else "" for key in keys])
    except OSError as exc:
        raise StorageError(f"{what}: cannot write {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        if metadata is not None:
            close = getattr(metadata, "close", None)
            if close is not None:  # a generator left half-read (an error) lets go of its database connection
                close()
            try:
                os.unlink(spool)
            except FileNotFoundError:
                pass


def metadata_table(rows: Sequence[FrameRow]) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of the Python API's ``frames_meta(frame_metadata=True)``.

    The frames columns (``metadata_json`` included), then the metadata
    columns in the order of ``frames_meta.csv``; each row a dict of them (a
    key a frame lacks is absent).
    """
    keys: dict[str, None] = {}
    records = []
    for row in rows:
        flat = flatten_metadata(row.metadata_json)
        keys.update(dict.fromkeys(flat))
        records.append({**{column: getattr(row, column) for column in FRAME_COLUMNS}, **flat})
    return list(FRAME_COLUMNS) + column_order(keys), records
