"""Faults, proven by injection: kill -9 at named points, failing storage, a database gone at the commit.

- The real ``data_uploader`` (and ``data_downloader``) runs as a subprocess
  with ``IMAGING_DB_FAULT=<point>:<n>``, so it kills itself with SIGKILL the
  n-th time it reaches that point (see ``imaging_db/faults.py``). Then the
  database must hold the whole dataset or none of it, a rerun (plain, or
  ``--override`` when objects were left) must complete, every frame must
  download bit-identical and nothing may be left behind.
- Storage that fails mid-upload (S3 answering 500s or going away through
  a proxy, a full disk, a refused write) and a database unreachable at the
  commit: one clear line, no row, and a resume that completes (without
  storing again the frames that were kept).
"""

import errno
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from botocore.retries.standard import ExponentialBackoff

from imaging_db.cli import data_uploader
from imaging_db.database import connection as db_connection
from imaging_db.database import bulk_insert
from imaging_db.database.db_ops import Database
from imaging_db.example_data import frame_pixels, write_mm_ometiff
from imaging_db.filestorage import local_storage, make_storage
from imaging_db.filestorage.local_storage import LocalDataStorage
from imaging_db.images.png import png_pieces
from imaging_db.pipeline import upload as upload_module
from imaging_db.pipeline.download import download_dataset
from tests.cli.test_end_to_end import ID, SHAPE, check_downloaded, write_config, write_csv
from tests.conftest import _login_dict
from tests.fault_proxy import S3FaultProxy, TcpProxy

REPO = Path(__file__).resolve().parents[2]
UPLOADER = REPO / "imaging_db" / "cli" / "data_uploader.py"
DOWNLOADER = REPO / "imaging_db" / "cli" / "data_downloader.py"
CHANNELS, SLICES, TIMES = ["GFP", "RFP"], 3, 2
NBR_FRAMES = len(CHANNELS) * SLICES * TIMES  # 12
EXPECTED = {(c, z, t, 0): frame_pixels(c, z, t, 0, SHAPE)
            for c in range(len(CHANNELS)) for z in range(SLICES) for t in range(TIMES)}
