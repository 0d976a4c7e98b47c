"""Show what `make demo` did: database rows, downloaded files, and a bit-exact check of the pixels."""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from imaging_db.database.connection import load_login
from imaging_db.database.db_ops import Database
from imaging_db.example_data import frame_pixels
from imaging_db.images.png import decode_png

SHAPE = (256, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("download", type=Path, help="the downloaded dataset folder")
    args = parser.parse_args()

    database = Database(load_login(None))
    print(f"\ndatabase {database.describe()}:")
    with database.engine.connect() as conn:
        for table in ("data_set", "frames_global", "frames", "file_global"):
            count = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            print(f"  {table:14s} {count:4d} rows")
        for serial, parent, n in conn.execute(sa.text(
                "SELECT d.dataset_serial, p.dataset_serial, g.nbr_frames FROM data_set d "
                "LEFT JOIN data_set p ON d.parent_id = p.id JOIN frames_global g ON g.dataset_id = d.id "
                "ORDER BY d.dataset_serial")):
            print(f"  {serial}: {n} frames" + (f", parent {parent}" if parent else ""))
    database.dispose()

    meta = json.loads((args.download / "global_metadata.json").read_text())
    with open(args.download / "frames_meta.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    print(f"\ndownloaded {len(rows)} of {meta['nbr_frames']} frames of {meta['dataset_serial']} "
          f"({meta['im_width']}x{meta['im_height']} {meta['bit_depth']}) into {args.download}:")
    exact = 0
    for row in rows:
        pixels = decode_png((args.download / row["file_name"]).read_bytes())
        c, z, t, p = (int(row[k]) for k in ("channel_idx", "slice_idx", "time_idx", "pos_idx"))
        expected = frame_pixels(c, z, t, p, SHAPE, "uint16", smooth=True)
        same = np.array_equal(pixels, expected)
        exact += same
        print(f"  {row['file_name']}  channel {row['channel_name']}  sha256 {row['sha256'][:12]}...  "
              f"{'bit-exact' if same else 'DIFFERENT'}")
    print(f"\n{exact}/{len(rows)} frames identical to the source pixels")
    if exact != len(rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
