"""Measure OpenCV's PNG options on benchmark frames: encode time on one core, size, losslessness.

    python benchmarks/png_settings.py [--workload medium|large] [--frames N]

Writes the workload if needed (see bench.py), encodes N of its frames with
each setting, checks every result decodes bit-exactly, prints a table and
appends it to benchmarks/RESULTS.md.
"""

import argparse
import datetime
import time
from pathlib import Path

import cv2
import numpy as np

from bench import HERE, WORKLOADS, commit, machine, source_frames, workload_folder

STRATEGIES = {
    "default": cv2.IMWRITE_PNG_STRATEGY_DEFAULT,
    "filtered": cv2.IMWRITE_PNG_STRATEGY_FILTERED,
    "huffman only": cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
    "rle": cv2.IMWRITE_PNG_STRATEGY_RLE,
}
FILTERS = {
    "none": cv2.IMWRITE_PNG_FILTER_NONE,
    "sub": cv2.IMWRITE_PNG_FILTER_SUB,
    "up": cv2.IMWRITE_PNG_FILTER_UP,
    "paeth": cv2.IMWRITE_PNG_FILTER_PAETH,
    "all (adaptive)": cv2.IMWRITE_PNG_ALL_FILTERS,
}


def settings() -> list[tuple[str, list[int]]]:
    """(label, imencode parameters) for every option measured."""
    found = [("OpenCV default (imaging_db default)", [])]
    for level in range(10):
        found.append((f"png_compression {level} (level {level}, default strategy)",
                      [cv2.IMWRITE_PNG_COMPRESSION, level]))
    for name, strategy in STRATEGIES.items():
        found.append((f"strategy {name}", [cv2.IMWRITE_PNG_STRATEGY, strategy]))
    for name, png_filter in FILTERS.items():
        found.append((f"filter {name}", [cv2.IMWRITE_PNG_FILTER, png_filter]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="medium")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    folder = workload_folder(WORKLOADS[args.workload], args.data)
    frames = []
    for _, pixels in source_frames(folder):
        frames.append(pixels)
        if len(frames) == args.frames:
            break
    raw = sum(f.nbytes for f in frames)
    lines = [
        f"## PNG settings, {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} (commit {commit()})",
        "",
        f"Machine: {machine()}. {len(frames)} frames of the {args.workload} workload, one core.",
        "",
        "| setting | ms/frame | size / raw | lossless |",
        "|---|---|---|---|",
    ]
    for label, params in settings():
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            encoded = [cv2.imencode(".png", f, params)[1] for f in frames]
            best = min(best, time.perf_counter() - start)
        lossless = all(np.array_equal(cv2.imdecode(e, cv2.IMREAD_UNCHANGED), f) for e, f in zip(encoded, frames,
                                                                                            strict=True))
        size = sum(len(e) for e in encoded) / raw
        lines.append(f"| {label} | {best / len(frames) * 1000:.1f} | {size:.3f} | {'yes' if lossless else 'NO'} |")
        print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    if not args.no_record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
            handle.write("\n" + report)


if __name__ == "__main__":
    main()
