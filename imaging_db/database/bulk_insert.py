"""Bulk insert of a dataset's frames rows: one streamed COPY on PostgreSQL, batched executemany elsewhere.

Rows are read once from an iterator and sent in bounded batches, so memory
does not grow with the number of frames.
"""

import io
from typing import Iterator

import sqlalchemy as sa

from imaging_db.database.records import FRAME_COLUMNS_WITHOUT_METADATA
from imaging_db.faults import fault_point
from imaging_db.json_text import to_json_text

# The frames columns written when a dataset is registered (COPY or INSERT), in this order.
_COPY_COLUMNS = ("frames_global_id", *FRAME_COLUMNS_WITHOUT_METADATA, "metadata_json")
# Frames rows are written in batches of this many rows, so the text sent stays bounded.
_BATCH_ROWS = 5000
# A batch also ends once its rows' metadata reaches this many characters, so that the
# rows in flight stay a few MB however much metadata each frame carries.
_BATCH_METADATA_CHARS = 2 * 2**20
_COPY_CHUNK = 2**20  # characters handed to libpq per read
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _copy_field(value) -> str:
    """One field of PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return str(value)


class _CopyReader(io.TextIOBase):
    """A file-like object that formats frames rows in COPY text format as psycopg2 reads them.

    Rows are taken from an iterator and formatted a batch at a time (see
    ``_batches``), so neither the rows nor the text are held all at once.
    """

    def __init__(self, frames_global_id: int, frames: Iterator[dict]):
        self.batches = _batches(frames, frames_global_id)
        self.text = ""
        self.offset = 0

    def readable(self) -> bool:
        return True

    def _format_batch(self) -> str:
        batch = next(self.batches, [])
        if batch:
            fault_point("db.frames_batch")
        lines = ["\t".join(map(_copy_field, (row[c] for c in _COPY_COLUMNS))) for row in batch]
        return "\n".join(lines) + "\n" if lines else ""

    def read(self, size: int = -1) -> str:
        if self.offset >= len(self.text):
            self.text, self.offset = self._format_batch(), 0
            if not self.text:
                return ""
        end = len(self.text) if size is None or size < 0 else self.offset + size
        chunk = self.text[self.offset:end]
        self.offset += len(chunk)
        return chunk


def _batches(frames: Iterator[dict], frames_global_id: int) -> Iterator[list[dict]]:
    """Group rows for the database: at most _BATCH_ROWS rows or _BATCH_METADATA_CHARS of metadata.

    Each row is given its ``frames_global_id`` and its metadata as JSON text.
    """
    batch, chars = [], 0
    for row in frames:
        metadata = _json_column(row["metadata_json"])
        batch.append({**row, "frames_global_id": frames_global_id, "metadata_json": metadata})
        chars += len(metadata) if metadata else 0
        if len(batch) >= _BATCH_ROWS or chars >= _BATCH_METADATA_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _json_column(value) -> str | None:
    """Rows may carry metadata as a dict or as JSON text made by :func:`to_json_text`."""
    if value is None or isinstance(value, str):
        return value
    return to_json_text(value)


def insert_frame_rows(conn: sa.Connection, frames_global_id: int, frames: Iterator[dict]) -> None:
    """Bulk-insert frames rows: one streamed COPY on PostgreSQL, executemany by batch elsewhere."""
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()
        sql = f"COPY frames ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
        try:
            # Frame metadata is mostly toasted (compressed) JSONB: lz4 compresses it several
            # times faster than the default pglz. For this transaction only; readers need nothing.
            cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
            row = cursor.fetchone()
            if row and row[0]:
                cursor.execute("SET LOCAL default_toast_compression = 'lz4'")
            # One streamed COPY: the server parses rows while the next ones are formatted here.
            cursor.copy_expert(sql, _CopyReader(frames_global_id, frames), size=_COPY_CHUNK)
        except conn.dialect.loaded_dbapi.Error as exc:
            # Raw DBAPI errors become SQLAlchemy's, so callers see one kind of error.
            raise sa.exc.DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()
        return
    statement = sa.text(
        f"INSERT INTO frames ({', '.join(_COPY_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COPY_COLUMNS)})"
    )
    for batch in _batches(frames, frames_global_id):
        fault_point("db.frames_batch")
        conn.execute(statement, batch)
