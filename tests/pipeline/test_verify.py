"""Verify: every stored object is read back and checked; missing, corrupt and orphaned objects are found;
orphans are removed only when asked, and never those of an upload in progress.

Run on each database (SQLite, PostgreSQL) and each storage (local folder, S3 on moto).
"""

import hashlib
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa

from imaging_db.database.db_ops import Database
from imaging_db.errors import InputError, NotFoundError, StorageError
from imaging_db.example_data import write_mm_ometiff
from imaging_db.images.png import decode_png
from imaging_db.pipeline.upload import upload_from_csv
from imaging_db.pipeline.verify import (
    REGISTERED_MEANWHILE,
    ROWS_ELSEWHERE,
    UPLOAD_IN_PROGRESS,
    Verifier,
    verify_datasets,
)
from tests.cli.test_end_to_end import ID, SHAPE, write_config, write_csv

FILE_ID = "ML-2018-11-07-09-35-54-0020"
STRAY_ID = "ML-2018-11-07-09-35-54-0099"  # never registered
OTHER_ID = "ML-2018-11-07-09-35-54-0030"
FRAMES = f"raw_frames/{ID}/"
FILES = f"raw_files/{FILE_ID}/"


def upload_frames(tmp_path, login_file, storage_spec, serial=ID, nbr_slices=2, **settings):
    folder = tmp_path / f"acq-{serial}"
    write_mm_ometiff(folder, ["GFP", "RFP"], nbr_slices, 1, 1, shape=SHAPE)
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff", **settings)
    csv_path = write_csv(tmp_path, [{"dataset_id": serial, "file_name": str(folder)}], name=f"{serial}.csv")
    (result,) = upload_from_csv(csv_path, login_file, config, progress=False)
    assert result.ok, result.error


def upload_file(tmp_path, login_file, storage_spec, serial=FILE_ID):
    source = tmp_path / "Plate1_17_SEC61B_stack_PyProcessed.tif"
    source.write_bytes(np.random.default_rng(5).bytes(300_000))
    config = write_config(tmp_path, storage_spec, upload_type="file")
    csv_path = write_csv(tmp_path, [{"dataset_id": serial, "file_name": str(source)}], name=f"{serial}.csv")
    (result,) = upload_from_csv(csv_path, login_file, config, progress=False)
    assert result.ok, result.error
    return source


@pytest.fixture
def uploaded(tmp_path, db_url, login_file, storage_spec, storage):
    """A frames dataset (4 frames) and a file dataset; yields (database, storage, file source)."""
    upload_frames(tmp_path, login_file, storage_spec)
    source = upload_file(tmp_path, login_file, storage_spec)
    database = Database(db_url, create=False)
    yield database, storage, source
    database.dispose()


def verify(database, storage, serials=None, **kwargs):
    kwargs.setdefault("nbr_workers", 2)
    return Verifier(database, storage, progress=False, nbr_workers=kwargs.pop("nbr_workers")).verify(serials, **kwargs)


def leave_partial(storage, prefix: str, name: str = "big.tif") -> str:
    """Leave an unfinished write under ``prefix`` as a killed upload would; return how partials() names it."""
    if hasattr(storage, "root"):
        folder = storage.root.joinpath(*prefix.strip("/").split("/"))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".0123456789abcdef.partial").write_bytes(b"half a PNG")
        return prefix + ".0123456789abcdef.partial"
    storage.client.create_multipart_upload(Bucket=storage.bucket, Key=prefix + name)
    return prefix + name


def replace(storage, key: str, data: bytes) -> None:
    """Storage never overwrites: delete, then store other bytes."""
    storage.delete(key)
    storage.put(key, data)


def snapshot(storage) -> tuple[set, set]:
    objects = set(storage.list("raw_frames/")) | set(storage.list("raw_files/"))
    partials = set(storage.partials("raw_frames/")) | set(storage.partials("raw_files/"))
    return objects, partials


