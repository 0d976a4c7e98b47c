"""Benchmark the Python API's get_stack on the medium workload of benchmarks/bench.py.

    python benchmarks/bench_api.py [--data benchmarks/data] [--repeat 3] [--pairs 3] [--no-s3] [--no-record]

The medium workload (400 frames of 1024x1024 uint16, 839 MB) is uploaded once
into an embedded SQLite database and a local folder, and once more into a
bucket on a moto S3 server over HTTP on loopback. Then, for each storage,
``--repeat`` fresh Python processes each do:

- what a user's script does: ``import imaging_db``, ``imaging_db.connect()``,
  ``db.get_stack(id)`` of the whole dataset into memory; its frames/s
  ("first", imports done on the way included) and the process's peak RSS
  (VmHWM) against the array's size;
- then ``--pairs`` times: the decode floor, then get_stack again ("then"). The
  floor is all cores decoding the same stored PNGs with ``decode_png_into`` (the
  API's decoder) into one preallocated array, in a thread pool, from memory,
  with no I/O and no checksum:
  get_stack's frames/s over it is the share of the machine's decoding speed
  the API keeps. Timing them in pairs, in one process, lets both see the same
  machine (other work on it moves both);
- every frame of the last array checked bit for bit against the source TIFF page.

And a lazy stack's maximum projection over z of one (p, t, c): how many frames
the storage was asked for (the target: exactly the number of slices), and that
it equals the projection of the eager array.

Targets: frames/s >= 0.8 of the floor; peak RSS <= array + 150 MB; S3 within 2x of local.
Results are printed and appended to benchmarks/RESULTS.md.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402  (puts the repository on sys.path)

LOCAL_ID = "BM-2018-11-07-09-35-54-0001"
S3_ID = "BM-2018-11-07-09-35-54-0002"
RSS_TARGET_MB = 150
FLOOR_TARGET = 0.8

# Run in a fresh process: what a user's script does (import, connect, get_stack), timed, and its peak RSS;
# then, in the same process, the decode floor and get_stack alternately (each pair a minute apart at most, so
# that both see the same machine: other work on it moves both), and every frame checked against the source.
CHILD = r"""
import concurrent.futures, json, os, sys, time
from pathlib import Path
started = time.perf_counter()
import imaging_db
db = imaging_db.connect()
ready = time.perf_counter()
def status():
    return {k: int(v.split()[0]) / 1024 for k, v in (l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
            if k in ("VmRSS", "VmHWM")}
rss_ready = status()["VmRSS"]
start = time.perf_counter()
stack = db.get_stack(sys.argv[1])
first = time.perf_counter() - start
peak = status()["VmHWM"]
frames, nbytes = int(stack[..., 0, 0].size), stack.nbytes
del stack

import numpy as np
from imaging_db.images.png import decode_png, decode_png_into
folder = Path(sys.argv[2])
pngs = [path.read_bytes() for path in sorted(folder.glob("*.png"))]
frame = decode_png(pngs[0])
pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count())
pairs = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    decoded = np.empty((len(pngs), *frame.shape), dtype=frame.dtype)  # as get_stack: into one preallocated array
    for _frame in pool.map(lambda i: decode_png_into(pngs[i], decoded[i]), range(len(pngs))):
        pass
    floor = len(pngs) / (time.perf_counter() - start)
    del decoded
    start = time.perf_counter()
    stack = db.get_stack(sys.argv[1])
    pairs.append((floor, frames / (time.perf_counter() - start)))
    if len(pairs) < int(sys.argv[3]):
        del stack

sys.path.insert(0, sys.argv[5])
import numpy as np
import bench
checked = 0
coords = {d: list(stack.coords[d].values) for d in "ptcz"}
for (c, z, t, p), pixels in bench.source_frames(Path(sys.argv[4])):
    got = stack.values[coords["p"].index(p), coords["t"].index(t), coords["c"].index(c), coords["z"].index(z)]
    if not np.array_equal(got, pixels):
        raise SystemExit(f"frame c{c} z{z} t{t} p{p} differs from the source")
    checked += 1
print(json.dumps({"first_seconds": first, "frames": frames, "nbytes": nbytes, "peak_rss_mb": peak,
                  "rss_before_mb": rss_ready, "import_connect_s": ready - started, "pairs": pairs,
                  "checked": checked}))
"""

# A lazy stack's maximum projection over z of one (p, t, c), counting the storage's reads.
LAZY_CHILD = r"""
import json, sys, threading, time
import numpy as np
import imaging_db
from imaging_db.filestorage import storage_class
db = imaging_db.connect()
reads, lock = [], threading.Lock()
for kind in ("local", "s3"):
    cls = storage_class(kind)
    def counting(self, key, _get=cls.get):
        with lock:
            reads.append(key)
        return _get(self, key)
    cls.get = counting
