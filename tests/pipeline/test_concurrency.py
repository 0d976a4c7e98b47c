"""Several uploads at once on one database and one storage, as several acquisition machines would run them.

Each racer is a separate process (forked, so that it starts in milliseconds,
or the real ``data_uploader`` CLI); they meet at a barrier and upload the
same dataset id from different source files. Exactly one may register it;
every stored frame must then be the winner's, bit for bit; the losers exit
with a message and leave no object behind.
"""

import hashlib
import json
import multiprocessing
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from imaging_db.database.db_ops import Database
from imaging_db.errors import StorageError
from imaging_db.example_data import frame_pixels, write_mm_ometiff
from imaging_db.filestorage import DataStorage, make_storage
from imaging_db.images.png import decode_png
from imaging_db.metadata.upload_config import UploadConfig
from imaging_db.metadata.upload_csv import read_upload_csv
from imaging_db.pipeline.upload import Uploader, upload_from_csv
from tests.cli.test_end_to_end import write_config, write_csv

CHANNELS = ["GFP", "RFP"]
SLICES, TIMES = 10, 4  # 80 frames, as in the report of the lost data
SHAPE = (40, 56)
LOSER_MESSAGE = r"is being uploaded by another run \(host \S+ pid \d+\)|is already in the database"

_fork = multiprocessing.get_context("fork")


def _dataset_id(round_nbr: int) -> str:
    return f"RACE-2018-11-07-09-35-54-{round_nbr:04d}"


def _sources(tmp_path: Path, nbr: int) -> list[Path]:
    """One acquisition per racer, each with other pixels (its seed)."""
    folders = []
    for seed in range(1, nbr + 1):
        folder = tmp_path / f"acq_seed{seed}"
        if not folder.exists():
            write_mm_ometiff(folder, CHANNELS, SLICES, TIMES, 1, shape=SHAPE, seed=seed)
        folders.append(folder)
    return folders


def _racer(barrier, delay: float, csv_path: str, login: str, config: str, override: bool, results) -> None:
    import time

    barrier.wait()
    time.sleep(delay)
    try:
        (result,) = upload_from_csv(csv_path, login, config, override=override, progress=False)
        results.put((csv_path, result.ok, result.error))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put((csv_path, False, f"raised {type(exc).__name__}: {exc}"))


def _race(tmp_path: Path, serial: str, sources: list[Path], login_file: Path, config: Path,
          delays: list[float], override: bool = False) -> dict[int, tuple[bool, str | None]]:
    """Start one forked uploader per source at the same moment; return {seed: (ok, error)}."""
    csvs = []
    for seed, source in enumerate(sources, start=1):
        csvs.append(write_csv(tmp_path, [{"dataset_id": serial, "file_name": str(source)}],
                              name=f"{serial}_seed{seed}.csv"))
    barrier = _fork.Barrier(len(sources))
    results = _fork.Queue()
    processes = [
        _fork.Process(target=_racer, args=(barrier, delay, str(csv), str(login_file), str(config), override, results))
        for csv, delay in zip(csvs, delays, strict=True)
    ]
    for process in processes:
        process.start()
    outcome = {}
    for _ in processes:
        csv_path, ok, error = results.get(timeout=120)
        outcome[csvs.index(Path(csv_path)) + 1] = (ok, error)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return outcome


def _check_dataset_is_the_winners(db_url, storage, serial: str, seed: int) -> None:
    """Every row of ``serial`` has its object, whose bytes hash to the row and decode to the winner's pixels."""
    database = Database(db_url)
    try:
        rows = database.get_frames(serial)
    finally:
        database.dispose()
    assert len(rows) == len(CHANNELS) * SLICES * TIMES
    prefix = f"raw_frames/{serial}/"
    stored = storage.list(prefix)
    assert sorted(stored) == sorted(prefix + r.file_name for r in rows), "objects without rows were left behind"
    assert storage.partials(prefix) == []
    for row in rows:
        data = storage.get(prefix + row.file_name)
        assert hashlib.sha256(data).hexdigest() == row.sha256
        expected = frame_pixels(*row.indices, SHAPE, seed=seed)
        np.testing.assert_array_equal(decode_png(data), expected)