def test_clean_datasets_verify(uploaded):
    database, storage, source = uploaded
    report = verify(database, storage)
    assert report.ok and report.all_datasets and report.orphan_prefixes == []
    frames, file = report.datasets
    assert (frames.dataset_serial, frames.frames, frames.nbr_objects, frames.verified) == (ID, True, 4, 4)
    assert (file.dataset_serial, file.frames, file.nbr_objects, file.verified) == (FILE_ID, False, 1, 1)
    for dataset in report.datasets:
        assert dataset.ok and not (dataset.missing or dataset.corrupt or dataset.orphaned or dataset.partials)
    assert frames.summary() == f"{ID}: 4 frames verified, 0 missing, 0 corrupt, 0 orphaned"
    assert file.summary() == f"{FILE_ID}: 1 file verified, 0 missing, 0 corrupt, 0 orphaned"
    assert report.totals()["verified"] == 5 and report.summary_lines()[-1].endswith("; OK")
    # One id only: only that dataset.
    only = verify(database, storage, [FILE_ID])
    assert [d.dataset_serial for d in only.datasets] == [FILE_ID] and only.ok and not only.all_datasets


def test_missing_and_corrupt_objects_are_reported(uploaded):
    database, storage, _source = uploaded
    frame_keys = sorted(storage.list(FRAMES))
    storage.delete(frame_keys[0])
    replace(storage, frame_keys[1], b"not the frame")
    (file_key,) = storage.list(FILES)
    replace(storage, file_key, b"not the file either")
    recorded = {r.file_name: r.sha256 for r in database.get_frames(ID)}
    recorded_file = database.get_dataset(FILE_ID).sha256

    report = verify(database, storage)
    assert not report.ok
    frames, file = report.datasets
    assert frames.missing == [frame_keys[0]]
    (corrupt,) = frames.corrupt
    assert corrupt.key == frame_keys[1]
    assert corrupt.actual_sha256 == hashlib.sha256(b"not the frame").hexdigest()
    assert corrupt.recorded_sha256 == recorded[frame_keys[1].rsplit("/", 1)[1]]
    assert frames.verified == 2 and frames.orphaned == []
    (file_corrupt,) = file.corrupt
    assert (file_corrupt.key, file_corrupt.recorded_sha256, file_corrupt.actual_sha256) == (
        file_key, recorded_file, hashlib.sha256(b"not the file either").hexdigest())
    assert file.verified == 0
    text = "\n".join(report.summary_lines())
    assert f"missing: {frame_keys[0]}" in text
    assert (f"corrupt: {frame_keys[1]}: sha256 {corrupt.actual_sha256} does not match the recorded "
            f"{corrupt.recorded_sha256}") in text
    assert f"{ID}: 2 frames verified, 1 missing, 1 corrupt, 0 orphaned" in text
    assert text.endswith("PROBLEMS FOUND")


def test_orphans_are_reported(uploaded):
    database, storage, _source = uploaded
    storage.put(FRAMES + "extra.png", b"no row names me")
    partial = leave_partial(storage, FRAMES)
    storage.put(f"raw_files/{ID}/stray.tif", b"a frames dataset has no file")
    storage.put(f"raw_frames/{STRAY_ID}/im_c000_z000_t000_p000.png", b"no dataset")
    stray_partial = leave_partial(storage, f"raw_files/{STRAY_ID}/")

    # One id: its own prefixes only.
    by_id = verify(database, storage, [ID])
    (frames,) = by_id.datasets
    assert frames.orphaned == sorted([FRAMES + "extra.png", f"raw_files/{ID}/stray.tif"])
    assert frames.partials == [partial]
    assert frames.verified == 4 and not frames.missing and not frames.corrupt
    assert by_id.orphan_prefixes == [] and not by_id.ok

    everything = verify(database, storage)
    assert not everything.ok
    assert everything.datasets[0].orphaned == frames.orphaned and everything.datasets[1].ok
    prefixes = {o.prefix: o for o in everything.orphan_prefixes}
    assert set(prefixes) == {f"raw_frames/{STRAY_ID}/", f"raw_files/{STRAY_ID}/"}
    assert prefixes[f"raw_frames/{STRAY_ID}/"].objects == [f"raw_frames/{STRAY_ID}/im_c000_z000_t000_p000.png"]
    assert prefixes[f"raw_files/{STRAY_ID}/"].partials == [stray_partial]
    assert all(o.dataset_serial == STRAY_ID and not o.ok for o in prefixes.values())
    totals = everything.totals()
    assert (totals["orphaned"], totals["orphan_prefixes"], totals["missing"], totals["corrupt"]) == (5, 2, 0, 0)
    text = "\n".join(everything.summary_lines())
    assert f"{ID}: 4 frames verified, 0 missing, 0 corrupt, 3 orphaned" in text
    assert f"orphaned: raw_frames/{STRAY_ID}/im_c000_z000_t000_p000.png (no dataset {STRAY_ID})" in text
    # Reporting never removes anything.
    assert FRAMES + "extra.png" in storage.list(FRAMES + "extra.png") and storage.partials(FRAMES) == [partial]


