"""Write and upload the small demo database that the notebooks query.

Five datasets, uploaded into ``$IMAGING_DB_HOME`` as ``data_uploader`` would
(one upload CSV per config, since the microscope, the file name parser and the
upload type belong to the config):

- ``ML-2018-11-07-09-35-54-0010``: the demo acquisition (GFP/RFP, 5 slices,
  3 times, 2 positions, 256 x 256), protein TOPOR;
- ``ML-2018-11-07-09-35-54-0011``: its child, position 1 only;
- ``ML-2018-11-08-15-06-10-0001``: a second acquisition, protein CCT7;
- ``ML-2018-11-08-15-06-10-0002``: a mass spectrometry table (a file dataset), child of the CCT7 one;
- ``ISP-2018-06-08-15-45-00-0001``: a kidney section from another project and microscope.

The acquisition folders are named ``<plate>_<stack number>_<protein>`` so that the
``parse_ml_name`` file name parser adds ``plate_id``, ``stack_nbr`` and
``protein_name`` to their global metadata.
"""

import csv
import json
from pathlib import Path

import pandas as pd

from imaging_db.example_data import write_mm_ometiff
from imaging_db.pipeline.upload import upload_from_csv

DEMO_ID = "ML-2018-11-07-09-35-54-0010"
CSV_COLUMNS = ["dataset_id", "file_name", "description", "parent_dataset_id", "positions"]


def _write_acquisitions(folder: Path) -> dict[str, Path]:
    small = {"shape": (256, 256), "smooth": True}
    paths = {"topor": folder / "plateA_1_TOPOR", "cct7": folder / "plateB_2_CCT7",
             "kidney": folder / "kidney_section", "mass_spec": folder / "CCT7_mass_spec.csv"}
    # The acquisition of examples/make_demo_data.py (`make demo`), in a folder parse_ml_name can read.
    write_mm_ometiff(paths["topor"], ["GFP", "RFP"], nbr_slices=5, nbr_times=3, nbr_positions=2,
                     prefix="ML", **small)
    write_mm_ometiff(paths["cct7"], ["GFP", "RFP"], nbr_slices=5, nbr_times=1, nbr_positions=1,
                     prefix="ML", seed=1, **small)
    write_mm_ometiff(paths["kidney"], ["568", "Transmission"], nbr_slices=5, nbr_times=1, nbr_positions=2,
                     prefix="ISP", seed=2, **small)
    # Made-up peptide intensities: a small table to stand for an analysis file.
    pd.DataFrame({"peptide": ["AEVLR", "GLDLK", "TVSEIR", "LLEAAK"],
                  "intensity": [8.1e6, 5.3e6, 2.2e6, 9.5e5]}).to_csv(paths["mass_spec"], index=False)
    return paths


def make_demo_database(folder: str | Path) -> pd.DataFrame:
    """Write the demo files under ``folder`` and upload them into the embedded database.

    Returns
    -------
    pandas.DataFrame
        The rows of the upload CSVs, with each run's microscope and upload type.

    Raises
    ------
    RuntimeError
        If a dataset was not uploaded (e.g. it is already in the database).
    """
    folder = Path(folder)
    paths = _write_acquisitions(folder)
    runs = [
        ({"upload_type": "frames", "microscope": "Leica DMi8 (demo)", "filename_parser": "parse_ml_name"}, [
            [DEMO_ID, paths["topor"], "demo acquisition: 2 channels x 5 slices x 3 times x 2 positions", "", ""],
            ["ML-2018-11-07-09-35-54-0011", paths["topor"], "position 1 only", DEMO_ID, "[1]"],
            ["ML-2018-11-08-15-06-10-0001", paths["cct7"], "CCT7 pulldown, one position", "", ""],
        ]),
        ({"upload_type": "frames", "microscope": "Zeiss spinning disk (demo)"}, [
            ["ISP-2018-06-08-15-45-00-0001", paths["kidney"], "kidney tissue section, 568 and transmitted light",
             "", ""],
        ]),
        ({"upload_type": "file"}, [
            ["ML-2018-11-08-15-06-10-0002", paths["mass_spec"], "mass spectrometry of the CCT7 pulldown",
             "ML-2018-11-08-15-06-10-0001", ""],
        ]),
    ]
    uploaded = []
    for number, (config, rows) in enumerate(runs):
        config_path = folder / f"config_{number}.json"
        config_path.write_text(json.dumps({**config, "storage": "local"}, indent=2))
        csv_path = folder / f"files_for_upload_{number}.csv"
        with csv_path.open("w", newline="") as handle:
            csv.writer(handle).writerows([CSV_COLUMNS, *rows])
        for result in upload_from_csv(csv_path, config=config_path, progress=False):
            if not result.ok:
                raise RuntimeError(result.summary())
        uploaded += [dict(zip(CSV_COLUMNS, row), microscope=config.get("microscope"),
                          upload_type=config["upload_type"]) for row in rows]
    table = pd.DataFrame(uploaded)
    table["file_name"] = [Path(path).name for path in table.file_name]
    return table
