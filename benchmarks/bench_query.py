"""Benchmark the ``query_data`` command on a database of 1,000 datasets and 100,000 frames.

    python benchmarks/bench_query.py [--db sqlite|postgresql|all] [--cache DIR] [--repeat 5] [--no-record]

The database holds 950 frames datasets (100,000 frames in all, each with
Micro-Manager-like metadata of about 3.4 kB: ``example_data.mm_frame_metadata``
with the exposure, camera and binning varying by dataset and channel) and 50
file datasets, over six projects, three microscopes and three years; global
metadata is ``parse_ml_name``'s fields (``plate_id``, ``stack_nbr``,
``protein_name``) and a Micro-Manager summary, at the top level as an
ome_tiff upload records it, or under ``Summary`` as a tif_folder upload does
(one dataset in three). It is built once through
``Database.insert_frames_dataset`` and kept: the SQLite file under ``--cache``
(default: the temporary folder), the PostgreSQL one in a scratch database
``imaging_db_bench_<random>`` made for the run and dropped after it.

Frame metadata filters are answered from each dataset's frames summary
(``frames_meta_summary``, made as the datasets are registered), which lists up
to 256 distinct values of a key per dataset: a number that changes with every
frame (``ElapsedTime-ms``) and a text that does (``UUID``) are the last two
queries. Past 256 values (datasets of more frames than these) the frames of
the datasets that may match are read: 0.56 s of search on this database's
100,000 frames on SQLite, 0.20 s on PostgreSQL, when the lists held 64
(benchmarks/RESULTS.md, 2026-12-06).

Each query is the whole command (``query_data ... --login``) in its own
process, Python start-up included, timed from the outside; the median of
``--repeat`` runs is reported after one untimed run that warms the caches.
Results are printed and appended to benchmarks/RESULTS.md.
"""

import argparse
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from imaging_db.database.frames_summary import MAX_LISTED  # noqa: E402
from imaging_db.example_data import mm_frame_metadata, mm_summary  # noqa: E402
from imaging_db.json_text import to_json_text  # noqa: E402

NBR_FRAMES_DATASETS = 950
NBR_FILE_DATASETS = 50
# (channels, slices, times, positions): 900 datasets of 105 frames and 50 of 110 make 100,000 frames.
LAYOUTS = ((3, 5, 7, 1), (1, 15, 7, 1), (3, 35, 1, 1), (3, 7, 1, 5))
LAST_LAYOUT = (2, 5, 11, 1)
PROJECTS = ("ML", "SMS", "KID", "BM", "ISP", "RR")
MICROSCOPES = ("Leica SP8 confocal", "Nikon Ti2 spinning disk", "Zeiss LSM 880")
CHANNELS = ("GFP", "DAPI", "RFP", "Cy5", "Brightfield", "Retardance")
PROTEINS = ("TOPOR", "H2B", "LMNB1", "SEC61B", "TOMM20", "ACTB", "TUBA1B", "NPM1", "FBL", "CANX", "LAMP1",
            "RAB5A", "PXN", "MYH9", "DSP", "CETN2", "ATP2A2", "GJA1", "CTNNB1", "ST6GAL1")
CAMERAS = ("Andor Zyla", "Hamamatsu ORCA", "Photometrics Prime")
EXPOSURES = (10.0, 20.0, 50.0, 100.0, 200.0, 500.0)

# name, query_data arguments: what each timed command asks.
QUERIES = (
    ("no filter", []),
    ("--project_id + dates", ["--project_id", "ML", "--start_date", "2019-01-01", "--end_date", "2019-06-30"]),
    ("--meta global =", ["--meta", "protein_name=TOPOR"]),
    ("--meta global >", ["--meta", "Slices>20"]),
    ("--meta global, dotted list", ["--meta", "Summary.ChNames=GFP"]),
    ("--meta frame = (text)", ["--meta", "Camera=Photometrics Prime"]),
    ("--meta frame = (number)", ["--meta", "Exposure-ms=500"]),
    ("--meta frame >", ["--meta", "Exposure-ms>300"]),
    ("--meta frame, no match", ["--meta", "Exposure-ms>1000"]),
    ("--meta frame + --project_id", ["--project_id", "ML", "--meta", "Exposure-ms>300"]),
    # A new value in every frame: 105-110 per dataset, listed in its summary (up to 256 are).
    ("--meta frame = (number, one per frame)", ["--meta", "ElapsedTime-ms=1010"]),
    ("--meta frame = (text, one per frame)", ["--meta", "UUID=00000002-0000-0014-0000-000000000000"]),
)


