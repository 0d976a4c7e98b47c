"""Measure PNG encoders and their options on benchmark frames: encode time on one core, size, losslessness.

    python benchmarks/png_settings.py [--workload medium|large] [--frames N]

Writes the workload if needed (see bench.py), encodes N of its frames with
imaging_db's encoder (the default, ISA-L levels 0-3, and png_compression
0-9, i.e. standard zlib levels) and with OpenCV's options (its default, each
compression level, strategy and filter), checks every result decodes
bit-exactly, prints a table and appends it to benchmarks/RESULTS.md.
"""

import argparse
import datetime
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from bench import HERE, WORKLOADS, commit, machine, source_frames, workload_folder

from imaging_db.images import png

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


def _isal_level(level: int) -> Callable[[np.ndarray], bytes]:
    def encode(pixels: np.ndarray) -> bytes:
        default, png.DEFAULT_ISAL_LEVEL = png.DEFAULT_ISAL_LEVEL, level
        try:
            return png.encode_png(pixels)
        finally:
            png.DEFAULT_ISAL_LEVEL = default
    return encode


def _opencv(params: list[int]) -> Callable[[np.ndarray], bytes]:
    return lambda pixels: cv2.imencode(".png", pixels, params)[1].tobytes()


def settings() -> list[tuple[str, Callable[[np.ndarray], bytes]]]:
    """(label, encoder) for every option measured."""
    found = [(f"imaging_db default (Sub filter, ISA-L level {png.DEFAULT_ISAL_LEVEL})", png.encode_png)]
    for level in range(4):
        if level != png.DEFAULT_ISAL_LEVEL:
            found.append((f"imaging_db, ISA-L level {level}", _isal_level(level)))
    for level in range(10):
        found.append((f"imaging_db png_compression {level} (Sub filter, zlib level {level})",
                      lambda pixels, level=level: png.encode_png(pixels, level)))
    found.append(("OpenCV default (level 1, RLE strategy, Sub filter)", _opencv([])))
    for level in range(10):
        found.append((f"OpenCV level {level}, default strategy", _opencv([cv2.IMWRITE_PNG_COMPRESSION, level])))
    for name, strategy in STRATEGIES.items():
        found.append((f"OpenCV strategy {name}", _opencv([cv2.IMWRITE_PNG_STRATEGY, strategy])))
    for name, png_filter in FILTERS.items():
        found.append((f"OpenCV filter {name}", _opencv([cv2.IMWRITE_PNG_FILTER, png_filter])))
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
    cv2.setNumThreads(1)
    for label, encode in settings():
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            encoded = [encode(f) for f in frames]
            best = min(best, time.perf_counter() - start)
        lossless = all(np.array_equal(png.decode_png(e), f) for e, f in zip(encoded, frames, strict=True))
        size = sum(len(e) for e in encoded) / raw
        lines.append(f"| {label} | {best / len(frames) * 1000:.1f} | {size:.3f} | {'yes' if lossless else 'NO'} |")
        print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    if not args.no_record:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as handle:
            handle.write("\n" + report)


if __name__ == "__main__":
    main()
