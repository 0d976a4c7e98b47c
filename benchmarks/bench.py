"""Benchmark the real CLIs on Micro-Manager-style OME-TIFF workloads.

    python benchmarks/bench.py --workload medium|large|all [--db sqlite|postgresql|all] [--s3] [--rows N]

For each workload and database it uploads with ``data_uploader`` and
downloads with ``data_downloader`` (all frames, then ``-c 0 -z 0 1``), each in
its own process, and reports wall time, frames/s, raw MB/s and the peak RSS
of the process. Upload efficiency is the upload's frames/s divided by the
OpenCV encode floor: all cores encoding frames of the same workload with
``cv2.imencode('.png')`` at OpenCV's defaults, with no I/O. imaging_db's own
encoder (ISA-L) is faster than that, so the pipeline efficiency is reported
too: frames/s over the floor of imaging_db's encoder with the configured
settings, measured the same way; it is the share of the machine's encoding
speed that survives reading, hashing, storing and the database. Every downloaded frame is checked bit for
bit against the source TIFF, after the timing. Before each upload the
workload's files are read once, so the upload starts with them in the page
cache, as after any recent acquisition or copy. ``--rows`` also times
inserting the frame rows of a dataset of that many frames into PostgreSQL,
and the c/z/t/p filter query on it. Results are printed and appended to
benchmarks/RESULTS.md.

Workloads are written once, deterministically, into benchmarks/data/
(smooth blobs plus photon noise, which PNG compresses to about 0.6 of raw).
"""

import argparse
import concurrent.futures
import contextlib
import datetime
import functools
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from imaging_db.example_data import mm_frame_metadata, write_mm_ometiff  # noqa: E402
from imaging_db.images.png import decode_png, encode_png  # noqa: E402
from imaging_db.process import reuse_freed_buffers  # noqa: E402

DATASET = "BM-2018-11-07-09-35-54-0001"


@dataclass(frozen=True)
class Workload:
    name: str
    nbr_positions: int
    channels: tuple[str, ...]
    nbr_slices: int
    nbr_times: int
    shape: tuple[int, int]
    filtered: tuple[str, ...] = ("-c", "0", "-z", "0", "1")

    @property
    def nbr_frames(self) -> int:
        return self.nbr_positions * len(self.channels) * self.nbr_slices * self.nbr_times

    @property
    def raw_mb(self) -> float:
        return self.nbr_frames * self.shape[0] * self.shape[1] * 2 / 1e6


WORKLOADS = {
    # 4 position files x 100 frames, 1024x1024 uint16 (839 MB)
    "medium": Workload("medium", 4, ("GFP", "RFP"), 10, 5, (1024, 1024)),
    # 1 file x 200 frames, 2048x2048 uint16 (1.68 GB)
    "large": Workload("large", 1, ("GFP", "RFP"), 10, 10, (2048, 2048)),
}


def workload_folder(workload: Workload, data_dir: Path) -> Path:
    """Write the workload's OME-TIFF files unless an identical set is already there."""
    folder = data_dir / workload.name
    stamp = folder / "workload.json"
    spec = json.dumps({**workload.__dict__, "version": 2})
    if stamp.is_file() and stamp.read_text() == spec:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    print(f"writing the {workload.name} workload ({workload.raw_mb:.0f} MB) into {folder} ...", flush=True)
    start = time.perf_counter()
    write_mm_ometiff(folder, list(workload.channels), workload.nbr_slices, workload.nbr_times,
                     workload.nbr_positions, shape=workload.shape, smooth=True, prefix="BM", seed=7)
    stamp.write_text(spec)
    print(f"  written in {time.perf_counter() - start:.0f} s", flush=True)
    return folder


def source_frames(folder: Path):
    """Yield ((c, z, t, p), pixels) of every page of the workload's files."""
    for path in sorted(folder.glob("*.ome.tif")):
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                meta = page.tags[51123].value
                yield (meta["ChannelIndex"], meta["SliceIndex"], meta["FrameIndex"], meta["PositionIndex"]), \
                    page.asarray()