# Pieces of one frame's PNG (signature + IHDR, IDAT, IEND): the unit of upload.encoded_piece
# and storage.piece_written. The same for every frame of this size.
PIECES = len(list(png_pieces(frame_pixels(0, 0, 0, 0, SHAPE))))
PREFIX = f"raw_frames/{ID}/"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The acquisition every test uploads: 2 channels x 3 slices x 2 times, one OME-TIFF file."""
    folder = tmp_path_factory.mktemp("acq")
    write_mm_ometiff(folder, CHANNELS, SLICES, TIMES, 1, shape=SHAPE)
    return folder


def test_every_frame_has_the_same_number_of_pieces():
    """The piece counts of the kill points below assume it."""
    assert {len(list(png_pieces(pixels))) for pixels in EXPECTED.values()} == {PIECES}
    assert PIECES >= 2


# --------------------------------------------------------------------------- helpers
def _storage_spec(kind: str, tmp_path: Path, request) -> dict:
    if kind == "local":
        return {"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None}
    return {"storage": "s3", "storage_access": request.getfixturevalue("s3_bucket"),
            "s3_endpoint_url": request.getfixturevalue("moto_endpoint")}


def _storage(spec: dict):
    return make_storage(spec["storage"], spec["storage_access"], s3_endpoint_url=spec["s3_endpoint_url"])


def _hidden_partials(spec: dict) -> list[str]:
    """Every temporary ``.*.partial`` file anywhere under a local storage root (S3: none can exist)."""
    if spec["storage"] != "local":
        return []
    return sorted(str(path) for path in Path(spec["storage_access"]).rglob("*.partial"))


def _table_counts(url) -> tuple[int, int, int]:
    """Rows in data_set, frames_global + file_global, frames: the database holds only the dataset under test."""
    engine = sa.create_engine(url)
    try:
        if not sa.inspect(engine).has_table("data_set"):
            return 0, 0, 0
        with engine.connect() as conn:
            def count(table: str) -> int:
                return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()

            return count("data_set"), count("frames_global") + count("file_global"), count("frames")
    finally:
        engine.dispose()


def _wait_until_the_killed_run_is_gone(url) -> None:
    """PostgreSQL ends a killed client's sessions (and its claim) when it sees the closed socket: wait for it."""
    if url.get_backend_name() != "postgresql":
        return  # SQLite: the kernel released the killed process's locks as it died
    engine = sa.create_engine(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            with engine.connect() as conn:
                others = conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()")).scalar()
            if others == 0:
                return
            assert time.monotonic() < deadline, f"{others} session(s) of the killed run still open"
            time.sleep(0.02)
    finally:
        engine.dispose()


def _upload_cli(csv_path, config, login_file, capsys, *extra) -> tuple[int, str, str]:
    """data_uploader in this process (no fault can fire here): exit code, stdout, stderr."""
    capsys.readouterr()
    code = data_uploader.main(["--csv", str(csv_path), "--config", str(config), "--login", str(login_file),
                               "--no-progress", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def _download(spec: dict, login_file, dest: Path):
    return download_dataset(ID, dest, login_file, storage=spec["storage"], storage_access=spec["storage_access"],
                            s3_endpoint_url=spec["s3_endpoint_url"], progress=False)


def _check_complete(url, spec: dict, login_file, dest: Path, file_source: Path | None = None) -> None:
    """The dataset is registered whole, its objects are exactly its rows', and it downloads bit-identical."""
    storage = _storage(spec)
    database = Database(url)
    try:
        info = database.get_dataset(ID)
        if file_source is None:
            rows = database.get_frames(ID)
            assert info.layout.nbr_frames == NBR_FRAMES
            keys = {PREFIX + row.file_name: row.sha256 for row in rows}
        else:
            keys = {f"raw_files/{ID}/{file_source.name}": info.sha256}
    finally:
        database.dispose()
    assert _table_counts(url) == (1, 1, NBR_FRAMES if file_source is None else 0)
    prefix = PREFIX if file_source is None else f"raw_files/{ID}/"
    assert sorted(storage.list(prefix)) == sorted(keys), "objects without rows, or rows without objects"
    assert storage.partials(prefix) == []
    assert _hidden_partials(spec) == []
    for key, sha256 in keys.items():
        assert hashlib.sha256(storage.get(key)).hexdigest() == sha256
    _download(spec, login_file, dest)
    if file_source is None:
        check_downloaded(dest / ID, EXPECTED)
    else:
        assert (dest / ID / file_source.name).read_bytes() == file_source.read_bytes()
    assert [p.name for p in dest.iterdir()] == [ID]


# --------------------------------------------------------------------------- kill -9 of data_uploader
@dataclass(frozen=True)
class Kill:
    """Kill data_uploader the n-th time it reaches ``point``; what must be left right after the kill.

    ``objects`` and ``partial`` are the stored objects and whether a local
    temporary file is left, when the point fixes them (one worker); None
    where threads make them vary.
    """

    point: str
    n: int = 1
    workers: int = 1
    batch_rows: int | None = None  # bulk_insert._BATCH_ROWS in the killed process: a commit of several batches
    storage: str = "local"
    upload_type: str = "frames"
    objects: int | None = None
    partial: bool | None = None
    committed: bool = False

    def __str__(self) -> str:
        extra = [f"w{self.workers}"] if self.workers != 1 else []
        extra += [f"batch{self.batch_rows}"] if self.batch_rows else []
        extra += [self.upload_type] if self.upload_type != "frames" else []
        return "-".join([self.storage, f"{self.point}:{self.n}", *extra])


P, N = PIECES, NBR_FRAMES
LOCAL_KILLS = [
    Kill("upload.claimed", objects=0, partial=False),                 # the id claimed, nothing written
    Kill("upload.frame_read", 1, objects=0, partial=False),           # reading the first frame
    Kill("upload.frame_read", N // 2),                                # ... the middle one
    Kill("upload.frame_read", N),                                     # ... the last one
    Kill("upload.encoded_piece", 1, objects=0, partial=True),         # mid-encode of the first frame
    Kill("upload.encoded_piece", 5 * P + 2, objects=5, partial=True),  # ... of the 6th
    Kill("upload.encoded_piece", N * P, objects=N - 1, partial=True),  # last piece of the last frame
    Kill("storage.piece_written", 1, objects=0, partial=True),        # mid-way through writing a file
    Kill("storage.piece_written", 6 * P - 1, objects=5, partial=True),
    Kill("storage.piece_written", N * P, objects=N - 1, partial=True),  # the last file written whole
    Kill("storage.before_link", 1, objects=0, partial=True),          # just before a file is put in place
    Kill("storage.before_link", 7, objects=6, partial=True),
    Kill("storage.before_link", N, objects=N - 1, partial=True),
    Kill("upload.before_commit", objects=N, partial=False),           # everything stored, no row
    Kill("db.frames_batch", 1, objects=N, partial=False),             # during the commit (one batch)
    Kill("db.frames_batch", 1, batch_rows=5, objects=N, partial=False),  # 3 batches: first, middle, last
    Kill("db.frames_batch", 2, batch_rows=5, objects=N, partial=False),
    Kill("db.frames_batch", 3, batch_rows=5, objects=N, partial=False),
    Kill("upload.committed", objects=N, partial=False, committed=True),  # right after the commit
    # Three workers encode and store at once.
    Kill("upload.frame_read", 9, workers=3),
    Kill("upload.encoded_piece", 7 * P + 1, workers=3, partial=True),
    Kill("storage.piece_written", 4 * P, workers=3, partial=True),
    Kill("storage.before_link", 5, workers=3, partial=True),
    Kill("db.frames_batch", 7, workers=3, batch_rows=1, objects=N, partial=False),
    # A file dataset (stored as is).
    Kill("storage.before_link", 1, upload_type="file", objects=0, partial=True),
    Kill("upload.before_commit", 1, upload_type="file", objects=1, partial=False),
]
S3_KILLS = [
    Kill("storage.s3_put", 1, storage="s3"),                          # just before the first PUT
    Kill("storage.s3_stored", 6, storage="s3"),                       # right after the 6th PUT
    Kill("upload.encoded_piece", 4 * P, storage="s3"),
    Kill("db.frames_batch", 2, batch_rows=5, storage="s3", objects=N),
]
KILLS = LOCAL_KILLS + [pytest.param(kill, marks=pytest.mark.s3) for kill in S3_KILLS]


def _killed_upload(kill: Kill, csv_path, config, login_file, *extra: str) -> subprocess.CompletedProcess:
    args = ["--csv", str(csv_path), "--config", str(config), "--login", str(login_file), "--no-progress", *extra]
    if kill.batch_rows is None:
        command = [sys.executable, str(UPLOADER), *args]
    else:
        # The real CLI, with smaller row batches so that the commit sends several.
        command = [sys.executable, "-c",
                   "import sys\n"
                   f"sys.path.insert(0, {str(REPO)!r})\n"
                   "from imaging_db.database import bulk_insert\n"
                   f"bulk_insert._BATCH_ROWS = {kill.batch_rows}\n"
                   "from imaging_db.cli import data_uploader\n"
                   "sys.exit(data_uploader.main(sys.argv[1:]))\n", *args]
    env = dict(os.environ, IMAGING_DB_FAULT=f"{kill.point}:{kill.n}")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def _settled_listing(storage, prefix: str) -> dict:
    """What storage holds once it stops changing: a PUT the killed process had sent may still land on the server."""
    listing = storage.list(prefix)
    for _attempt in range(25):
        time.sleep(0.2)
        again = storage.list(prefix)
        if again == listing:
            return listing
        listing = again
    return listing


@pytest.mark.parametrize("kill", KILLS, ids=str)
def test_kill_9_leaves_no_half_dataset_and_a_rerun_completes(kill, tmp_path, db_url, login_file, source, capsys,
                                                            request):
    spec = _storage_spec(kill.storage, tmp_path, request)
    storage = _storage(spec)
    file_source = None
    if kill.upload_type == "file":
        (file_source,) = source.glob("*.ome.tif")
        config = write_config(tmp_path, spec, upload_type="file", nbr_workers=kill.workers)
    else:
        config = write_config(tmp_path, spec, upload_type="frames", frames_format="ome_tiff",
                              nbr_workers=kill.workers)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(file_source or source)}])
    prefix = PREFIX if file_source is None else f"raw_files/{ID}/"

    killed = _killed_upload(kill, csv_path, config, login_file)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stdout, killed.stderr)
    _wait_until_the_killed_run_is_gone(db_url)

    # Never half a dataset: all of it, or not one row.
    whole = (1, 1, NBR_FRAMES if file_source is None else 0)
    assert _table_counts(db_url) == (whole if kill.committed else (0, 0, 0))
    left = _settled_listing(storage, prefix) if kill.storage == "s3" else storage.list(prefix)
    if kill.objects is not None:
        assert len(left) == kill.objects, sorted(left)
    if kill.partial is not None:
        assert bool(_hidden_partials(spec)) == kill.partial

    code, out, err = _upload_cli(csv_path, config, login_file, capsys)
    if kill.committed:
        assert code == 1 and f"dataset {ID} is already in the database" in err and "not touched" in err
    elif left:
        assert code == 1, (out, err)
        assert err.splitlines()[0].startswith(f"{ID}: FAILED: ") and "rerun with --override" in err
        assert storage.list(prefix) == left  # the refused rerun changed nothing
        code, out, err = _upload_cli(csv_path, config, login_file, capsys, "--override")
        assert code == 0, (out, err)
    else:
        assert code == 0, (out, err)
    assert "Traceback" not in err
    _check_complete(db_url, spec, login_file, tmp_path / "dl", file_source)


