"""The one read path: objects fetched in parallel, each checked against its sha256, yielded in row order."""

import datetime
import hashlib
import threading

import pytest

from imaging_db.database.records import DatasetInfo, FrameRow
from imaging_db.errors import IntegrityError, NotFoundError
from imaging_db.filestorage.local_storage import LocalDataStorage
from imaging_db.pipeline.frame_reader import read_frames

ID = "ML-2018-11-07-09-35-54-0010"
PREFIX = f"raw_frames/{ID}"


def _dataset(storage_dir=PREFIX) -> DatasetInfo:
    return DatasetInfo(ID, frames=True, date_time=datetime.datetime(2018, 11, 7), description=None,
                       microscope=None, parent_serial=None, storage_dir=storage_dir)


def _stored(storage, count=30) -> list[FrameRow]:
    rows = []
    for z in range(count):
        name = f"im_c000_z{z:03d}_t000_p000.png"
        data = f"frame {z} ".encode() * (z + 1)
        storage.put(f"{PREFIX}/{name}", data)
        rows.append(FrameRow(0, z, 0, 0, "GFP", name, hashlib.sha256(data).hexdigest()))
    return rows


class CountingStorage(LocalDataStorage):
    """A folder that records how many gets run at once, each taking a moment."""

    def __init__(self, root):
        super().__init__(root)
        self.lock, self.running, self.most = threading.Lock(), 0, 0

    def get(self, key):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            threading.Event().wait(0.002)
            return super().get(key)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("nbr_workers", [1, 4])
def test_rows_come_back_in_order_with_their_bytes(tmp_path, nbr_workers):
    storage = CountingStorage(tmp_path)
    rows = _stored(storage)
    got = list(read_frames(storage, _dataset(), rows, nbr_workers))
    assert [row for row, _ in got] == rows
    assert all(data == f"frame {row.slice_idx} ".encode() * (row.slice_idx + 1) for row, data in got)
    assert storage.most <= nbr_workers and (nbr_workers == 1 or storage.most > 1)


def test_a_corrupt_object_stops_the_read_naming_it(tmp_path):
    storage = LocalDataStorage(tmp_path)
    rows = _stored(storage, 5)
    storage.delete(f"{PREFIX}/{rows[3].file_name}")
    storage.put(f"{PREFIX}/{rows[3].file_name}", b"not that frame")
    reader = read_frames(storage, _dataset(), rows, 2)
    assert [row for row, _ in (next(reader), next(reader), next(reader))] == rows[:3]
    with pytest.raises(IntegrityError, match=rf"^dataset {ID}: frame {rows[3].file_name} in local:.* is corrupt: "
                                             rf"sha256 {hashlib.sha256(b'not that frame').hexdigest()} does not "
                                             rf"match the recorded {rows[3].sha256}$"):
        next(reader)


def test_a_missing_object_is_not_found(tmp_path):
    storage = LocalDataStorage(tmp_path)
    rows = _stored(storage, 3)
    storage.delete(f"{PREFIX}/{rows[1].file_name}")
    with pytest.raises(NotFoundError):
        list(read_frames(storage, _dataset(), rows, 2))


@pytest.mark.parametrize("storage_dir, name, problem", [
    (PREFIX, "../../escape.png", "frame file name '../../escape.png', which is not a plain file name"),
    ("../outside", "im.png", "storage_dir '../outside', which is not a key prefix inside the storage"),
])
def test_unsafe_names_from_the_database_are_refused_before_any_read(tmp_path, storage_dir, name, problem):
    storage = CountingStorage(tmp_path)
    rows = _stored(storage, 2) + [FrameRow(0, 9, 0, 0, "GFP", name, "0" * 64)]
    with pytest.raises(IntegrityError, match=rf"^dataset {ID}: the database gives {problem}"):
        next(read_frames(storage, _dataset(storage_dir), rows, 2))
    assert storage.most == 0


def test_then_runs_on_the_workers_and_its_result_is_yielded(tmp_path):
    storage = LocalDataStorage(tmp_path)
    rows = _stored(storage, 8)
    threads = set()

    def size(row, data):
        threads.add(threading.current_thread().name)
        return row.slice_idx, len(data)

    got = list(read_frames(storage, _dataset(), rows, 3, then=size))
    assert got == [(row, (row.slice_idx, len(f"frame {row.slice_idx} ".encode()) * (row.slice_idx + 1)))
                   for row in rows]
    assert threads and all(name.startswith("imaging_db-read") for name in threads)