def test_remove_orphans_removes_exactly_the_orphans(uploaded):
    database, storage, _source = uploaded
    frame_keys = sorted(storage.list(FRAMES))
    replace(storage, frame_keys[0], b"corrupt, but named by a row")
    orphans = {FRAMES + "extra.png", f"raw_files/{ID}/stray.tif",
               f"raw_frames/{STRAY_ID}/a.png", f"raw_frames/{STRAY_ID}/b.png"}
    for key in orphans:
        storage.put(key, b"orphan")
    partials = {leave_partial(storage, FRAMES), leave_partial(storage, FILES),
                leave_partial(storage, f"raw_files/{STRAY_ID}/")}
    objects_before, partials_before = snapshot(storage)
    assert partials_before == partials

    report = verify(database, storage, remove_orphans=True)
    objects_after, partials_after = snapshot(storage)
    assert objects_after == objects_before - orphans
    assert partials_after == set()
    removed = {k for d in report.datasets for k in d.removed} | {k for o in report.orphan_prefixes for k in o.removed}
    assert removed == orphans | partials
    # Every object a row names is still there, the corrupt one too.
    assert set(frame_keys) <= objects_after and storage.get(frame_keys[0]) == b"corrupt, but named by a row"
    assert not report.ok and [d.ok for d in report.datasets] == [False, True]  # the corrupt frame remains
    assert all(o.ok for o in report.orphan_prefixes)

    again = verify(database, storage)
    assert again.totals()["orphaned"] == 0 and again.orphan_prefixes == []
    assert [len(d.corrupt) for d in again.datasets] == [1, 0]


def test_remove_orphans_skips_an_upload_in_progress(uploaded):
    database, storage, _source = uploaded
    stray = f"raw_frames/{STRAY_ID}/im_c000_z000_t000_p000.png"
    storage.put(stray, b"being uploaded")
    stray_partial = leave_partial(storage, f"raw_frames/{STRAY_ID}/")
    storage.put(FRAMES + "extra.png", b"orphan")
    with database.claim(STRAY_ID):
        report = verify(database, storage, remove_orphans=True)
    (orphan,) = report.orphan_prefixes
    assert orphan.skipped == UPLOAD_IN_PROGRESS and orphan.removed == [] and orphan.ok
    assert stray in storage.list(stray) and storage.partials(f"raw_frames/{STRAY_ID}/") == [stray_partial]
    assert FRAMES + "extra.png" not in storage.list(FRAMES + "extra.png")  # the other orphans went
    assert report.ok
    assert f"{UPLOAD_IN_PROGRESS}: raw_frames/{STRAY_ID}/" in "\n".join(report.summary_lines())
    # A registered dataset whose id is claimed (a refused upload of it, say) keeps its orphans too.
    storage.put(FRAMES + "extra2.png", b"orphan")
    with database.claim(ID):
        held = verify(database, storage, [ID], remove_orphans=True)
    assert held.datasets[0].skipped == UPLOAD_IN_PROGRESS and not held.ok
    assert FRAMES + "extra2.png" in storage.list(FRAMES + "extra2.png")


def test_remove_orphans_leaves_a_prefix_registered_meanwhile(uploaded, monkeypatch):
    """Under the claim the id is looked up again: committed since the listing, it is not an orphan."""
    database, storage, _source = uploaded
    stray = f"raw_frames/{STRAY_ID}/im_c000_z000_t000_p000.png"
    storage.put(stray, b"just committed")
    monkeypatch.setattr(database, "existing_serials", lambda serials: set(serials))
    report = verify(database, storage, remove_orphans=True)
    assert report.orphan_prefixes[0].skipped == REGISTERED_MEANWHILE and stray in storage.list(stray)
    assert report.ok