def test_kill_9_of_the_resume_too(tmp_path, db_url, login_file, source, capsys):
    """Killed once while storing, then its --override resume killed while storing the rest: a third run completes."""
    spec = _storage_spec("local", tmp_path, None)
    config = write_config(tmp_path, spec, upload_type="frames", frames_format="ome_tiff", nbr_workers=1)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source)}])
    storage = _storage(spec)
    first = _killed_upload(Kill("storage.before_link", 7), csv_path, config, login_file)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert len(storage.list(PREFIX)) == 6
    # The resume keeps frames 1-6 and is killed as it puts the 9th in place.
    second = _killed_upload(Kill("storage.before_link", 3), csv_path, config, login_file, "--override")
    assert second.returncode == -signal.SIGKILL, second.stderr
    _wait_until_the_killed_run_is_gone(db_url)
    assert _table_counts(db_url) == (0, 0, 0)
    # The resume removed the first run's unfinished file, and left one of its own.
    assert len(storage.list(PREFIX)) == 8 and len(_hidden_partials(spec)) == 1

    code, _out, err = _upload_cli(csv_path, config, login_file, capsys)
    assert code == 1 and "rerun with --override" in err
    code, out, err = _upload_cli(csv_path, config, login_file, capsys, "--override")
    assert code == 0, err
    assert "8 already stored" in out
    _check_complete(db_url, spec, login_file, tmp_path / "dl")


