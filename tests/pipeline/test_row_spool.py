"""RowSpool: frame rows wait on disk for the dataset's commit, and come back whole and sorted."""

import random
import tracemalloc

import pytest

from imaging_db.errors import StorageError
from imaging_db.pipeline import row_spool
from imaging_db.pipeline.row_spool import RowSpool


def _row(c, z, t, p, metadata_bytes=100):
    return {"channel_idx": c, "slice_idx": z, "time_idx": t, "pos_idx": p, "channel_name": f"ch{c}",
            "file_name": f"im_c{c:03d}_z{z:03d}_t{t:03d}_p{p:03d}.png", "sha256": f"{c}{z}{t}{p}".ljust(64, "0"),
            "metadata_json": '{"Note":"' + "µ" * metadata_bytes + f'","z":{z}}}'}


def test_rows_come_back_whole_sorted_by_position_time_channel_slice():
    rows = [_row(c, z, t, p) for p in range(2) for t in range(3) for c in range(2) for z in range(4)]
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    with RowSpool() as spool:
        for row in shuffled:
            spool.add(row)
        assert len(spool) == len(rows)
        assert list(spool.sorted_rows()) == rows
        assert (spool.channels, spool.slices, spool.times, spool.positions) == ({0, 1}, set(range(4)), {0, 1, 2},
                                                                                 {0, 1})


def test_empty_spool():
    with RowSpool() as spool:
        assert len(spool) == 0 and list(spool.sorted_rows()) == []


def test_memory_does_not_grow_with_the_rows():
    """20,000 rows with 3 KB of metadata each (60 MB) are held in well under a tenth of that."""
    tracemalloc.start()
    try:
        with RowSpool() as spool:
            for i in range(20_000):
                spool.add(_row(i % 4, (i // 4) % 50, i // 200, 0, metadata_bytes=1500))
            _, peak = tracemalloc.get_traced_memory()
            assert sum(1 for _ in spool.sorted_rows()) == 20_000
    finally:
        tracemalloc.stop()
    assert peak < 3_000_000, f"peak {peak} bytes for 20,000 spooled rows"


def test_a_full_disk_is_a_storage_error(monkeypatch):
    class FullFile:
        def write(self, data):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(row_spool.tempfile, "TemporaryFile", lambda **kwargs: FullFile())
    with RowSpool() as spool, pytest.raises(StorageError, match=r"cannot keep frame rows in a temporary file "
                                                                 r"in .* \(No space left on device\); set TMPDIR"):
        spool.add(_row(0, 0, 0, 0))
