"""A BigTIFF OME-TIFF over 4 GiB uploads and downloads bit-exact, each CLI staying under 300 MB of memory.

Run only when asked (``make test-large``, or ``pytest -m large``): it writes
about 4.4 GB of input and 2 GB each of stored and downloaded PNGs (all
removed afterwards; on S3 the stored PNGs live in the moto server's memory,
in the test process) and takes a few minutes on two cores.

Each CLI runs as its own process, through a tiny wrapper that calls the
console script's ``main`` and, just before the process exits, records the
kernel's high-water mark of its resident memory (``VmHWM``): the peak of that
process alone, whatever the memory of the test process that started it.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import tifffile

from imaging_db.example_data import MM_TAG, write_large_mm_ometiff
from imaging_db.filestorage import make_storage
from imaging_db.images.png import decode_png

pytestmark = [pytest.mark.large, pytest.mark.timeout(3600)]

ID = "ML-2018-11-07-09-35-54-0010"
CHANNELS = ["GFP", "Cy5"]
NBR_SLICES, NBR_TIMES, NBR_POSITIONS = 11, 12, 8  # 2112 frames
SHAPE = (1024, 1024)  # 2 MiB a frame: 4.13 GiB of pixels
PEAK_RSS_LIMIT = 300 * 2**20

# Runs the console script's main() and writes this process's peak resident memory (VmHWM, bytes) to a file.
_WRAPPER = """
import importlib, sys
module, report = sys.argv[1], sys.argv[2]
sys.argv = [module.rsplit(".", 1)[1], *sys.argv[3:]]
try:
    code = importlib.import_module(module).main()
finally:
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    with open(report, "w") as handle:
        handle.write(str(hwm))
sys.exit(code)
"""


def run_cli(module: str, args: list[str], workdir: Path) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run a CLI in its own process; return (wall seconds, peak RSS in bytes, the completed process)."""
    report = workdir / f"{module.rsplit('.', 1)[1]}.vmhwm"
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", _WRAPPER, module, str(report), *args],
                         capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    assert run.returncode == 0, f"{module} failed:\n{run.stdout}\n{run.stderr[-5000:]}"
    return seconds, int(report.read_text()), run


def source_frame_digests(path: Path) -> dict[tuple[int, int, int, int], str]:
    """sha256 of each page's pixel bytes, read from the file page by page (one frame in memory at a time)."""
    digests = {}
    with tifffile.TiffFile(path) as tif, open(path, "rb") as raw:
        tif.pages.cache = False
        for page in tif.pages:
            meta = page.tags[MM_TAG].value
            key = (meta["ChannelIndex"], meta["SliceIndex"], meta["FrameIndex"], meta["PositionIndex"])
            assert page.dtype == np.uint16 and page.shape == SHAPE and tif.byteorder == "<"
            assert len(page.dataoffsets) == 1 and page.databytecounts[0] == 2 * SHAPE[0] * SHAPE[1]
            raw.seek(page.dataoffsets[0])
            digests[key] = hashlib.sha256(raw.read(page.databytecounts[0])).hexdigest()
    return digests


@pytest.fixture
def workdir(tmp_path):
    """A folder for the test's gigabytes, removed afterwards whatever happens (pytest keeps old tmp_paths)."""
    folder = tmp_path / "large"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("storage_kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_bigtiff_over_4_gib_round_trips_in_bounded_memory(storage_kind, workdir, request):
    source = workdir / "acq" / "big_MMStack_Pos0.ome.tif"
    start = time.perf_counter()
    write_large_mm_ometiff(source, CHANNELS, NBR_SLICES, NBR_TIMES, NBR_POSITIONS, shape=SHAPE)
    write_seconds = time.perf_counter() - start
    size = source.stat().st_size
    nbr_frames = len(CHANNELS) * NBR_SLICES * NBR_TIMES * NBR_POSITIONS
    assert size > 2**32, "the file must need BigTIFF's 64-bit offsets"

    if storage_kind == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        storage = {"storage": "s3", "storage_access": request.getfixturevalue("s3_bucket"),
                   "s3_endpoint_url": endpoint}
        storage_flags = ["--storage", "s3", "--storage_access", storage["storage_access"],
                         "--s3_endpoint_url", endpoint]
    else:
        storage = {"storage": "local", "storage_access": str(workdir / "storage")}
        storage_flags = ["--storage_access", storage["storage_access"]]
    login = workdir / "db.json"
    login.write_text(json.dumps({"drivername": "sqlite", "dbname": str(workdir / "db.sqlite")}))
    config = workdir / "config.json"
    config.write_text(json.dumps({"upload_type": "frames", "frames_format": "ome_tiff", **storage}))
    csv_path = workdir / "files.csv"
    csv_path.write_text(f"dataset_id,file_name,description\n{ID},{source},4 GiB BigTIFF\n")

    up_seconds, up_rss, up = run_cli("imaging_db.cli.data_uploader",
                                     ["--csv", str(csv_path), "--config", str(config), "--login", str(login),
                                      "--no-progress"], workdir)
    assert f"{ID}: {nbr_frames} frames" in up.stdout
    stored = make_storage(storage["storage"], storage["storage_access"],
                          s3_endpoint_url=storage.get("s3_endpoint_url")).list(f"raw_frames/{ID}/")
    stored_bytes = sum(o.size for o in stored.values())
    assert len(stored) == nbr_frames

    dest = workdir / "dl"
    down_seconds, down_rss, down = run_cli("imaging_db.cli.data_downloader",
                                           ["--id", ID, "--dest", str(dest), "--login", str(login),
                                            *storage_flags, "--no-progress"], workdir)
    assert f"{ID}: {nbr_frames} frames" in down.stdout

    figures = (
        f"\nlarge BigTIFF round trip ({storage_kind} storage): {size / 1e9:.2f} GB ({size / 2**30:.2f} GiB) file, "
        f"{nbr_frames} frames of {SHAPE[1]}x{SHAPE[0]} uint16, written in {write_seconds:.0f} s; "
        f"{stored_bytes / 1e9:.2f} GB of PNG stored\n"
        f"  data_uploader:   {up_seconds:6.1f} s wall, peak RSS {up_rss / 2**20:6.1f} MiB\n"
        f"  data_downloader: {down_seconds:6.1f} s wall, peak RSS {down_rss / 2**20:6.1f} MiB\n"
    )
    print(figures, file=sys.stderr)

    # Bit for bit: every downloaded PNG decodes to exactly the pixel bytes of its page in the source.
    expected = source_frame_digests(source)
    assert len(expected) == nbr_frames
    engine = sa.create_engine(f"sqlite:///{workdir / 'db.sqlite'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT channel_idx, slice_idx, time_idx, pos_idx, file_name FROM frames")).all()
    engine.dispose()
    assert len(rows) == nbr_frames
    pngs = sorted(p.name for p in (dest / ID).glob("*.png"))
    assert pngs == sorted(r.file_name for r in rows)
    for c, z, t, p, file_name in rows:
        pixels = decode_png((dest / ID / file_name).read_bytes())
        assert pixels.dtype == np.uint16 and pixels.shape == SHAPE
        digest = hashlib.sha256(pixels.astype("<u2", copy=False).tobytes()).hexdigest()
        assert digest == expected[(c, z, t, p)], f"frame c{c} z{z} t{t} p{p} differs from the source"

    assert up_rss < PEAK_RSS_LIMIT and down_rss < PEAK_RSS_LIMIT, figures