def _storage(storage_spec):
    return make_storage(storage_spec["storage"], storage_spec["storage_access"],
                        s3_endpoint_url=storage_spec["s3_endpoint_url"])


# Rounds and the start delays of the racers (seconds): together, and one a little later, so
# that the later one meets the claim, the upload in progress or the committed dataset.
ROUNDS = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.02], [0.02, 0.0], [0.0, 0.05], [0.0, 0.1],
          [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.01, 0.03]]


def test_uploaders_of_one_id_never_overwrite_each_other(tmp_path, db_url, login_file, storage_spec):
    """Two and three uploaders of one id, many rounds: one registers it, its frames are its own, losers leave nothing."""
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff", nbr_workers=2)
    storage = _storage(storage_spec)
    Database(db_url).create_tables()
    sources = _sources(tmp_path, 3)
    claimed_losses = 0
    # moto's S3 server is slow (pure Python): fewer rounds there, of each kind.
    rounds = ROUNDS if storage_spec["storage"] == "local" else [ROUNDS[i] for i in (0, 1, 5, 7)]
    for round_nbr, delays in enumerate(rounds):
        serial = _dataset_id(round_nbr)
        outcome = _race(tmp_path, serial, sources[:len(delays)], login_file, config, delays)
        winners = [seed for seed, (ok, _error) in outcome.items() if ok]
        assert len(winners) == 1, f"round {round_nbr}: {outcome}"
        for seed, (ok, error) in outcome.items():
            if not ok:
                assert serial in error
                assert re.search(LOSER_MESSAGE, error), error
                claimed_losses += "being uploaded by another run" in error
        _check_dataset_is_the_winners(db_url, storage, serial, winners[0])
    # The rounds started together really raced: the claim, not the timing, turned losers away.
    assert claimed_losses >= 2


def _interrupted_upload(tmp_path, db_url, storage, serial: str, source: Path, stored_frames: int) -> None:
    """Leave ``serial`` as a crashed upload would: some frames stored, nothing registered."""

    lock = threading.Lock()

    class FailingAfter:
        writer = DataStorage.writer  # stores through this wrapper's put, not the wrapped storage's

        def __init__(self, inner):
            self.inner, self.puts = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def _count(self):
            with lock:
                if self.puts >= stored_frames:
                    raise StorageError("writing failed: connection reset")
                self.puts += 1

        def put_stream(self, key, pieces):
            self._count()
            return self.inner.put_stream(key, pieces)

        def put(self, key, data):
            self._count()
            return self.inner.put(key, data)

    csv_path = write_csv(tmp_path, [{"dataset_id": serial, "file_name": str(source)}], name="interrupted.csv")
    database = Database(db_url)
    try:
        uploader = Uploader(database, FailingAfter(storage), UploadConfig(frames_format="ome_tiff"), progress=False)
        plans, _refused = uploader.prepare(read_upload_csv(csv_path))
        database.create_tables()
        (result,) = uploader.upload(plans)
    finally:
        database.dispose()
    assert not result.ok and "rerun with --override" in result.error
    assert len(storage.list(f"raw_frames/{serial}/")) == stored_frames


def test_two_override_resumes_of_one_id_at_once(tmp_path, db_url, login_file, storage_spec):
    """Two --override resumes of the same interrupted upload, from different sources: one wins, whole."""
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff", nbr_workers=2)
    storage = _storage(storage_spec)
    sources = _sources(tmp_path, 3)
    rounds = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.03]] if storage_spec["storage"] == "local" else [[0.0, 0.0]]
    for round_nbr, delays in enumerate(rounds):
        serial = _dataset_id(100 + round_nbr)
        # The earlier run stored a third of the frames of yet another source.
        _interrupted_upload(tmp_path, db_url, storage, serial, sources[2], stored_frames=27)
        outcome = _race(tmp_path, serial, sources[:2], login_file, config, delays, override=True)
        winners = [seed for seed, (ok, _error) in outcome.items() if ok]
        assert len(winners) == 1, f"round {round_nbr}: {outcome}"
        _check_dataset_is_the_winners(db_url, storage, serial, winners[0])