def dataset_plan(number: int, rng: random.Random) -> dict:
    """What dataset ``number`` is: its id, columns, layout and the values its metadata varies by."""
    project = PROJECTS[number % len(PROJECTS)]
    when = datetime.datetime(2018, 1, 1) + datetime.timedelta(minutes=rng.randrange(3 * 365 * 24 * 60))
    serial = f"{project}-{when:%Y-%m-%d-%H-%M-%S}-{number:04d}"
    frames = number < NBR_FRAMES_DATASETS
    layout = (LAST_LAYOUT if number >= NBR_FRAMES_DATASETS - 50 else LAYOUTS[number % len(LAYOUTS)]) if frames else None
    protein = PROTEINS[rng.randrange(len(PROTEINS))]
    return {
        "number": number, "serial": serial, "date_time": when, "frames": frames, "layout": layout,
        "microscope": MICROSCOPES[rng.randrange(len(MICROSCOPES))],
        "description": f"{protein} live imaging, plate {rng.randrange(1, 40)}, "
                       f"{rng.choice(['kidney organoid', 'iPSC', 'HEK293T', 'zebrafish'])} "
                       f"{rng.choice(['day 1', 'day 3', 'after drug', 'control'])}",
        "channels": rng.sample(CHANNELS, layout[0]) if frames else [],
        "exposures": [rng.choice(EXPOSURES) for _ in range(layout[0])] if frames else [],
        "camera": rng.choice(CAMERAS),
        "protein": protein,
        "plate": f"P{rng.randrange(1, 400):04d}",
        "stack": rng.randrange(1, 100),
    }


def global_metadata(plan: dict) -> dict:
    c, z, t, p = plan["layout"] or (1, 1, 1, 1)
    meta = {"file_origin": f"/data/{plan['plate']}_{plan['stack']}_{plan['protein']}_PyProcessed.ome.tif",
            "plate_id": plan["plate"], "stack_nbr": plan["stack"], "protein_name": plan["protein"]}
    if plan["frames"]:
        summary = mm_summary(plan["channels"], z, t, p, (2048, 2048), "uint16", prefix=plan["serial"])
        if plan["number"] % 3 == 0:  # as tif_folder records metadata.txt
            meta["Summary"] = summary
        else:  # as ome_tiff records the IJMetadata Info
            meta.update(summary)
    return meta


def frame_rows(plan: dict):
    """The dataset's frames rows, metadata as JSON text (serialized here, not in the timed queries)."""
    nbr_c, nbr_z, nbr_t, nbr_p = plan["layout"]
    names = plan["channels"]
    for p in range(nbr_p):
        for t in range(nbr_t):
            for z in range(nbr_z):
                for c in range(nbr_c):
                    meta = mm_frame_metadata(c, z, t, p, names)
                    meta["Exposure-ms"] = plan["exposures"][c]
                    meta["Camera"] = plan["camera"]
                    name = f"im_c{c:03d}_z{z:03d}_t{t:03d}_p{p:03d}.png"
                    yield {"channel_idx": c, "slice_idx": z, "time_idx": t, "pos_idx": p, "channel_name": names[c],
                           "file_name": name, "sha256": uuid.uuid5(uuid.NAMESPACE_URL, plan["serial"] + name).hex * 2,
                           "metadata_json": to_json_text(meta)}


