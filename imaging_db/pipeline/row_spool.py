"""Frame rows kept in a temporary file until the dataset's one transaction.

A dataset is registered in one commit after all its frames are stored, so its
frame rows must wait somewhere. Each row carries the frame's metadata (a few
KB of JSON for Micro-Manager), so keeping them in a list made memory grow with
the number of frames: about 5 KB per frame, 500 MB for a 100,000-frame
time-lapse. The spool writes each row to an anonymous temporary file as it
arrives and keeps only small integer columns in memory (the sort key and where
the row lies), then reads the rows back in (position, time, channel, slice)
order while the database takes them.
"""

import array
import pickle
import tempfile
from typing import Iterator

import numpy as np

from imaging_db.errors import StorageError


class RowSpool:
    """Collects frame rows on disk; yields them back sorted by (pos_idx, time_idx, channel_idx, slice_idx)."""

    def __init__(self):
        try:
            self._file = tempfile.TemporaryFile(prefix="imaging_db_rows_")
        except OSError as exc:
            raise StorageError(f"cannot create a temporary file in {tempfile.gettempdir()} for the frame rows "
                               f"({exc.strerror or exc}); set TMPDIR to a writable folder") from None
        # Per row: the four indices, then offset and length of its pickle in the file.
        self._columns = {name: array.array("q") for name in ("p", "t", "c", "z", "offset", "length")}
        self._end = 0
        self.channels: set[int] = set()
        self.slices: set[int] = set()
        self.times: set[int] = set()
        self.positions: set[int] = set()

    def __len__(self) -> int:
        return len(self._columns["offset"])

    def add(self, row: dict) -> None:
        """Append a row (a dict with at least the four ``*_idx`` keys).

        Raises
        ------
        StorageError
            If the temporary file cannot be written (e.g. its disk is full).
        """
        data = pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._file.write(data)
        except OSError as exc:
            raise StorageError(f"cannot keep frame rows in a temporary file in {tempfile.gettempdir()} "
                               f"({exc.strerror or exc}); set TMPDIR to a folder with space") from None
        c, z, t, p = row["channel_idx"], row["slice_idx"], row["time_idx"], row["pos_idx"]
        for name, value in (("p", p), ("t", t), ("c", c), ("z", z), ("offset", self._end), ("length", len(data))):
            self._columns[name].append(value)
        self._end += len(data)
        self.channels.add(c)
        self.slices.add(z)
        self.times.add(t)
        self.positions.add(p)

    def sorted_rows(self) -> Iterator[dict]:
        """The rows, read back from the file in (position, time, channel, slice) order."""
        self._file.flush()
        columns = {name: np.frombuffer(values, dtype=np.int64) if len(values) else np.empty(0, np.int64)
                   for name, values in self._columns.items()}
        # lexsort sorts by the last key first.
        order = np.lexsort((columns["z"], columns["c"], columns["t"], columns["p"]))
        offsets, lengths = columns["offset"][order], columns["length"][order]
        for offset, length in zip(offsets.tolist(), lengths.tolist(), strict=True):
            self._file.seek(offset)
            yield pickle.loads(self._file.read(length))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RowSpool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