def warm_memory(gigabytes: float) -> tuple[float, float]:
    """Touch and free memory once; return (first, second) touch seconds per GB.

    On a VM whose memory the host backs lazily, the first touch of each guest
    page costs a host fault: writing frames into fresh page cache then costs
    several times more than on a machine that has been up for a while. Touching
    the memory once before timing measures imaging_db, not the hypervisor.
    """
    size = int(gigabytes * 2**30)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        block = np.ones(size // 8)
        times.append((time.perf_counter() - start) / gigabytes)
        del block
    return times[0], times[1]


def read_through(folder: Path) -> float:
    """Read every file of a workload once, so its pages are in the page cache; return the seconds taken.

    On this VM the page cache is reclaimed within minutes, and reading 0.8-1.7 GB
    back from its disk took up to 7 s: an upload timed on a cold cache measured
    the disk, not imaging_db.
    """
    start = time.perf_counter()
    for path in sorted(folder.iterdir()):
        with open(path, "rb", buffering=0) as handle:
            while handle.read(8 * 2**20):
                pass
    return time.perf_counter() - start


def settle() -> None:
    """Write dirty pages to disk and give the kernel a moment, between timed steps."""
    os.sync()
    time.sleep(1)


def encode_floors(folder: Path, nbr_frames: int, compression: int | None) -> tuple[float, float]:
    """Frames/s of PNG encoding alone, every core busy, on frames of the workload (best of three rounds).

    Returns (OpenCV at its defaults, imaging_db's encoder with ``compression``), measured alternately.
    """
    import cv2

    cv2.setNumThreads(1)  # one frame per thread, as in the pipeline
    frames = []
    for _, pixels in source_frames(folder):
        frames.append(pixels)
        if len(frames) == nbr_frames:
            break
    encoders = {"opencv": lambda a: cv2.imencode(".png", a)[1], "imaging_db": lambda a: encode_png(a, compression)}
    best = dict.fromkeys(encoders, float("inf"))
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        for _ in range(3):
            for name, encode in encoders.items():
                start = time.perf_counter()
                list(pool.map(encode, frames))
                best[name] = min(best[name], time.perf_counter() - start)
    return len(frames) / best["opencv"], len(frames) / best["imaging_db"]


@dataclass
class Run:
    wall: float
    peak_rss_mb: float
    output: str


def _tree_rss_kb(pid: int) -> tuple[int, int]:
    """(VmHWM of pid, summed VmRSS of pid and its descendants), in kB; (0, 0) once it is gone."""
    def status(p: int) -> dict:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            return {}
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in text.splitlines())
                if k in ("VmHWM", "VmRSS")}

    def children(p: int) -> list[int]:
        found = []
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                found += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
        return found

    top = status(pid)
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += status(p).get("VmRSS", 0) if p != pid else top.get("VmRSS", 0)
        stack += children(p)
    return top.get("VmHWM", 0), total


