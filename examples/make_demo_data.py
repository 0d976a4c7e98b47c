"""Write the demo acquisition used by `make demo` and files_for_upload.csv."""

import argparse
from pathlib import Path

from imaging_db.example_data import write_mm_ometiff

DEMO_ID = "ML-2018-11-07-09-35-54-0010"
CHANNELS = ["GFP", "RFP"]
SHAPE = (256, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path, help="where to write <folder>/" + DEMO_ID)
    args = parser.parse_args()
    files = write_mm_ometiff(args.folder / DEMO_ID, CHANNELS, nbr_slices=5, nbr_times=3, nbr_positions=2,
                             shape=SHAPE, dtype="uint16", smooth=True, prefix="ML")
    total = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} Micro-Manager OME-TIFF files ({total / 1e6:.1f} MB) in {args.folder / DEMO_ID}")


if __name__ == "__main__":
    main()