def _fresh_database_urls(db_url, tmp_path, pg_admin_url_factory, count: int) -> list:
    if db_url.get_backend_name() == "sqlite":
        return [db_url.set(database=str(tmp_path / f"empty_{i}.sqlite")) for i in range(count)]
    return [pg_admin_url_factory() for _ in range(count)]


@pytest.fixture
def new_pg_database(request):
    """Make extra empty PostgreSQL databases, dropped after the test."""
    made = []

    def make():
        admin_url = request.getfixturevalue("pg_admin_url")
        name = f"imaging_db_test_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        made.append((admin_url, name))
        return admin_url.set(database=name)

    yield make
    for admin_url, name in made:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_first_uploads_of_different_ids_into_an_empty_database_all_succeed(tmp_path, db_url, storage_spec,
                                                                          new_pg_database):
    """Four first uploads at once create the schema once between them; every one registers its dataset."""
    from tests.conftest import _login_dict

    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff", nbr_workers=1)
    sources = _sources(tmp_path, 4)
    storage = _storage(storage_spec)
    nbr_rounds = 3 if storage_spec["storage"] == "local" else 1
    for round_nbr, url in enumerate(_fresh_database_urls(db_url, tmp_path, new_pg_database, nbr_rounds)):
        login = tmp_path / f"login_{round_nbr}.json"
        login.write_text(json.dumps(_login_dict(url)))
        barrier = _fork.Barrier(4)
        results = _fork.Queue()
        serials = [_dataset_id(200 + 10 * round_nbr + i) for i in range(4)]
        processes = []
        for i, serial in enumerate(serials):
            csv_path = write_csv(tmp_path, [{"dataset_id": serial, "file_name": str(sources[i])}],
                                 name=f"{serial}.csv")
            processes.append(_fork.Process(target=_racer, args=(barrier, 0.0, str(csv_path), str(login),
                                                                 str(config), False, results)))
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        assert all(ok for _csv, ok, _error in outcomes), outcomes
        for i, serial in enumerate(serials):
            _check_dataset_is_the_winners(url, storage, serial, seed=i + 1)


def test_cli_racers_exit_with_one_line(tmp_path, db_url, login_file, storage_spec):
    """Through the real data_uploader: exit statuses 0 and 1, and the loser's one line says why."""
    config = write_config(tmp_path, storage_spec, upload_type="frames", frames_format="ome_tiff")
    storage = _storage(storage_spec)
    sources = _sources(tmp_path, 2)
    script = Path(__file__).resolve().parents[2] / "imaging_db" / "cli" / "data_uploader.py"
    for round_nbr in range(3 if storage_spec["storage"] == "local" else 1):
        serial = _dataset_id(300 + round_nbr)
        processes = []
        for seed, source in enumerate(sources, start=1):
            csv_path = write_csv(tmp_path, [{"dataset_id": serial, "file_name": str(source)}],
                                 name=f"cli_{serial}_{seed}.csv")
            processes.append(subprocess.Popen(
                [sys.executable, str(script), "--csv", str(csv_path), "--config", str(config),
                 "--login", str(login_file), "--no-progress"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outputs = [(p.wait(timeout=120), *p.communicate()) for p in processes]
        codes = sorted(code for code, _out, _err in outputs)
        assert codes == [0, 1], outputs
        code, _out, err = next(o for o in outputs if o[0] == 1)
        lines = err.strip().splitlines()
        assert lines[0].startswith(f"{serial}: FAILED: dataset {serial} ")
        assert re.search(LOSER_MESSAGE, lines[0]), err
        assert lines[1:] == ["data_uploader: 1 of 1 dataset(s) failed"]
        assert "Traceback" not in err
        winner = 1 + [o[0] for o in outputs].index(0)
        _check_dataset_is_the_winners(login_file_url(login_file), storage, serial, winner)


def login_file_url(login_file: Path):
    from imaging_db.database.connection import load_login

    return load_login(login_file)
