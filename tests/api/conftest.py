"""Fixtures of the Python API tests: acquisitions with known pixels, uploaded for real, and a connection to them."""

import csv
import json
from pathlib import Path

import pytest
import tifffile

import imaging_db
from imaging_db.example_data import MM_TAG, write_mm_ometiff
from imaging_db.pipeline.upload import upload_from_csv

ID = "ML-2018-11-07-09-35-54-0010"
FILE_ID = "ML-2018-11-08-10-00-00-0011"
SHAPE = (40, 56)
CHANNELS = ["GFP", "Cy5 far red"]
NBR_SLICES, NBR_TIMES, NBR_POSITIONS = 3, 2, 2


def source_pages(folder: Path) -> dict[tuple[int, int, int, int], "object"]:
    """The pixels of every page of a Micro-Manager OME-TIFF acquisition, read back with tifffile, by (c, z, t, p)."""
    pages = {}
    for path in sorted(folder.glob("*.ome.tif")):
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                meta = page.tags[MM_TAG].value
                if isinstance(meta, str):
                    meta = json.loads(meta)
                key = (meta["ChannelIndex"], meta["SliceIndex"], meta["FrameIndex"], meta["PositionIndex"])
                pages[key] = page.asarray()
    return pages


def upload(tmp_path: Path, login_file: Path, storage_spec: dict, rows: list[dict], **config) -> None:
    """Upload ``rows`` (CSV rows) with ``config`` into ``storage_spec``'s storage, as data_uploader does."""
    settings = {"storage": storage_spec["storage"], "storage_access": storage_spec["storage_access"], **config}
    if storage_spec["s3_endpoint_url"]:
        settings["s3_endpoint_url"] = storage_spec["s3_endpoint_url"]
    number = len(list(tmp_path.glob("config-*.json")))
    config_path = tmp_path / f"config-{number}.json"
    config_path.write_text(json.dumps(settings))
    csv_path = tmp_path / f"files-{number}.csv"
    columns = ["dataset_id", "file_name", "description", "parent_dataset_id"]
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in columns} for row in rows)
    results = upload_from_csv(csv_path, login=login_file, config=config_path, progress=False)
    assert all(result.ok for result in results), results


@pytest.fixture(scope="session")
def acquisition(tmp_path_factory) -> tuple[Path, dict]:
    """A Micro-Manager OME-TIFF acquisition (2 channels, 3 slices, 2 times, 2 positions) and its pages by (c, z, t, p)."""
    folder = tmp_path_factory.mktemp("acquisition") / "acq"
    write_mm_ometiff(folder, CHANNELS, NBR_SLICES, NBR_TIMES, NBR_POSITIONS, shape=SHAPE, max_pages_per_file=7)
    return folder, source_pages(folder)


@pytest.fixture
def local_spec(tmp_path) -> dict:
    """A storage folder (for the tests that need not run on each backend)."""
    return {"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None}


def _connect(tmp_path, login_file, storage_spec, acquisition):
    folder, _ = acquisition
    upload(tmp_path, login_file, storage_spec, [{"dataset_id": ID, "file_name": str(folder),
                                                  "description": "kidney tissue"}],
           upload_type="frames", frames_format="ome_tiff", microscope="Leica DMi8")
    db = imaging_db.connect(login_file)
    yield db
    db.close()


@pytest.fixture
def db(tmp_path, login_file, storage_spec, acquisition):
    """A connection to a database holding the acquisition as dataset ID: each database, each storage."""
    yield from _connect(tmp_path, login_file, storage_spec, acquisition)


@pytest.fixture
def local_db(tmp_path, login_file, local_spec, acquisition):
    """A connection to a database holding the acquisition as dataset ID: each database, a storage folder."""
    yield from _connect(tmp_path, login_file, local_spec, acquisition)