# --------------------------------------------------------------------------- kill -9 of data_downloader
@pytest.mark.parametrize("point", ["download.frame_written:1", "download.frame_written:6",
                                   "download.before_rename:1", "download.renamed:1"])
def test_killed_download_is_redone_into_the_same_dest(point, tmp_path, db_url, login_file, source, capsys):
    spec = _storage_spec("local", tmp_path, None)
    config = write_config(tmp_path, spec, upload_type="frames", frames_format="ome_tiff")
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source)}])
    assert _upload_cli(csv_path, config, login_file, capsys)[0] == 0
    dest = tmp_path / "dl"
    command = [sys.executable, str(DOWNLOADER), "--id", ID, "--dest", str(dest), "--login", str(login_file),
               "--storage", "local", "--storage_access", spec["storage_access"], "--no-progress",
               "--nbr_workers", "1"]
    killed = subprocess.run(command, env=dict(os.environ, IMAGING_DB_FAULT=point), capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)
    if point == "download.renamed:1":
        # Killed once the folder was in place: it is whole, and a second download refuses to overwrite it.
        check_downloaded(dest / ID, EXPECTED)
        assert [p.name for p in dest.iterdir()] == [ID]
        again = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert again.returncode != 0 and "Traceback" not in again.stderr
        assert again.stderr.strip().splitlines() == [
            f"data_downloader: error: dataset {ID}: {dest / ID} already exists; refusing to overwrite it"]
        check_downloaded(dest / ID, EXPECTED)
        assert [p.name for p in dest.iterdir()] == [ID]
        return
    hidden = list(dest.glob(f".{ID}.*.partial"))
    assert len(hidden) == 1 and not (dest / ID).exists()  # the kill left the half download, hidden
    written = len(list(hidden[0].glob("*.png")))
    assert written == (int(point.split(":")[1]) if "frame_written" in point else NBR_FRAMES)

    _download(spec, login_file, dest)
    check_downloaded(dest / ID, EXPECTED)
    assert [p.name for p in dest.iterdir()] == [ID]