def run_cli(args: list[str], env: dict) -> Run:
    """Run one CLI process; its wall time and the peak RSS of its process tree.

    The peak comes from /proc while it runs (VmHWM of the CLI, RSS summed over
    its children): the rusage of a child forked from this big process would
    count this process's pages too.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            hwm, tree = _tree_rss_kb(proc.pid)
            peak[0] = max(peak[0], hwm, tree)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read()
    code = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.stdout.close()
    if code != 0:
        raise SystemExit(f"{' '.join(args)} failed with exit status {code}:\n{output}")
    return Run(wall, peak[0] / 1024, output.strip())


def verify_download(folder: Path, source: Path, expected_frames: int) -> int:
    """Check every downloaded PNG against the source TIFF page, bit for bit."""
    wanted = {p.name for p in folder.glob("*.png")}
    if len(wanted) != expected_frames:
        raise SystemExit(f"{folder}: {len(wanted)} frames downloaded, expected {expected_frames}")
    checked = 0
    for (c, z, t, p), pixels in source_frames(source):
        name = f"im_c{c:03d}_z{z:03d}_t{t:03d}_p{p:03d}.png"
        if name in wanted:
            if not np.array_equal(decode_png((folder / name).read_bytes()), pixels):
                raise SystemExit(f"{folder / name} differs from the source frame")
            checked += 1
    if checked != expected_frames:
        raise SystemExit(f"{folder}: only {checked} of {expected_frames} frames found in the source")
    return checked


class PostgresDatabase:
    """A scratch database on the local PostgreSQL server, dropped on exit."""

    def __init__(self, host="127.0.0.1", port=5432, user="postgres"):
        import sqlalchemy as sa

        self.sa = sa
        self.name = f"imaging_db_bench_{uuid.uuid4().hex[:8]}"
        self.login = {"drivername": "postgres", "username": user, "password": "", "host": host, "port": port,
                      "dbname": self.name}
        self.admin = sa.create_engine(f"postgresql+psycopg2://{user}@{host}:{port}/postgres",
                                      isolation_level="AUTOCOMMIT")

    def __enter__(self):
        with self.admin.connect() as conn:
            conn.execute(self.sa.text(f'CREATE DATABASE "{self.name}"'))
        return self

    def __exit__(self, *exc):
        with self.admin.connect() as conn:
            conn.execute(self.sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def bench_workload(workload: Workload, db: str, data_dir: Path, compression: int | None,
                   storage: dict | None = None) -> dict:
    source = workload_folder(workload, data_dir)
    # Measured right before each upload: this machine's speed drifts by 10-20% over minutes.
    floor, own_floor = encode_floors(source, 96 if workload.shape[0] <= 1024 else 48, compression)
    read_through(source)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="imaging_db_bench_") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "IMAGING_DB_HOME": str(tmp / "home")}
        config = {"upload_type": "frames", "frames_format": "ome_tiff"}
        if compression is not None:
            config["png_compression"] = compression
        storage_args: list[str] = []
        if storage:
            config.update(storage)
            storage_args = ["--storage", storage["storage"], "--storage_access", storage["storage_access"],
                            "--s3_endpoint_url", storage["s3_endpoint_url"]]
        (tmp / "config.json").write_text(json.dumps(config))
        (tmp / "files.csv").write_text(f"dataset_id,file_name\n{DATASET},{source}\n")
        login_args: list[str] = []
        pg = PostgresDatabase() if db == "postgresql" else None
        if pg:
            pg.__enter__()
            (tmp / "login.json").write_text(json.dumps(pg.login))
            login_args = ["--login", str(tmp / "login.json")]
        try:
            upload = run_cli([str(bin_dir / "data_uploader"), "--csv", str(tmp / "files.csv"), "--config",
                              str(tmp / "config.json"), *login_args], env)
            # Each step starts with the previous one's writes on disk: otherwise the kernel flushes the
            # upload's half gigabyte of new files during the download, and the download is charged for it.
            settle()
            download_all = run_cli([str(bin_dir / "data_downloader"), "--id", DATASET, "--dest", str(tmp / "all"),
                                    *login_args, *storage_args], env)
            settle()
            download_some = run_cli([str(bin_dir / "data_downloader"), "--id", DATASET, "--dest",
                                     str(tmp / "some"), *workload.filtered, *login_args, *storage_args], env)
        finally:
            if pg:
                pg.__exit__(None, None, None)
        nbr_some = workload.nbr_frames // len(workload.channels) // workload.nbr_slices * 2
        verified = verify_download(tmp / "all" / DATASET, source, workload.nbr_frames)
        verified += verify_download(tmp / "some" / DATASET, source, nbr_some)
        stored_mb = sum(p.stat().st_size for p in (tmp / "all" / DATASET).glob("*.png")) / 1e6
    # The file system is mounted with online discard: let the deletes of this run finish
    # before the next run writes, or they slow it down.
    settle()
    fps = workload.nbr_frames / upload.wall
    return {
        "workload": workload.name, "db": db, "storage": storage["storage"] if storage else "local",
        "frames": workload.nbr_frames, "raw_mb": workload.raw_mb, "stored_mb": stored_mb,
        "upload_s": upload.wall, "upload_fps": fps, "upload_mb_s": workload.raw_mb / upload.wall,
        "upload_rss_mb": upload.peak_rss_mb, "floor_fps": floor, "efficiency": fps / floor,
        "own_floor_fps": own_floor, "pipeline_efficiency": fps / own_floor,
        "download_all_s": download_all.wall, "download_all_rss_mb": download_all.peak_rss_mb,
        "download_some_frames": nbr_some, "download_some_s": download_some.wall,
        "download_some_rss_mb": download_some.peak_rss_mb, "verified_frames": verified,
        "upload_summary": upload.output.splitlines()[-1],
    }


def bench_rows(nbr_frames: int, metadata: str, db: str) -> dict:
    """Time registering a dataset of that many frame rows, and the c/z/t/p filter query on them.

    The frames' metadata summary is made from the metadata dicts first, as the
    upload's encoding workers make it while they serialize each frame (timed
    apart: it is not part of the commit); the insert then takes the rows as
    JSON text with that summary, as the upload's commit does.
    """
    import sqlalchemy as sa
    from imaging_db.database.connection import url_from_login
    from imaging_db.database.db_ops import Database, DatasetRecord
    from imaging_db.database.frames_summary import SummaryBuilder
    from imaging_db.json_text import to_json_text

    nbr_channels, nbr_slices, nbr_positions = 4, 50, 10
    nbr_times = max(1, nbr_frames // (nbr_channels * nbr_slices * nbr_positions))
    names = [f"channel{c}" for c in range(nbr_channels)]
    rows, summary, summary_s = [], SummaryBuilder(), 0.0
    for p in range(nbr_positions):
        for t in range(nbr_times):
            for z in range(nbr_slices):
                for c in range(nbr_channels):
                    meta = mm_frame_metadata(c, z, t, p, names)
                    if metadata == "compact":
                        meta = {k: meta[k] for k in ("ChannelIndex", "SliceIndex", "FrameIndex", "PositionIndex",
                                                      "Channel", "ElapsedTime-ms", "ZPositionUm")}
                    start = time.perf_counter()
                    summary.add(meta)
                    summary_s += time.perf_counter() - start
                    rows.append({"channel_idx": c, "slice_idx": z, "time_idx": t, "pos_idx": p,
                                 "channel_name": names[c], "file_name": f"im_c{c:03d}_z{z:03d}_t{t:03d}_p{p:03d}.png",
                                 "sha256": f"{len(rows):064x}", "metadata_json": to_json_text(meta)})
    meta_mb = sum(len(r["metadata_json"]) for r in rows) / 1e6
    frames_global = {"storage_dir": f"raw_frames/{DATASET}", "nbr_frames": len(rows), "im_width": 1024,
                     "im_height": 1024, "im_colors": 1, "bit_depth": "uint16", "nbr_slices": nbr_slices,
                     "nbr_channels": nbr_channels, "nbr_timepoints": nbr_times, "nbr_positions": nbr_positions,
                     "metadata_json": {}}
    with contextlib.ExitStack() as stack:
        if db == "postgresql":
            url = url_from_login(stack.enter_context(PostgresDatabase()).login)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imaging_db_rows_")))
            url = sa.engine.URL.create("sqlite+pysqlite", database=str(folder / "rows.sqlite"))
        database = Database(url)
        database.create_tables()
        start = time.perf_counter()
        database.insert_frames_dataset(DatasetRecord(DATASET, datetime.datetime(2018, 11, 7), frames=True),
                                       frames_global, rows, summary)
        insert_s = time.perf_counter() - start
        query_ms = []
        for _ in range(5):
            start = time.perf_counter()
            found = database.get_frames(DATASET, channel_ids=[0], slice_ids=[0, 1])
            query_ms.append((time.perf_counter() - start) * 1000)
        floors = server_ingest_floors(database, rows) if db == "postgresql" else {}
        database.dispose()
    return {"db": db, "rows": len(rows), "metadata": metadata, "metadata_mb": meta_mb, "insert_s": insert_s,
            "summary_s": summary_s, "query_ms": min(query_ms), "query_rows": len(found), "server_floors": floors}


def server_ingest_floors(database, rows: list[dict]) -> dict[str, float]:
    """Seconds the server alone takes to COPY the rows' metadata into a bare table, by column type.

    The COPY text is built before the clock starts, so this is what PostgreSQL
    needs to take in that much JSON (parsing, lz4 toast, WAL) with no client
    work at all: the floor under imaging_db's insert.
    """
    text = "".join(f"{i}\t{r['metadata_json'].replace(chr(92), chr(92) * 2)}\n" for i, r in enumerate(rows))
    data = text.encode("utf-8")
    floors = {}
    with database.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for column in ("text", "jsonb"):
            with raw.cursor() as cursor:
                cursor.execute(f"CREATE TABLE ingest_floor_{column} (id int, m {column} COMPRESSION lz4)")
                raw.commit()
                start = time.perf_counter()
                cursor.copy_expert(f"COPY ingest_floor_{column} FROM STDIN", io.BytesIO(data))
                raw.commit()
                floors[column] = time.perf_counter() - start
                cursor.execute(f"DROP TABLE ingest_floor_{column}")
                raw.commit()
    return floors


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import cv2
    import sqlalchemy

    return (f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB, Python {platform.python_version()}, "
            f"OpenCV {cv2.__version__}, SQLAlchemy {sqlalchemy.__version__}, tifffile {tifffile.__version__}")


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("medium", "large", "all", "none"), default="all",
                        help="none: only the --rows measurement")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "all"), default="all")
    parser.add_argument("--s3", action="store_true", help="also upload/download the workload through a moto S3 server")
    parser.add_argument("--rows", type=int, default=0, help="also time inserting this many frame rows (in each --db)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per workload and database; medians reported")
    parser.add_argument("--png-compression", type=int, default=None, help="png_compression for the config")
    parser.add_argument("--data", type=Path, default=HERE / "data", help="where the workloads are written")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    parser.add_argument("--warm-gb", type=float, default=4.0,
                        help="touch this much memory once before timing (0: measure a cold VM)")
    args = parser.parse_args()

    if args.workload in ("all", "none"):
        workloads = list(WORKLOADS.values()) if args.workload == "all" else []
    else:
        workloads = [WORKLOADS[args.workload]]
    reuse_freed_buffers()  # as the CLIs do, so the encode floor is not slowed by page faults
    warm = (0.0, 0.0)
    if args.warm_gb:
        warm = warm_memory(args.warm_gb)
        print(f"memory first touch {warm[0]:.2f} s/GB, second touch {warm[1]:.2f} s/GB", flush=True)
    args.warm = warm
    dbs = ["sqlite", "postgresql"] if args.db == "all" else [args.db]
    results, rows_results = [], []
    for workload in workloads:
        workload_folder(workload, args.data)
        for db in dbs:
            results.append(median_of(args.repeat, functools.partial(
                bench_workload, workload, db, args.data, args.png_compression)))
            print_result(results[-1])
        if args.s3:
            results.append(median_of(args.repeat, functools.partial(
                bench_s3, workload, args.data, args.png_compression)))
            print_result(results[-1])
    for db in dbs if args.rows else ():
        for metadata in ("micro-manager", "compact"):
            rows_results.append(bench_rows(args.rows, metadata, db))
            print(_rows_text(rows_results[-1]), flush=True)
    report = render(results, rows_results, args)
    print("\n" + report)
    if not args.no_record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
            handle.write("\n" + report)


def bench_s3(workload: Workload, data_dir: Path, compression: int | None) -> dict:
    """The same run with storage in a bucket on a moto S3 server over HTTP on loopback."""
    import boto3
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        bucket = f"imaging-db-bench-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        storage = {"storage": "s3", "storage_access": bucket, "s3_endpoint_url": endpoint}
        return bench_workload(workload, "sqlite", data_dir, compression, storage)
    finally:
        server.stop()


def median_of(repeat: int, run) -> dict:
    """Run a benchmark ``repeat`` times; each timing and memory figure is the median of the runs."""
    runs = []
    for i in range(repeat):
        runs.append(run())
        if repeat > 1:
            r = runs[-1]
            print(f"  run {i + 1}/{repeat}: upload {r['upload_s']:.2f} s ({r['upload_fps']:.1f} frames/s; floors: "
                  f"OpenCV {r['floor_fps']:.1f}, imaging_db {r['own_floor_fps']:.1f}; efficiency "
                  f"{r['efficiency']:.2f}, pipeline {r['pipeline_efficiency']:.2f}), "
                  f"download all {r['download_all_s']:.2f} s, "
                  f"filtered {r['download_some_s']:.2f} s", flush=True)
    result = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float) and key not in ("raw_mb", "stored_mb"):
            result[key] = float(np.median([r[key] for r in runs]))
    result["verified_frames"] = sum(r["verified_frames"] for r in runs)
    result["runs"] = repeat
    return result


def print_result(r: dict) -> None:
    print(f"{r['workload']} on {r['db']} + {r['storage']}: upload {r['frames']} frames in {r['upload_s']:.2f} s = "
          f"{r['upload_fps']:.1f} frames/s, {r['upload_mb_s']:.0f} MB/s raw, peak RSS {r['upload_rss_mb']:.0f} MB, "
          f"efficiency {r['efficiency']:.2f} (pipeline {r['pipeline_efficiency']:.2f}); "
          f"download all {r['download_all_s']:.2f} s "
          f"(RSS {r['download_all_rss_mb']:.0f} MB), {r['download_some_frames']} frames "
          f"{r['download_some_s']:.2f} s; {r['verified_frames']} frames bit-exact", flush=True)


def _floors_text(r: dict) -> str:
    return ", ".join(f"{seconds:.2f} s into a {column} column" for column, seconds in r["server_floors"].items())


def render(results: list[dict], rows_results: list[dict], args) -> str:
    lines = [
        f"## {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} (commit {commit()})",
        "",
        f"Machine: {machine()}. Medians of {args.repeat} run(s). png_compression: "
        f"{'default (ISA-L level 3)' if args.png_compression is None else args.png_compression}. "
        f"Memory warmed: {args.warm_gb:g} GB (first touch {args.warm[0]:.2f} s/GB, then {args.warm[1]:.2f} s/GB).",
        "",
    ]
    if results:
        lines += [
            "| workload | db | storage | upload s | frames/s | raw MB/s | stored/raw | upload peak RSS MB | "
            "OpenCV floor frames/s | efficiency | imaging_db encoder floor frames/s | pipeline efficiency | "
            "download all s | download all RSS MB | filtered frames | "
            "filtered s | bit-exact frames |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            lines.append(
                f"| {r['workload']} | {r['db']} | {r['storage']} | {r['upload_s']:.2f} | {r['upload_fps']:.1f} | "
                f"{r['upload_mb_s']:.0f} | {r['stored_mb'] / r['raw_mb']:.3f} | {r['upload_rss_mb']:.0f} | "
                f"{r['floor_fps']:.1f} | {r['efficiency']:.2f} | {r['own_floor_fps']:.1f} | "
                f"{r['pipeline_efficiency']:.2f} | {r['download_all_s']:.2f} | "
                f"{r['download_all_rss_mb']:.0f} | {r['download_some_frames']} | {r['download_some_s']:.2f} | "
                f"{r['verified_frames']} |"
            )
        lines.append("")
    lines.extend(f"- {_rows_text(r)}." for r in rows_results)
    return "\n".join(lines) + "\n"


def _rows_text(r: dict) -> str:
    text = (f"{'PostgreSQL' if r['db'] == 'postgresql' else 'SQLite'}, {r['rows']} frame rows with {r['metadata']} "
            f"metadata ({r['metadata_mb']:.0f} MB of JSON): insert with its summary {r['insert_s']:.2f} s "
            f"(summary made beforehand as the upload's workers do: {r['summary_s']:.2f} s); c/z filter query "
            f"{r['query_ms']:.1f} ms ({r['query_rows']} rows)")
    if r["server_floors"]:
        text += f"; server alone, COPY of the prebuilt metadata: {_floors_text(r)}"
    return text


if __name__ == "__main__":
    main()