def build(url) -> dict:
    """Fill an empty database with the benchmark's datasets; return what was made."""
    from imaging_db.database.db_ops import Database, DatasetRecord

    database = Database(url)
    database.create_tables()
    rng = random.Random(20181107)
    nbr_frames = 0
    start = time.perf_counter()
    for number in range(NBR_FRAMES_DATASETS + NBR_FILE_DATASETS):
        plan = dataset_plan(number, rng)
        record = DatasetRecord(plan["serial"], plan["date_time"], plan["frames"], plan["description"],
                               plan["microscope"])
        if plan["frames"]:
            c, z, t, p = plan["layout"]
            layout = {"storage_dir": f"raw_frames/{plan['serial']}", "nbr_frames": c * z * t * p,
                      "im_width": 2048, "im_height": 2048, "im_colors": 1, "bit_depth": "uint16",
                      "nbr_slices": z, "nbr_channels": c, "nbr_timepoints": t, "nbr_positions": p,
                      "metadata_json": global_metadata(plan)}
            database.insert_frames_dataset(record, layout, frame_rows(plan))
            nbr_frames += c * z * t * p
        else:
            name = f"{plan['plate']}_{plan['stack']}_{plan['protein']}_PyProcessed.tif"
            database.insert_file_dataset(record, {"storage_dir": f"raw_files/{plan['serial']}", "file_name": name,
                                                  "metadata_json": global_metadata(plan), "sha256": "0" * 64})
        if number % 100 == 99:
            print(f"  {number + 1} datasets, {nbr_frames} frames, {time.perf_counter() - start:.1f} s", flush=True)
    if url.get_backend_name() == "postgresql":
        # As autovacuum would soon after such a load: the planner's statistics and the visibility map.
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    database.dispose()
    return {"datasets": NBR_FRAMES_DATASETS + NBR_FILE_DATASETS, "frames": nbr_frames,
            "build_s": time.perf_counter() - start}


class PostgresDatabase:
    """A scratch database ``imaging_db_bench_<random>`` on the local PostgreSQL server, dropped on exit."""

    def __init__(self, host="127.0.0.1", port=5432, user="postgres"):
        import sqlalchemy as sa
        from sqlalchemy.engine import URL

        self.sa = sa
        self.name = f"imaging_db_bench_{uuid.uuid4().hex[:8]}"
        self.login = {"drivername": "postgres", "username": user, "password": "", "host": host, "port": port,
                      "dbname": self.name}
        self.url = URL.create("postgresql+psycopg2", username=user, host=host, port=port, database=self.name)
        self.admin = sa.create_engine(self.url.set(database="postgres"), isolation_level="AUTOCOMMIT")

    def __enter__(self):
        with self.admin.connect() as conn:
            conn.execute(self.sa.text(f'CREATE DATABASE "{self.name}"'))
        return self

    def __exit__(self, *exc):
        with self.admin.connect() as conn:
            conn.execute(self.sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def sqlite_database(cache: Path) -> tuple[Path, dict]:
    """The benchmark's SQLite database, built into ``cache`` the first time (named by schema revision)."""
    from sqlalchemy.engine import URL

    from imaging_db.database.migrate import HEAD

    # Named by what shapes it: the schema revision, the datasets, and how many values a summary lists.
    path = cache / f"bench_query_rev{HEAD}_{NBR_FRAMES_DATASETS + NBR_FILE_DATASETS}_listed{MAX_LISTED}.sqlite"
    if path.exists():
        return path, {"built": "cached"}
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    print(f"building {path} (once)", flush=True)
    made = build(URL.create("sqlite+pysqlite", database=str(partial)))
    partial.rename(path)
    return path, made


def run_query(login: Path, args: list[str], env: dict) -> float:
    """Wall seconds of one ``query_data`` process, output discarded (it must succeed)."""
    command = [str(Path(sys.executable).parent / "query_data"), "--login", str(login), *args]
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.decode().strip()}")
    return wall


def count_and_search_time(url, args: list[str], repeat: int) -> tuple[int, float]:
    """How many datasets the query finds, and the median seconds of the search alone, in this process."""
    from imaging_db.cli.query_data import build_parser
    from imaging_db.database.db_ops import Database
    from imaging_db.database.search import DatasetFilters, search

    parsed = build_parser().parse_args(args)
    filters = DatasetFilters.make(project_id=parsed.project_id, microscope=parsed.microscope,
                                  start_date=parsed.start_date, end_date=parsed.end_date,
                                  description=parsed.description, parent=parsed.parent, meta=parsed.meta)
    database = Database(url, create=False)
    try:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            found = search(database, filters)
            times.append(time.perf_counter() - start)
    finally:
        database.dispose()
    return len(found), statistics.median(times)