class CountingStorage:
    """Wraps a storage; counts the gets in flight at once and can fail one key."""

    def __init__(self, storage, fail_key=None):
        self.inner = storage
        self.fail_key = fail_key
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.gets = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get(self, key):
        with self.lock:
            self.in_flight += 1
            self.gets += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(0.01)
            if key == self.fail_key:
                raise StorageError(f"cannot read {key!r}: Permission denied")
            return self.inner.get(key)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.mark.parametrize("storage_spec", ["local"], indirect=True)
def test_objects_in_memory_stay_bounded(tmp_path, db_url, login_file, storage_spec, storage):
    upload_frames(tmp_path, login_file, storage_spec, nbr_slices=12)  # 24 frames
    database = Database(db_url, create=False)
    try:
        counting = CountingStorage(storage)
        verifier = Verifier(database, counting, nbr_workers=3, progress=False)
        assert verifier.threads == 3
        report = verifier.verify([ID])
        assert report.ok and report.datasets[0].verified == 24 and counting.gets == 24
        assert 2 <= counting.peak <= verifier.threads  # in parallel, never more than the bound
    finally:
        database.dispose()


@pytest.mark.parametrize("storage_spec", ["local"], indirect=True)
def test_unreadable_object_is_reported(uploaded):
    database, storage, _source = uploaded
    key = sorted(storage.list(FRAMES))[2]
    report = verify(database, CountingStorage(storage, fail_key=key), [ID])
    (unreadable,) = report.datasets[0].unreadable
    assert unreadable.key == key and "Permission denied" in unreadable.error
    assert report.datasets[0].verified == 3 and not report.ok


@pytest.mark.parametrize("storage_spec", ["local"], indirect=True)
def test_rows_of_the_original_imagingdb(uploaded, db_url):
    """A row holding the sha256 of the pixels (the original's rule) verifies; an empty one is not checked."""
    database, storage, _source = uploaded
    keys = sorted(storage.list(FRAMES))
    names = [k.rsplit("/", 1)[1] for k in keys]
    pixel_digest = hashlib.sha256(decode_png(storage.get(keys[0])).tobytes()).hexdigest()
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE frames SET sha256 = :s WHERE file_name = :n"), {"s": pixel_digest, "n": names[0]})
        conn.execute(sa.text("UPDATE frames SET sha256 = '' WHERE file_name = :n"), {"n": names[1]})
    engine.dispose()
    (report,) = verify(database, storage, [ID]).datasets
    assert (report.verified, report.unchecked, report.corrupt) == (3, 1, [])
    assert report.ok and "1 without a recorded checksum" in report.summary()


def test_bad_input(uploaded, login_file, storage_spec):
    database, storage, _source = uploaded
    with pytest.raises(NotFoundError, match=f"dataset {STRAY_ID} is not in the database .*nothing verified"):
        verify(database, storage, [ID, STRAY_ID])
    with pytest.raises(InputError, match="invalid dataset id 'ML-2018'"):
        verify(database, storage, ["ML-2018"])
    with pytest.raises(InputError, match="nbr_workers must be at least 1"):
        verify_datasets([ID], login_file, nbr_workers=-1, **storage_spec)
    report = verify_datasets([ID], login_file, nbr_workers=1, progress=False, **storage_spec)
    assert report.ok and report.datasets[0].verified == 4


@pytest.mark.parametrize("storage_spec", ["local"], indirect=True)
def test_empty_database_and_storage(tmp_path, db_url, storage):
    """--all on a database without tables: nothing registered, every prefix is an orphan."""
    database = Database(db_url)
    try:
        assert verify(database, storage).ok
        storage.put(f"raw_frames/{STRAY_ID}/x.png", b"x")
        report = verify(database, storage, remove_orphans=True)
        assert report.orphan_prefixes[0].removed == [f"raw_frames/{STRAY_ID}/x.png"]
        assert storage.list("raw_frames/") == {}
    finally:
        database.dispose()