# --------------------------------------------------------------------------- storage failing mid-upload
def _one_line_failure(code: int, err: str, *phrases: str) -> str:
    """The upload failed with one line for the dataset and the summary line, no traceback."""
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 2 and lines[1] == "data_uploader: 1 of 1 dataset(s) failed", err
    assert lines[0].startswith(f"{ID}: FAILED: ") and "Traceback" not in err
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def backoffs(monkeypatch) -> list[float]:
    """The delays botocore's retry backoff computes (it still waits them)."""
    delays: list[float] = []
    original = ExponentialBackoff.delay_amount

    def recording(self, context):
        delay = original(self, context)
        delays.append(delay)
        return delay

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", recording)
    return delays


def _s3_proxy_setup(tmp_path, request, source, rule):
    """A bucket reached through an S3FaultProxy; config and CSV for uploading ``source`` through it."""
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    proxy = S3FaultProxy(endpoint, rule)
    request.addfinalizer(proxy.close)
    spec = {"storage": "s3", "storage_access": bucket, "s3_endpoint_url": proxy.url}
    direct = {"storage": "s3", "storage_access": bucket, "s3_endpoint_url": endpoint}
    config = write_config(tmp_path, spec, upload_type="frames", frames_format="ome_tiff", nbr_workers=2)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source)}])
    return proxy, direct, config, csv_path


def _attempts_by_invocation(requests) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for r in requests:
        found.setdefault(r.invocation, []).append(r.attempt)
    return found


@pytest.mark.s3
@pytest.mark.parametrize("fault", ["500s", "going away"])
def test_s3_failing_mid_upload_then_resume(fault, tmp_path, db_url, login_file, source, capsys, request, backoffs):
    """After 4 object writes, S3 answers 500 to every write (or stops accepting connections)."""
    if fault == "500s":
        def rule(r, proxy):
            return (500, "InternalError") if r.is_object_write and r.ordinal > 4 else None
    else:
        def rule(r, proxy):
            return "drop" if r.is_object_write and r.ordinal > 4 else None
    proxy, direct, config, csv_path = _s3_proxy_setup(tmp_path, request, source, rule)
    code, _out, err = _upload_cli(csv_path, config, login_file, capsys)
    line = _one_line_failure(code, err, f"writing s3://{direct['storage_access']}/{PREFIX}",
                             "(frames stored so far are kept: rerun with --override to resume)")
    if fault == "500s":
        assert "failed: InternalError" in line
        # A 500 is transient: each refused write was retried, after a backoff each time. botocore's
        # max_attempts 5 means 5 retries (6 attempts); its retry quota (500 tokens, 14 a retry) may
        # stop retries sooner when many writes fail at once.
        refused = [r for r in proxy.object_writes() if r.status == 500]
        attempts = _attempts_by_invocation(refused)
        assert attempts and all(a == list(range(1, len(a) + 1)) and len(a) <= 6
                                for a in attempts.values()), attempts
        # At most 8 writes fail and 35 retries fit in the quota: at least one write got all 6 attempts.
        assert max(len(a) for a in attempts.values()) == 6, attempts
        assert len(backoffs) == sum(len(a) - 1 for a in attempts.values())
    else:
        assert "Could not connect to the endpoint URL" in line or "Connection was closed" in line, line
        proxy.rule = None
        proxy.come_back()
    assert len(backoffs) >= 4
    assert _table_counts(db_url) == (0, 0, 0)
    stored = _storage(direct).list(PREFIX)
    assert len(stored) <= 4

    proxy.rule = None
    code, out, err = _upload_cli(csv_path, config, login_file, capsys, "--override")
    assert code == 0, err
    if stored:
        assert f"{len(stored)} already stored" in out
    _check_complete(db_url, direct, login_file, tmp_path / "dl")