lazy = db.get_stack(sys.argv[1], lazy=True)
p, t, c = (int(v) for v in sys.argv[2:5])
built = len(reads)
start = time.perf_counter()
projection = lazy.sel(p=p, t=t, c=c).max("z").compute()
seconds = time.perf_counter() - start
read = len(reads) - built
eager = db.get_stack(sys.argv[1], channels=[c], times=[t], positions=[p])
same = bool(np.array_equal(projection.values, eager.values.max(axis=(0, 1, 2, 3))))
print(json.dumps({"reads_when_built": built, "frames_read": read, "slices": lazy.sizes["z"], "seconds": seconds,
                  "chunks": lazy.data.npartitions, "same_as_eager": same}))
"""


# The memory floor of the libraries get_stack loads (numpy, pandas, xarray, dask, SQLAlchemy; boto3 and its S3
# client for S3): a fresh process's peak RSS for a get_stack of one frame. What the full get_stack takes over
# its array and this floor is its own: frames in flight, threads, buffers.
ONE_FRAME_CHILD = r"""
import json, sys
import imaging_db
db = imaging_db.connect()
stack = db.get_stack(sys.argv[1], channels=[0], slices=[0], times=[0], positions=[0])
peak = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps({"peak_rss_mb": peak, "nbytes": stack.nbytes}))
"""


def run_child(script: str, args: list[str], env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def upload(source: Path, serial: str, storage: dict, env: dict, tmp: Path) -> float:
    config = tmp / f"config-{serial}.json"
    config.write_text(json.dumps({"upload_type": "frames", "frames_format": "ome_tiff", **storage}))
    csv = tmp / f"files-{serial}.csv"
    csv.write_text(f"dataset_id,file_name\n{serial},{source}\n")
    run = bench.run_cli([str(Path(sys.executable).parent / "data_uploader"), "--csv", str(csv),
                         "--config", str(config)], env)
    return run.wall


def bench_storage(label: str, serial: str, png_folder: Path, source: Path, env: dict, repeat: int,
                  pairs: int) -> dict:
    workload = bench.WORKLOADS["medium"]
    runs = []
    for i in range(repeat):
        bench.settle()
        run = run_child(CHILD, [serial, str(png_folder), str(pairs), str(source), str(HERE)], env)
        floors = [floor for floor, _ in run["pairs"]]
        run["floor_fps"] = float(np.median(floors))
        run["first_fps"] = run["frames"] / run["first_seconds"]
        run["first_ratio"] = run["first_fps"] / run["floor_fps"]
        run["fps"] = float(np.median([fps for _, fps in run["pairs"]]))
        run["ratio"] = float(np.median([fps / floor for floor, fps in run["pairs"]]))
        runs.append(run)
        print(f"  {label} run {i + 1}/{repeat}: first get_stack {run['first_seconds']:.2f} s = {run['first_fps']:.1f} "
              f"frames/s ({run['first_ratio']:.2f} of the floor), then {run['fps']:.1f} frames/s ({run['ratio']:.2f} "
              f"of the floor, pairs " + ", ".join(f"{fps:.0f}/{floor:.0f}" for floor, fps in run["pairs"]) + "), "
              f"peak RSS {run['peak_rss_mb']:.0f} MiB (array {run['nbytes'] / 2**20:.0f} MiB, "
              f"{run['rss_before_mb']:.0f} MiB before reading), {run['checked']} frames bit-exact, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    one = [run_child(ONE_FRAME_CHILD, [serial], env) for _ in range(repeat)]
    floor_mb = float(np.median([(r["peak_rss_mb"] * 2**20 - r["nbytes"]) / 1e6 for r in one]))
    print(f"  {label} libraries' floor (peak RSS of a get_stack of one frame, less its array): {floor_mb:.0f} MB",
          flush=True)
    p, t, c = workload.nbr_positions - 1, workload.nbr_times // 2, 0
    lazy = run_child(LAZY_CHILD, [serial, str(p), str(t), str(c)], env)
    print(f"  {label} lazy max over z of (p {p}, t {t}, c {c}): {lazy['frames_read']} frames read "
          f"({lazy['slices']} slices, {lazy['reads_when_built']} when built), {lazy['seconds']:.2f} s, "
          f"same as eager: {lazy['same_as_eager']}", flush=True)
    result = {"storage": label, "runs": repeat, "lazy": lazy, "frames": runs[0]["frames"],
              "array_mb": runs[0]["nbytes"] / 1e6, "checked": sum(r["checked"] for r in runs)}
    for key in ("first_seconds", "first_fps", "first_ratio", "fps", "floor_fps", "ratio", "peak_rss_mb",
                "rss_before_mb", "import_connect_s"):
        result[key] = float(np.median([r[key] for r in runs]))
    result["peak_rss_mb"] *= 2**20 / 1e6  # MiB -> MB, as the array
    result["rss_before_mb"] *= 2**20 / 1e6
    result["rss_over_array_mb"] = result["peak_rss_mb"] - result["array_mb"]
    result["libraries_floor_mb"] = floor_mb
    result["own_mb"] = result["rss_over_array_mb"] - floor_mb
    return result


def start_moto() -> tuple[object, str]:
    import logging

    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def render(results: list[dict], args) -> str:
    lines = [
        f"## {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} Python API get_stack (commit {bench.commit()})",
        "",
        f"Machine: {bench.machine()}, xarray {__import__('xarray').__version__}, "
        f"dask {__import__('dask').__version__}. Medians of {args.repeat} fresh process(es) per storage, each: "
        "import imaging_db, connect(), get_stack of the whole medium dataset into memory (first: its time and the "
        f"process's peak RSS), then {args.pairs} pairs of (decode floor, get_stack) in the same process (then: "
        f"median frames/s and median ratio of the pairs). Decode floor: {os.cpu_count()} threads decoding the stored "
        "PNGs with decode_png_into (the API's decoder) into one preallocated array, from memory, no I/O, no "
        "checksum. The moto server runs in the benchmark's process, on "
        f"the same cores. Memory warmed: {args.warm_gb:g} GB. Load average at the end: "
        f"{os.getloadavg()[0]:.1f}. Targets: frames/s >= {FLOOR_TARGET} of the floor, peak RSS <= array + "
        f"{RSS_TARGET_MB} MB, S3 within 2x of local; lazy max over z of one (p, t, c) reads only its slices. "
        "Libraries' floor: the peak RSS of a fresh process's get_stack of one frame (all the libraries get_stack "
        "loads, the S3 client included), less that frame; get_stack's own: RSS - array - that floor.",
        "",
        "| workload | storage | frames | first get_stack s | first frames/s | first / floor | then frames/s | "
        "decode floor frames/s | then / floor | array MB | peak RSS MB | RSS - array MB | RSS before reading MB | "
        "libraries' floor MB | get_stack's own MB | lazy max-z frames read / slices | lazy s | bit-exact frames |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lazy = r["lazy"]
        lines.append(
            f"| medium | {r['storage']} | {r['frames']} | {r['first_seconds']:.2f} | {r['first_fps']:.1f} | "
            f"{r['first_ratio']:.2f} | {r['fps']:.1f} | {r['floor_fps']:.1f} | {r['ratio']:.2f} | "
            f"{r['array_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['rss_over_array_mb']:.0f} | "
            f"{r['rss_before_mb']:.0f} | {r['libraries_floor_mb']:.0f} | {r['own_mb']:.0f} | "
            f"{lazy['frames_read']} / {lazy['slices']} | {lazy['seconds']:.2f} | "
            f"{r['checked']} |")
    if len(results) == 2:
        lines += ["", f"S3 / local get_stack time: first {results[1]['first_seconds'] / results[0]['first_seconds']:.2f}x, "
                      f"then {results[0]['fps'] / results[1]['fps']:.2f}x."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "data", help="where the workloads are written")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per storage; medians reported")
    parser.add_argument("--pairs", type=int, default=3,
                        help="decode floor / get_stack pairs timed in each process after its first get_stack")
    parser.add_argument("--no-s3", action="store_true", help="only the local folder")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    parser.add_argument("--warm-gb", type=float, default=4.0, help="touch this much memory once before timing")
    args = parser.parse_args()

    source = bench.workload_folder(bench.WORKLOADS["medium"], args.data)
    if args.warm_gb:
        bench.warm_memory(args.warm_gb)
    results = []
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="imaging_db_bench_api_") as tmp:
            tmp = Path(tmp)
            env = {**os.environ, "IMAGING_DB_HOME": str(tmp / "home")}
            bench.read_through(source)
            seconds = upload(source, LOCAL_ID, {"storage": "local", "storage_access": str(tmp / "storage")}, env, tmp)
            print(f"uploaded {LOCAL_ID} to SQLite + local in {seconds:.1f} s", flush=True)
            storage: dict | None = None
            if not args.no_s3:
                import boto3

                server, endpoint = start_moto()
                env.update({k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                         "AWS_DEFAULT_REGION")})
                bucket = f"imaging-db-bench-{uuid.uuid4().hex[:8]}"
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
                storage = {"storage": "s3", "storage_access": bucket, "s3_endpoint_url": endpoint}
                seconds = upload(source, S3_ID, storage, env, tmp)
                print(f"uploaded {S3_ID} to SQLite + S3 (moto) in {seconds:.1f} s", flush=True)
            png_folder = tmp / "storage" / "raw_frames" / LOCAL_ID  # the same PNGs as in the bucket
            results.append(bench_storage("local", LOCAL_ID, png_folder, source, env, args.repeat, args.pairs))
            if storage:
                results.append(bench_storage("s3", S3_ID, png_folder, source, env, args.repeat, args.pairs))
    finally:
        if server is not None:
            server.stop()
    report = render(results, args)
    print("\n" + report)
    if not args.no_record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
            handle.write("\n" + report)


if __name__ == "__main__":
    main()