def bench_database(db: str, login: Path, url, repeat: int) -> list[dict]:
    env = {**os.environ, "IMAGING_DB_HOME": str(login.parent / "home")}
    results = []
    for name, args in QUERIES:
        run_query(login, args, env)  # warms the caches (page cache, PostgreSQL's buffers)
        walls = [run_query(login, args, env) for _ in range(repeat)]
        found, search_s = count_and_search_time(url, args, repeat)
        results.append({"db": db, "query": name, "args": args, "datasets": found,
                        "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
                        "search_s": search_s, "load": os.getloadavg()[0]})
        r = results[-1]
        print(f"{db:10s} {name:28s} {found:5d} datasets  command {r['median_s']:.3f} s (min {r['min_s']:.3f}, "
              f"max {r['max_s']:.3f}), search alone {search_s:.3f} s, load {r['load']:.1f}", flush=True)
    return results


def startup_s(repeat: int) -> float:
    """Median wall seconds of a Python process that only imports what query_data imports, for comparison."""
    code = "import imaging_db.cli.query_data, imaging_db.database.search, imaging_db.database.db_ops"
    walls = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls[1:])


def machine() -> str:
    import platform
    import sqlite3

    import sqlalchemy

    cpu = platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB, Python {platform.python_version()}, "
            f"SQLAlchemy {sqlalchemy.__version__}, SQLite {sqlite3.sqlite_version}")


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(results: list[dict], built: dict, args, startup: float, server: str | None) -> str:
    lines = [
        f"## query_data, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} (commit {commit()})",
        "",
        f"Machine: {machine()}{', ' + server if server else ''}. {built['datasets']} datasets, {built['frames']} "
        f"frames with Micro-Manager metadata (about 3.4 kB each), 50 of the datasets file datasets. Each query is "
        f"the whole `query_data` command in its own process, output discarded: median of {args.repeat} runs "
        f"after one warm-up; 'search alone' is `search()` in a running process. Python importing what the "
        f"command imports takes {startup:.3f} s. 'load' is the 1-minute load average when measured.",
        "",
        "| db | query | arguments | datasets found | command s (median) | min s | max s | search alone s | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        shown = " ".join(a if a.startswith("--") else f"`{a}`" for a in r["args"]) or "(none)"
        lines.append(f"| {r['db']} | {r['query']} | {shown} | {r['datasets']} | {r['median_s']:.3f} | "
                     f"{r['min_s']:.3f} | {r['max_s']:.3f} | {r['search_s']:.3f} | {r['load']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "all"), default="all")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "imaging_db_bench_query",
                        help="where the SQLite database is built once and kept")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per query; medians reported")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()

    from sqlalchemy.engine import URL

    results, built, server = [], {}, None
    startup = startup_s(args.repeat)
    print(f"Python start-up with query_data's imports: {startup:.3f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="imaging_db_bench_query_") as tmp:
        tmp = Path(tmp)
        if args.db in ("sqlite", "all"):
            path, made = sqlite_database(args.cache)
            built = made if "frames" in made else {"datasets": NBR_FRAMES_DATASETS + NBR_FILE_DATASETS,
                                                   "frames": 100_000}
            login = tmp / "sqlite_login.json"
            login.write_text(json.dumps({"drivername": "sqlite", "dbname": str(path)}))
            results += bench_database("sqlite", login, URL.create("sqlite+pysqlite", database=str(path)), args.repeat)
        if args.db in ("postgresql", "all"):
            with PostgresDatabase() as pg:
                print(f"building PostgreSQL database {pg.name}", flush=True)
                built = build(pg.url)
                with pg.admin.connect() as conn:
                    server = "PostgreSQL " + conn.exec_driver_sql("SHOW server_version").scalar()
                login = tmp / "pg_login.json"
                login.write_text(json.dumps(pg.login))
                results += bench_database("postgresql", login, pg.url, args.repeat)
    report = render(results, built, args, startup, server)
    print("\n" + report)
    if not args.no_record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
            handle.write("\n" + report)


if __name__ == "__main__":
    main()