@pytest.mark.s3
def test_s3_transient_errors_are_retried_with_backoff(tmp_path, db_url, login_file, source, capsys, request,
                                                      backoffs):
    """Every request's first attempt gets 503 ServiceUnavailable: the upload still succeeds, each retried once."""
    proxy, direct, config, csv_path = _s3_proxy_setup(
        tmp_path, request, source, lambda r, proxy: (503, "ServiceUnavailable") if r.attempt == 1 else None)
    code, out, err = _upload_cli(csv_path, config, login_file, capsys)
    assert code == 0, err
    assert f"{ID}: {NBR_FRAMES} frames" in out
    attempts = _attempts_by_invocation(proxy.requests)
    assert all(a == [1, 2] for a in attempts.values()), attempts
    assert len(proxy.object_writes()) == 2 * NBR_FRAMES
    assert len(backoffs) == len(attempts)  # one backoff before each retry
    assert all(0 <= delay <= 1 for delay in backoffs)
    _check_complete(db_url, direct, login_file, tmp_path / "dl")


@pytest.mark.s3
def test_s3_permanent_error_is_not_retried(tmp_path, db_url, login_file, source, capsys, request, backoffs):
    """403 AccessDenied from the 5th object write on: each such write is sent once, the upload fails, resume works."""
    proxy, direct, config, csv_path = _s3_proxy_setup(
        tmp_path, request, source,
        lambda r, proxy: (403, "AccessDenied") if r.is_object_write and r.ordinal > 4 else None)
    code, _out, err = _upload_cli(csv_path, config, login_file, capsys)
    _one_line_failure(code, err, "failed: AccessDenied", "rerun with --override to resume")
    denied = [r for r in proxy.object_writes() if r.status == 403]
    attempts = _attempts_by_invocation(denied)
    assert denied and all(a == [1] for a in attempts.values()), attempts
    assert backoffs == []
    assert _table_counts(db_url) == (0, 0, 0)
    assert len(_storage(direct).list(PREFIX)) == 4

    proxy.rule = None
    code, out, err = _upload_cli(csv_path, config, login_file, capsys, "--override")
    assert code == 0, err
    assert "4 already stored" in out
    _check_complete(db_url, direct, login_file, tmp_path / "dl")


class _RefusingFile:
    """An open file whose writes fail as on a full disk."""

    def __init__(self, handle, error: OSError):
        self.handle, self.error = handle, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()
        return False

    def write(self, _data):
        raise self.error