def set_storage_dir(db_url, serial: str, storage_dir: str) -> None:
    """Edit a frames dataset's storage_dir by hand, as a lab's database may have been."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE frames_global SET storage_dir = :d WHERE dataset_id = "
                             "(SELECT id FROM data_set WHERE dataset_serial = :s)"), {"d": storage_dir, "s": serial})
    engine.dispose()


@pytest.mark.parametrize("storage_dir", ["raw_frames", f"raw_frames/{OTHER_ID}"])
def test_a_wrong_storage_dir_never_costs_another_dataset_its_objects(tmp_path, db_url, login_file, storage_spec,
                                                                     storage, storage_dir):
    """A row pointing at ``raw_frames`` or another dataset's folder: nothing of the other dataset is an orphan,
    and its own folder's objects (perhaps its real frames) are reported but not removed."""
    upload_frames(tmp_path, login_file, storage_spec)
    upload_frames(tmp_path, login_file, storage_spec, serial=OTHER_ID)
    set_storage_dir(db_url, ID, storage_dir)
    other_keys = set(storage.list(f"raw_frames/{OTHER_ID}/"))
    own_keys = sorted(storage.list(FRAMES))
    assert len(other_keys) == len(own_keys) == 4
    database = Database(db_url, create=False)
    try:
        for serials in ([ID], None):
            report = verify(database, storage, serials, remove_orphans=True)
            mine = report.datasets[0]
            assert mine.dataset_serial == ID and mine.storage_dir == storage_dir
            assert mine.orphaned == own_keys and mine.removed == []
            assert mine.skipped == ROWS_ELSEWHERE.format(storage_dir) and not report.ok
            assert report.orphan_prefixes == []
            if serials is None:
                other = report.datasets[1]
                assert other.dataset_serial == OTHER_ID and other.ok and other.verified == 4
            assert set(storage.list(f"raw_frames/{OTHER_ID}/")) == other_keys
            assert sorted(storage.list(FRAMES)) == own_keys
        if storage_dir == "raw_frames":
            assert mine.missing == [f"raw_frames/{k.rsplit('/', 1)[1]}" for k in own_keys]
        assert f"not removed: the orphans of {ID} (its rows point elsewhere" in "\n".join(report.summary_lines())
    finally:
        database.dispose()


def test_objects_a_row_names_under_an_unregistered_prefix_are_not_orphans(uploaded, db_url):
    """A dataset moved under ``raw_frames/<X>/`` of no registered X: only what its rows do not name is orphaned."""
    database, storage, _source = uploaded
    moved = {}
    for key in sorted(storage.list(FRAMES)):
        moved[f"raw_frames/{STRAY_ID}/{key.rsplit('/', 1)[1]}"] = storage.get(key)
    for key, data in moved.items():
        storage.put(key, data)
    junk = f"raw_frames/{STRAY_ID}/junk.png"
    storage.put(junk, b"no row names me")
    set_storage_dir(db_url, ID, f"raw_frames/{STRAY_ID}")

    report = verify(database, storage, remove_orphans=True)
    frames = report.datasets[0]
    assert frames.verified == 4 and not frames.missing and not frames.corrupt
    (orphan,) = report.orphan_prefixes
    assert (orphan.prefix, orphan.objects, orphan.removed) == (f"raw_frames/{STRAY_ID}/", [junk], [junk])
    assert set(storage.list(f"raw_frames/{STRAY_ID}/")) == set(moved)


def test_a_storage_dir_outside_the_storage_is_reported_not_raised(uploaded, db_url):
    database, storage, _source = uploaded
    set_storage_dir(db_url, ID, "../elsewhere")
    before = snapshot(storage)
    report = verify(database, storage, remove_orphans=True)
    frames, file = report.datasets
    assert frames.error.startswith(f"dataset {ID}: the database gives storage_dir '../elsewhere', which is not a "
                                   "key prefix inside the storage")
    assert (frames.verified, frames.orphaned, frames.removed) == (0, [], [])
    assert file.ok and file.verified == 1 and not report.ok
    assert report.orphan_prefixes == []  # its own folder is still its own, not a prefix of no dataset
    assert snapshot(storage) == before
    text = "\n".join(report.summary_lines())
    assert f"{ID}: 0 frames verified, 0 missing, 0 corrupt, 0 orphaned, NOT VERIFIED" in text
    assert "1 dataset(s) not verified; PROBLEMS FOUND" in text
    assert report.to_dict()["datasets"][0]["error"] == frames.error