@pytest.mark.parametrize("fault", ["disk full", "permission denied"])
def test_local_storage_failing_mid_upload_then_resume(fault, tmp_path, db_url, login_file, source, capsys,
                                                      monkeypatch):
    """The 6th frame file cannot be written (ENOSPC on write, EACCES on open): one line, no row, resume completes.

    Root ignores file permissions and a full file system needs a mount, so the
    error comes from the ``open`` that LocalDataStorage writes frames with.
    """
    spec = _storage_spec("local", tmp_path, None)
    config = write_config(tmp_path, spec, upload_type="frames", frames_format="ome_tiff", nbr_workers=1)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source)}])
    opened = []

    def failing_open(path, mode="r", *args, **kwargs):
        opened.append(path)
        if len(opened) < 6:
            return open(path, mode, *args, **kwargs)
        if fault == "permission denied":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return _RefusingFile(open(path, mode, *args, **kwargs), OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    monkeypatch.setattr(local_storage, "open", failing_open, raising=False)
    code, _out, err = _upload_cli(csv_path, config, login_file, capsys)
    line = _one_line_failure(code, err, f"cannot write '{spec['storage_access']}/{PREFIX}",
                             "(frames stored so far are kept: rerun with --override to resume)")
    assert os.strerror(errno.ENOSPC if fault == "disk full" else errno.EACCES) in line
    assert _table_counts(db_url) == (0, 0, 0)
    assert len(_storage(spec).list(PREFIX)) == 5
    assert _hidden_partials(spec) == []  # the failed write's temporary file was removed

    monkeypatch.undo()
    code, out, err = _upload_cli(csv_path, config, login_file, capsys, "--override")
    assert code == 0, err
    assert "5 already stored" in out
    _check_complete(db_url, spec, login_file, tmp_path / "dl")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 40 KB tmpfs (room for a few frames); yields (folder, grow) where grow() gives it room again."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
                    "test_local_storage_failing_mid_upload_then_resume covers ENOSPC in-process")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=4m", str(folder)], check=True)

    try:
        yield folder, grow
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_real_disk_full_mid_upload_then_resume(tmp_path, db_url, login_file, source, capsys, small_tmpfs):
    """Local storage on a file system that fills up after a few frames; room is made, the resume completes."""
    folder, grow = small_tmpfs
    spec = {"storage": "local", "storage_access": str(folder), "s3_endpoint_url": None}
    config = write_config(tmp_path, spec, upload_type="frames", frames_format="ome_tiff", nbr_workers=1)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source)}])
    code, _out, err = _upload_cli(csv_path, config, login_file, capsys)
    _one_line_failure(code, err, f"cannot write '{folder}/{PREFIX}", os.strerror(errno.ENOSPC),
                      "(frames stored so far are kept: rerun with --override to resume)")
    assert _table_counts(db_url) == (0, 0, 0)
    stored = len(_storage(spec).list(PREFIX))
    assert 0 < stored < NBR_FRAMES
    assert _hidden_partials(spec) == []

    grow()
    code, out, err = _upload_cli(csv_path, config, login_file, capsys, "--override")
    assert code == 0, err
    assert f"{stored} already stored" in out
    _check_complete(db_url, spec, login_file, tmp_path / "dl")


def _chattr(flag: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)


def test_storage_folder_made_immutable_mid_upload_then_resume(tmp_path, db_url, login_file, source, capsys,
                                                              monkeypatch):
    """The dataset folder turns immutable (``chattr +i``) as the 6th frame is put in place: a refusal even root gets.

    The kernel refuses the link (and the removal of the temporary file, left
    for the resume to clean): one line, no row; once the folder is writable
    again, the --override resume keeps the 5 frames and removes the leftover.
    """
    spec = _storage_spec("local", tmp_path, None)
    config = write_config(tmp_path, spec, upload_type="frames", frames_format="ome_tiff", nbr_workers=1)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source)}])
    folder = Path(spec["storage_access"], *PREFIX.strip("/").split("/"))
    probe = tmp_path / "probe"
    probe.mkdir()
    if _chattr("+i", probe).returncode != 0:
        pytest.skip("chattr +i is not supported here; test_local_storage_failing_mid_upload_then_resume covers EACCES")
    _chattr("-i", probe)
    links = []

    def freeze_at_the_6th_link(name: str) -> None:
        if name == "storage.before_link":
            links.append(name)
            if len(links) == 6:
                assert _chattr("+i", folder).returncode == 0

    monkeypatch.setattr(local_storage, "_fault_point", freeze_at_the_6th_link)
    try:
        code, _out, err = _upload_cli(csv_path, config, login_file, capsys)
        assert _hidden_partials(spec) != []  # the temporary file could not be removed either
    finally:
        if folder.exists():
            _chattr("-i", folder)
    _one_line_failure(code, err, f"cannot write '{folder}/", os.strerror(errno.EPERM),
                      "(frames stored so far are kept: rerun with --override to resume)")
    assert _table_counts(db_url) == (0, 0, 0)
    assert len(_storage(spec).list(PREFIX)) == 5
    assert len(_storage(spec).partials(PREFIX)) == 1

    monkeypatch.undo()
    code, out, err = _upload_cli(csv_path, config, login_file, capsys, "--override")
    assert code == 0, err
    assert "5 already stored" in out
    _check_complete(db_url, spec, login_file, tmp_path / "dl")


# --------------------------------------------------------------------------- database unreachable at the commit
def _count_puts(monkeypatch) -> list[str]:
    puts: list[str] = []
    for name in ("put", "put_stream", "put_file"):
        original = getattr(LocalDataStorage, name)

        def counting(self, key, *args, _original=original, **kwargs):
            puts.append(key)
            return _original(self, key, *args, **kwargs)

        monkeypatch.setattr(LocalDataStorage, name, counting)
    return puts


def _object_stats(spec: dict) -> dict[str, tuple[int, int]]:
    root = Path(spec["storage_access"])
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*.png")}


def _fault_hook(monkeypatch, module, point: str, action) -> None:
    """Run ``action`` in this process the first time the pipeline reaches fault point ``point``."""
    done = []

    def hook(name: str) -> None:
        if name == point and not done:
            done.append(name)
            action()

    monkeypatch.setattr(module, "fault_point", hook)


@pytest.mark.parametrize("when", ["before the commit", "during the commit"])
def test_database_gone_at_the_commit_keeps_frames_for_a_resume(when, tmp_path, db_url, login_file, source, capsys,
                                                                 monkeypatch):
    """PostgreSQL: the network to the server is cut; SQLite: another process holds the database locked.

    The line says the frames stay and to rerun with --override; the resume
    stores nothing again (no put, same files) and registers the dataset.
    """
    spec = _storage_spec("local", tmp_path, None)
    config = write_config(tmp_path, spec, upload_type="frames", frames_format="ome_tiff", nbr_workers=2)
    csv_path = write_csv(tmp_path, [{"dataset_id": ID, "file_name": str(source)}])
    postgresql = db_url.get_backend_name() == "postgresql"
    if postgresql:
        proxy = TcpProxy(db_url.host, db_url.port)
        upload_login = tmp_path / "through_proxy.json"
        upload_login.write_text(json.dumps(_login_dict(db_url.set(host="127.0.0.1", port=proxy.port))))
        cut = proxy.cut
        expected = "registering in database"
    else:
        upload_login = login_file
        locker = sqlite3.connect(db_url.database, timeout=0, isolation_level=None)
        if when == "before the commit":
            cut = lambda: locker.execute("BEGIN EXCLUSIVE")  # noqa: E731
        else:
            # The upload's transaction has begun writing; a reader that stays keeps its COMMIT from
            # taking the exclusive lock it needs.
            cut = lambda: locker.execute("BEGIN").execute("SELECT count(*) FROM data_set").fetchall()  # noqa: E731
        expected = "database is locked"

        def short_busy_timeout(dbapi_connection, record):
            original_on_connect(dbapi_connection, record)
            dbapi_connection.execute("PRAGMA busy_timeout=200")

        original_on_connect = db_connection._sqlite_on_connect
        monkeypatch.setattr(db_connection, "_sqlite_on_connect", short_busy_timeout)
    if when == "before the commit":
        _fault_hook(monkeypatch, upload_module, "upload.before_commit", cut)
    else:
        _fault_hook(monkeypatch, bulk_insert, "db.frames_batch", cut)
    try:
        code, _out, err = _upload_cli(csv_path, config, upload_login, capsys)
    finally:
        if postgresql:
            proxy.close()
        else:
            locker.close()
    line = _one_line_failure(code, err, expected, "stay in storage: rerun with --override to resume")
    assert "Traceback" not in err
    _wait_until_the_killed_run_is_gone(db_url)
    assert _table_counts(db_url) == (0, 0, 0)
    before = _object_stats(spec)
    assert len(before) == NBR_FRAMES, line

    monkeypatch.undo()
    puts = _count_puts(monkeypatch)
    code, out, err = _upload_cli(csv_path, config, login_file, capsys, "--override")
    assert code == 0, err
    assert f"{NBR_FRAMES} already stored" in out
    assert puts == []
    assert _object_stats(spec) == before  # the same files, not written again
    _check_complete(db_url, spec, login_file, tmp_path / "dl")
