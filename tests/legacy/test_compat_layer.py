"""The original imagingDB's notebooks run on imaging_db through the compatibility layer (issue 10, item 4).

The query and load cells of the original's two notebooks (czbiohub/imagingDB
at 1b1a58d: notebooks/database_queries.ipynb and jsonb_queries.ipynb) are
copied below as they are. The datasets the tests upload, with imaging_db's own
uploader, carry the notebooks' dataset ids, channel names, positions, slices
and proteins, so the only change made to a cell is the path of the login file.
Each cell runs in one namespace, as in Jupyter (``%`` magics left out), and
what it leaves there is checked: session_scope queries, get_datasets,
get_frames_meta's (dict, DataFrame), and arrays from get_im, get_stack and
get_stack_from_meta bit-exact against the source TIFF pages with the
original's dimension strings. A lab's own database made by the original
(tests/legacy/original_db.py), adopted with imaging_db_migrate, loads the same way.
"""

import contextlib
import io
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import tifffile

from imaging_db.cli import data_uploader, imaging_db_migrate
from imaging_db.compat import session as compat_session
from imaging_db.compat.storage import ORIGINAL_BUCKET
from imaging_db.errors import DatabaseError, InputError, IntegrityError, NotFoundError, SelectionError
from imaging_db.example_data import MM_TAG, frame_pixels, mm_frame_metadata, write_imagej_stack, write_mm_ometiff
from imaging_db.filestorage import make_storage
from tests.conftest import _login_dict
from tests.legacy.original_db import (create_original_tables, encode_as_original, insert_file_dataset,
                                      insert_frames_dataset)

ORIGINAL = Path("/work/.mirror/czbiohub+imagingDB/repo")
# The login file path in the notebooks' cells, replaced by the test's.
ORIGINAL_LOGIN = '"/Users/jenny.folkesson/Code/db_credentials.json"'

DATABASE_QUERIES_CELLS = {
    1: r'''%matplotlib inline

import matplotlib.pyplot as plt
import numpy as np
import importlib
import os
import sys
import time

module_path = os.path.abspath(os.path.join('..'))
print(module_path)
if module_path not in sys.path:
    sys.path.append(module_path)
    
# Import both local and S3 storage
import imaging_db.database.db_operations as db_ops
import imaging_db.filestorage.s3_storage as s3_storage
import imaging_db.filestorage.local_storage as local_storage
import imaging_db.utils.db_utils as db_utils''',
    3: r'''credentials_filename = "/Users/jenny.folkesson/Code/db_credentials.json"
credentials_str = db_utils.get_connection_str(credentials_filename)''',
    5: r'''with db_ops.session_scope(credentials_str) as session:
    print(db_ops.Base.metadata.tables.keys())''',
    7: r'''# Print three datasets with their properties
with db_ops.session_scope(credentials_str) as session:
    datasets = session.query(db_ops.DataSet)
    for d in datasets[2:5]:
        print(d.id)
        print(d.dataset_serial)
        print("Description:", d.description)
        print("Date/time:", d.date_time)
        print("Has this file been split into frames:", d.frames)
        print("Microscope:", d.microscope)
        print("Parent key:", d.parent_id)
        print("--------")''',
    9: r'''with db_ops.session_scope(credentials_str) as session:
    files = session.query(db_ops.FileGlobal)
    for f in files[:3]:
        # This table has a one to one mapping with Project so we can retrieve ID
        print(f.data_set.dataset_serial)
        print("Folder location in storage directory:", f.storage_dir)
        print(f.metadata_json)
        print("--------")''',
    11: r'''with db_ops.session_scope(credentials_str) as session:
    frames = session.query(db_ops.FramesGlobal)
    for f in frames[2:5]:
        print("Number of frames:", f.nbr_frames)
        print("Image width:", f.im_width)
        print("Image height:", f.im_height)
        print("z depth in stack:", f.nbr_slices)
        print("Number of channels:", f.nbr_channels)
        print("Number of time points:", f.nbr_timepoints)
        print("Number of positions (FOVs):", f.nbr_positions)
        print("Number of color channels:", f.im_colors)
        print("Bit depth:", f.bit_depth)
        print("Directory in storage (local and S3):", f.storage_dir)
        # This table has a one to one mapping with Project so we can retrieve ID
        print("Unique ID:", f.data_set.dataset_serial)
        # Not printing metadata, but it's a queryable json where all global information is stored
        print("--------")''',
    13: r'''# print first 3 frames
with db_ops.session_scope(credentials_str) as session:
    frame_info = session.query(db_ops.Frames)
    for i in frame_info[0:3]:
        print(i.id)
        print("Channel index:", i.channel_idx)
        print("Slice (z) index:", i.slice_idx)
        print("Time index:", i.time_idx)
        print("Position index:", i.pos_idx)
        print("Channel name:", i.channel_name)
        print("File name:", i.file_name)
        # Since Frames has a many to one mapping to FramesGlobal, we can easily retrieve info from there
        print("Total number of frames in dataset:", i.frames_global.nbr_frames)
        # FramesGlobal in turn has a one to one mapping to DataSet, so from a Frame we can also access DataSet info:
        print("Project ID:", i.frames_global.data_set.dataset_serial)
        print("Sha256:", i.sha256)
        print("------------------------------------")''',
    15: r'''with db_ops.session_scope(credentials_str) as session:
    datasets = session.query(db_ops.DataSet).filter(db_ops.DataSet.frames == True).all()
    print("Nbr datasets split into frames:", len(datasets))
    datasets = session.query(db_ops.DataSet).filter(db_ops.DataSet.frames == False).all()
    print("Nbr datasets kept as files:", len(datasets))''',
    17: r'''with db_ops.session_scope(credentials_str) as session:
    for value in session.query(db_ops.Frames.channel_name).distinct():
        print(value[0])''',
    19: r'''dataset_identifier = "ISP-2018-06-08-15-45-00-0001"
channel_name = "FITC"

file_name = None
with db_ops.session_scope(credentials_str) as session:
    first_frame = session.query(db_ops.Frames) \
        .join(db_ops.FramesGlobal) \
        .join(db_ops.DataSet) \
        .filter(db_ops.DataSet.dataset_serial == dataset_identifier) \
        .filter(db_ops.Frames.channel_name == channel_name) \
        .first()

    storage_dir = first_frame.frames_global.storage_dir
    print(storage_dir)
    file_name = first_frame.file_name
    print(file_name)''',
    21: r'''data_loader = s3_storage.S3Storage(storage_dir=storage_dir)

t0 = time.time()
im = data_loader.get_im(file_name)
print("Load time: {:.2f} seconds".format(time.time() - t0))
print("Im", im.dtype, im.shape)
plt.imshow(im)
plt.rcParams['figure.figsize'] = [10, 10]
plt.axis('off')
plt.show()''',
    23: r'''data_loader = local_storage.LocalStorage(storage_dir=storage_dir)

t0 = time.time()
im = data_loader.get_im(file_name)
print("Load time: {:.2f} seconds".format(time.time() - t0))
print("Im", im.dtype, im.shape)''',
    25: r'''file_names = []
with db_ops.session_scope(credentials_str) as session:
    all_frames = session.query(db_ops.Frames) \
        .join(db_ops.FramesGlobal) \
        .join(db_ops.DataSet) \
        .filter(db_ops.DataSet.dataset_serial == dataset_identifier) \
        .filter(db_ops.Frames.channel_name == channel_name) \
        .order_by(db_ops.Frames.file_name) \
        .all()

    bit_depth = all_frames[0].frames_global.bit_depth
    print("Bit depth:", bit_depth)
    for f in all_frames:
        file_names.append(f.file_name)
        print(f.file_name)''',
    27: r'''data_loader = local_storage.LocalStorage(storage_dir=storage_dir)
t0 = time.time()
im_stack = data_loader.get_stack(file_names)
print("Load time: {:.2f} seconds".format(time.time() - t0))

print("Stack shape: {} and type: {}".format(im_stack.shape, im_stack.dtype))''',
    29: r'''db_inst = db_ops.DatabaseOperations(
    dataset_serial="ISP-2018-06-01-00-00-00-0002",
)
with db_ops.session_scope(credentials_str) as session:
    global_meta, frames_meta = db_inst.get_frames_meta(
        session=session,
        channels=1,
    )
    print("All global information about dataset:", global_meta)''',
    30: r'''# Print local metadata for one frame
print(frames_meta.iloc[0])''',
    31: r'''# Get image stack from metadata
data_loader = local_storage.LocalStorage(storage_dir=global_meta["storage_dir"])
t0 = time.time()
im_stack, dim_order = data_loader.get_stack_from_meta(global_meta, frames_meta)
print("Time to load stack: {:.2f}".format(time.time() - t0))
print("Dimensions and order:", dim_order)
print(im_stack.shape)''',
    34: r'''with db_ops.session_scope(credentials_str) as session:
    datasets = db_ops.get_datasets(
        session=session,
        search_dict={'description': 'kidney'}
    )
    print("Found {} datasets.".format(len(datasets)))
    dataset_serial = datasets[0].dataset_serial
    print("ID:", dataset_serial)
    print("Full description:", datasets[0].description)''',
    35: r'''db_inst = db_ops.DatabaseOperations(
    dataset_serial=dataset_serial,
)
# Fetch a few z slices from two of the FOVs and channels
with db_ops.session_scope(credentials_str) as session:
    global_meta, frames_meta = db_inst.get_frames_meta(
        session=session,
        channels=['568', 'Transmission'],
        positions=[50, 60],
        slices=[11, 12, 13, 14, 15],
    )
    
# See how much data is in the dataset
print('Total nbr frames: {}'.format(global_meta['nbr_frames']))
print('Nbr FOVs: {}'.format(global_meta['nbr_positions']))
print('Nbr slices per FOV: {}'.format(global_meta['nbr_slices']))
print('Nbr channels: {}'.format(global_meta['nbr_channels']))
print('Nbr timepoints: {}'.format(global_meta['nbr_timepoints']))''',
    36: r'''# Load the images
data_loader = local_storage.LocalStorage(storage_dir=global_meta["storage_dir"])
t0 = time.time()
im_stack, dim_order = data_loader.get_stack_from_meta(global_meta, frames_meta)
print("Time to load stack: {:.2f}".format(time.time() - t0))
print("Dimensions and order: {} of stack with shape: {}".format(dim_order, im_stack.shape))''',
    37: r'''# Plot the center slice of each channel side by side
plt.subplot(121); plt.imshow(im_stack[:, :, 3, 0, 0])
plt.axis('off')
plt.subplot(122); plt.imshow(im_stack[:, :, 3, 1, 0])
plt.rcParams['figure.figsize'] = [10, 15]
plt.axis('off')
plt.show()''',
}
JSONB_QUERIES_CELLS = {
    1: r'''%matplotlib inline

import matplotlib.pyplot as plt
import numpy as np
import importlib
import os
import sys
import time

module_path = os.path.abspath(os.path.join('..'))
print(module_path)
if module_path not in sys.path:
    sys.path.append(module_path)
    
import imaging_db.filestorage.s3_storage as s3_storage
import imaging_db.filestorage.local_storage as local_storage''',
    2: r'''import imaging_db.database.db_operations as db_ops
import imaging_db.utils.db_utils as db_utils

importlib.reload(db_ops)
credentials_filename = "/Users/jenny.folkesson/Code/db_credentials.json"
credentials_str = db_utils.get_connection_str(credentials_filename)''',
    4: r'''with db_ops.session_scope(credentials_str) as session:
    datasets = session.query(db_ops.DataSet) \
        .join(db_ops.FramesGlobal) \
        .join(db_ops.Frames) \
        .filter(db_ops.FramesGlobal.metadata_json.contains({"protein_name": "TOPOR"})) \
        .all()
    
    print("Nbr of datasets imaging the TOPOR protein:", len(datasets))
    for d in datasets:
        print(d.dataset_serial)''',
    6: r'''with db_ops.session_scope(credentials_str) as session:
    proteins = session.query(
        db_ops.FramesGlobal.metadata_json['protein_name']) \
            .distinct() \
            .order_by(db_ops.FramesGlobal.metadata_json['protein_name'])

    for p in proteins:
        print(p[0])''',
    8: r'''dataset_id = 'ML-2018-11-08-15-06-10-0001'
db_inst = db_ops.DatabaseOperations(
    dataset_serial=dataset_id,
)
with db_ops.session_scope(credentials_str) as session:
    global_meta, frames_meta = db_inst.get_frames_meta(
        session=session,
        channels=0,
    )
    print(global_meta)''',
    10: r'''data_loader = local_storage.LocalStorage(storage_dir=global_meta["storage_dir"])
t0 = time.time()
im_stack, dim_order = data_loader.get_stack_from_meta(global_meta, frames_meta)
print("Time to load stack: {:.2f}".format(time.time() - t0))
print("Stack shape:", im_stack.shape)
print("Dimensions and order:", dim_order)''',
    13: r'''with db_ops.session_scope(credentials_str) as session:
    datasets = session.query(db_ops.DataSet) \
        .join(db_ops.FramesGlobal) \
        .join(db_ops.Frames) \
        .filter(db_ops.FramesGlobal.metadata_json.contains({"protein_name": "CCT7"})) \
        .all()
    print("Nbr datasets of CCT7 protein:", len(datasets))''',
    15: r'''with db_ops.session_scope(credentials_str) as session:
    parent_dataset = session.query(db_ops.DataSet) \
        .join(db_ops.FramesGlobal) \
        .join(db_ops.Frames) \
        .filter(db_ops.FramesGlobal.metadata_json.contains({"protein_name": "CCT7"})) \
        .first()
    
    # Get metadata so we can load images
    db_inst = db_ops.DatabaseOperations(
        dataset_serial=parent_dataset.dataset_serial,
    )
    global_meta, frames_meta = db_inst.get_frames_meta(
        session=session,
    )
    
    # Find child dataset
    child_dataset = session.query(db_ops.DataSet) \
        .filter(db_ops.DataSet.parent_id == parent_dataset.id).one()
    # Get child dataset file path
    child_dir = child_dataset.file_global.storage_dir
    child_file_name = child_dataset.file_global.file_name
    print("child dataset path: {}/{}".format(child_dir, child_file_name))''',
    17: r'''data_loader = local_storage.LocalStorage(storage_dir=global_meta["storage_dir"])
t0 = time.time()
im_stack, dim_order = data_loader.get_stack_from_meta(global_meta, frames_meta)
print("Time to load stack: {:.2f}".format(time.time() - t0))
print("Stack shape:", im_stack.shape)
print("Dimensions and order:", dim_order)

data_loader = local_storage.LocalStorage(storage_dir=child_dir)
im_child = data_loader.get_im(child_file_name)
print("Child im shape:", im_child.shape)''',
    19: r'''plt.subplot(121); plt.imshow(im_stack[:, :, 17, 0])
plt.axis('off')
plt.subplot(122); plt.imshow(im_stack[:, :, 17, 1])
plt.rcParams['figure.figsize'] = [15, 20]
plt.axis('off')
plt.show()''',
    20: r'''plt.imshow(im_child)
plt.axis('off')
plt.show()''',
}


# --------------------------------------------------------------------------- the notebooks' data
SHAPE = (12, 10)
# database_queries.ipynb: a dataset with a FITC channel, one read by channel index 1, one found as "kidney".
FITC_ID = "ISP-2018-06-08-15-45-00-0001"
CHANNEL_1_ID = "ISP-2018-06-01-00-00-00-0002"
KIDNEY_ID = "ISP-2018-07-02-11-30-00-0003"
NOTES_ID = "ISP-2018-07-02-11-30-00-0004"
KIDNEY_CHANNELS = ["405", "568", "Transmission"]
KIDNEY_POSITIONS = (50, 55, 60)
KIDNEY_SLICES = range(9, 17)
# jsonb_queries.ipynb: two TOPOR datasets, a CCT7 one with 18 slices (its plot shows slice 17) and a child file.
TOPOR_ID = "ML-2018-11-08-15-06-10-0001"
TOPOR_2_ID = "ML-2018-11-09-10-00-00-0002"
CCT7_ID = "ML-2018-11-10-10-00-00-0003"
CHILD_ID = "ML-2018-11-10-10-00-00-0004"


@pytest.fixture(autouse=True)
def fresh_compat_state():
    """Each test opens its databases itself: none is known from an earlier test (whose database is gone)."""
    compat_session.dispose_all()
    yield
    compat_session.dispose_all()


@pytest.fixture
def notebook(monkeypatch):
    """What running a notebook changes: figures (drawn off screen, closed after) and sys.path (cell 1 appends)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    plt.close("all")


def run_cell(source: str, namespace: dict, login: Path) -> str:
    """Run a notebook cell in ``namespace`` with the test's login file; return what it printed."""
    assert source.count(ORIGINAL_LOGIN) <= 1
    source = source.replace(ORIGINAL_LOGIN, repr(str(login)))
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "<notebook cell>", "exec"), namespace)
    return printed.getvalue()


def upload(tmp_path: Path, login: Path, spec: dict, rows: list[dict], **config) -> None:
    """Upload CSV ``rows`` with data_uploader and ``config`` into ``spec``'s storage."""
    settings = {"storage": spec["storage"], "storage_access": spec["storage_access"], **config}
    if spec["s3_endpoint_url"]:
        settings["s3_endpoint_url"] = spec["s3_endpoint_url"]
    number = len(list(tmp_path.glob("config-*.json")))
    config_path = tmp_path / f"config-{number}.json"
    config_path.write_text(json.dumps(settings))
    columns = ["dataset_id", "file_name", "description", "parent_dataset_id"]
    lines = [",".join(columns)] + [",".join(str(row.get(column, "")) for column in columns) for row in rows]
    csv_path = tmp_path / f"files-{number}.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    assert data_uploader.main(["--csv", str(csv_path), "--config", str(config_path), "--login", str(login),
                               "--no-progress"]) == 0


def mm_pages(paths) -> dict[tuple[int, int, int, int], np.ndarray]:
    """The pixels of every page of Micro-Manager TIFFs, read back with tifffile, by (c, z, t, p) of its tag."""
    pages = {}
    for path in paths:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                meta = page.tags[MM_TAG].value
                meta = json.loads(meta) if isinstance(meta, str) else meta
                pages[meta["ChannelIndex"], meta["SliceIndex"], meta["FrameIndex"], meta["PositionIndex"]] = \
                    page.asarray()
    return pages


def imagej_pages(path: Path, nbr_channels: int) -> dict[tuple[int, int, int, int], np.ndarray]:
    """The pages of a one-time ImageJ stack (channel fastest, then slice), read back with tifffile."""
    with tifffile.TiffFile(path) as tif:
        return {(i % nbr_channels, i // nbr_channels, 0, 0): page.asarray() for i, page in enumerate(tif.pages)}


def expected_stack(frames: dict, channels, slices, times, positions) -> np.ndarray:
    """The original's get_stack_from_meta array of these frames: X Y G Z C T P, singletons squeezed."""
    stack = np.stack([np.stack([np.stack([np.stack([np.atleast_3d(frames[c, z, t, p]) for z in slices], -1)
                                          for c in channels], -1) for t in times], -1) for p in positions], -1)
    return np.squeeze(stack)


def frame_key(file_name: str) -> tuple[int, int, int, int]:
    """(c, z, t, p) of ``im_c001_z002_t000_p000.png``."""
    parts = Path(file_name).stem.split("_")[1:]
    return tuple(int(part[1:]) for part in parts)


def mirror(spec: dict, target) -> None:
    """Copy every object of the storage ``spec`` uploaded to into ``target``, as a lab keeps S3 and NAS copies."""
    source = make_storage(spec["storage"], spec["storage_access"], s3_endpoint_url=spec["s3_endpoint_url"])
    for key in source.list(""):
        target.put(key, source.get(key))


@pytest.fixture
def local_spec(tmp_path) -> dict:
    """A storage folder, for the tests that need not run on each storage."""
    return {"storage": "local", "storage_access": str(tmp_path / "storage"), "s3_endpoint_url": None}


@pytest.fixture
def original_bucket(moto_endpoint):
    """The original's default bucket, czbiohub-imaging, on the moto server; emptied afterwards."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
        client.create_bucket(Bucket=ORIGINAL_BUCKET)
    storage = make_storage("s3", ORIGINAL_BUCKET, s3_endpoint_url=moto_endpoint)
    yield storage
    for key in storage.list(""):
        storage.delete(key)


def upload_queries_lab(tmp_path: Path, login: Path, spec: dict) -> dict:
    """database_queries.ipynb's datasets, uploaded; returns their source pixels by dataset id, then (c, z, t, p)."""
    fitc = write_mm_ometiff(tmp_path / "fitc", ["DAPI", "FITC"], 3, 1, 1, shape=SHAPE, seed=1)
    channel_1 = write_mm_ometiff(tmp_path / "two_times", ["GFP", "RFP"], 4, 2, 1, shape=SHAPE, seed=2)
    upload(tmp_path, login, spec, [
        {"dataset_id": FITC_ID, "file_name": tmp_path / "fitc", "description": "DAPI and FITC"},
        {"dataset_id": CHANNEL_1_ID, "file_name": tmp_path / "two_times", "description": "two time points"},
    ], upload_type="frames", frames_format="ome_tiff", microscope="Leica DMi8")
    # A Micro-Manager folder of single TIFFs whose positions are 50, 55, 60 and slices 9-16.
    kidney = tmp_path / "kidney"
    kidney.mkdir()
    for p in KIDNEY_POSITIONS:
        for z in KIDNEY_SLICES:
            for c, name in enumerate(KIDNEY_CHANNELS):
                tag = json.dumps(mm_frame_metadata(c, z, 0, p, KIDNEY_CHANNELS))
                tifffile.imwrite(kidney / f"img_{name}_t000_p{p:03d}_z{z:03d}.tif",
                                 frame_pixels(c, z, 0, p, SHAPE, seed=3), photometric="minisblack", metadata=None,
                                 extratags=[(MM_TAG, "s", 0, tag, True)])
    upload(tmp_path, login, spec, [{"dataset_id": KIDNEY_ID, "file_name": kidney,
                                    "description": "mouse kidney section"}],
           upload_type="frames", frames_format="tif_folder", microscope="Zeiss LSM 880")
    (tmp_path / "notes.txt").write_text("stained with DAPI")
    upload(tmp_path, login, spec, [{"dataset_id": NOTES_ID, "file_name": tmp_path / "notes.txt",
                                    "description": "protocol notes"}], upload_type="file", microscope="none")
    return {FITC_ID: mm_pages(fitc), CHANNEL_1_ID: mm_pages(channel_1), KIDNEY_ID: mm_pages(kidney.glob("*.tif"))}


def upload_jsonb_lab(tmp_path: Path, login: Path, spec: dict) -> dict:
    """jsonb_queries.ipynb's datasets (protein names from the file names), uploaded; returns their source pixels."""
    stacks = {TOPOR_ID: ("P1_1_TOPOR_PyProcessed.tif", 4), TOPOR_2_ID: ("P2_3_TOPOR_PyProcessed.tif", 3),
              CCT7_ID: ("P3_2_CCT7_PyProcessed.tif", 18)}
    sources = {}
    for number, (serial, (name, nbr_slices)) in enumerate(stacks.items()):
        path = write_imagej_stack(tmp_path / name, 2, nbr_slices, shape=SHAPE, seed=10 + number)
        sources[serial] = imagej_pages(path, 2)
    upload(tmp_path, login, spec, [{"dataset_id": serial, "file_name": tmp_path / name}
                                   for serial, (name, _) in stacks.items()],
           upload_type="frames", frames_format="tif_id", microscope="Opera", filename_parser="parse_ml_name")
    # The child: a colour plot kept as a file.
    plot = np.random.default_rng(5).integers(0, 256, (20, 16, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "mass_spec.tif", plot, photometric="rgb")
    upload(tmp_path, login, spec, [{"dataset_id": CHILD_ID, "file_name": tmp_path / "mass_spec.tif",
                                    "parent_dataset_id": CCT7_ID, "description": "mass spectrometry"}],
           upload_type="file", microscope="none")
    sources[CHILD_ID] = plot
    return sources


# --------------------------------------------------------------------------- the notebooks
def test_database_queries_notebook(tmp_path, login_file, storage_spec, moto_endpoint, original_bucket, imaging_home,
                                   notebook, monkeypatch):
    sources = upload_queries_lab(tmp_path, login_file, storage_spec)
    # The notebook reads the same frames from S3 and from the NAS: the lab keeps a copy in each.
    if storage_spec["storage"] == "local":
        mirror(storage_spec, original_bucket)  # S3Storage without a bucket: the original's, here on moto
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        s3_bucket, nas = ORIGINAL_BUCKET, storage_spec["storage_access"]
    else:
        nas = str(imaging_home / "storage")  # LocalStorage without a folder, for datasets recorded in S3
        mirror(storage_spec, make_storage("local", nas))
        s3_bucket = storage_spec["storage_access"]
    cells, ns = DATABASE_QUERIES_CELLS, {"__name__": "__main__"}

    def run(number: int) -> str:
        return run_cell(cells[number], ns, login_file)

    run(1)
    run(3)
    assert ns["credentials_str"].startswith(("sqlite+pysqlite:///", "postgresql+psycopg2://"))
    tables = run(5)
    assert tables.startswith("dict_keys([") and all(repr(name) in tables for name in
                                                    ("data_set", "frames_global", "frames", "file_global"))
    assert "Has this file been split into frames: True" in run(7)
    out = run(9)
    assert f"{NOTES_ID}\nFolder location in storage directory: raw_files/{NOTES_ID}\n" in out
    assert "'file_origin'" in out
    assert f"Directory in storage (local and S3): raw_frames/{KIDNEY_ID}" in run(11)
    assert "Total number of frames in dataset:" in run(13)
    assert run(15) == "Nbr datasets split into frames: 3\nNbr datasets kept as files: 1\n"
    assert set(run(17).split()) == {"DAPI", "FITC", "GFP", "RFP", *KIDNEY_CHANNELS}

    run(19)  # the first FITC frame of a dataset
    assert ns["storage_dir"] == f"raw_frames/{FITC_ID}"
    key = frame_key(ns["file_name"])
    assert key[0] == 1
    assert "Im uint16 (12, 10)" in run(21)  # from S3
    assert ns["data_loader"].bucket_name == s3_bucket
    np.testing.assert_array_equal(ns["im"], sources[FITC_ID][key])
    run(23)  # the same from local storage
    assert ns["data_loader"].mount_point == nas
    np.testing.assert_array_equal(ns["im"], sources[FITC_ID][key])

    run(25)  # every FITC frame, by file name, then stacked
    assert ns["file_names"] == [f"im_c001_z{z:03d}_t000_p000.png" for z in range(3)]
    assert "Stack shape: (12, 10, 3) and type: uint16" in run(27)
    np.testing.assert_array_equal(ns["im_stack"], expected_stack(sources[FITC_ID], [1], range(3), [0], [0]))

    run(29)  # DatabaseOperations: channel index 1
    global_meta, frames_meta = ns["global_meta"], ns["frames_meta"]
    assert list(global_meta) == ["storage_dir", "nbr_frames", "im_width", "im_height", "nbr_slices", "nbr_channels",
                                 "im_colors", "nbr_timepoints", "nbr_positions", "bit_depth", "metadata_json"]
    assert {k: v for k, v in global_meta.items() if k != "metadata_json"} == {
        "storage_dir": f"raw_frames/{CHANNEL_1_ID}", "nbr_frames": 16, "im_width": 10, "im_height": 12,
        "nbr_slices": 4, "nbr_channels": 2, "im_colors": 1, "nbr_timepoints": 2, "nbr_positions": 1,
        "bit_depth": "uint16"}
    assert global_meta["metadata_json"]["ChNames"] == ["GFP", "RFP"]  # the acquisition summary
    assert list(frames_meta.columns) == ["channel_idx", "slice_idx", "time_idx", "pos_idx", "channel_name",
                                         "file_name", "sha256"]
    assert list(frames_meta.index) == list(range(8))
    assert list(frames_meta["file_name"]) == sorted(f"im_c001_z{z:03d}_t{t:03d}_p000.png"
                                                    for z in range(4) for t in range(2))
    assert set(frames_meta["channel_name"]) == {"RFP"} and frames_meta["slice_idx"].dtype == np.int64
    assert re.search(r"^file_name +im_c001_z000_t000_p000.png$", run(30), re.MULTILINE)
    assert "Dimensions and order: XYZT\n(12, 10, 4, 2)\n" in run(31)
    np.testing.assert_array_equal(ns["im_stack"], expected_stack(sources[CHANNEL_1_ID], [1], range(4), range(2), [0]))

    out = run(34)  # get_datasets: the kidney dataset
    assert out == f"Found 1 datasets.\nID: {KIDNEY_ID}\nFull description: mouse kidney section\n"
    out = run(35)  # two channels by name, two of three positions, five of eight slices
    assert out == "Total nbr frames: 72\nNbr FOVs: 3\nNbr slices per FOV: 8\nNbr channels: 3\nNbr timepoints: 1\n"
    assert len(ns["frames_meta"]) == 20
    assert "Dimensions and order: XYZCP of stack with shape: (12, 10, 5, 2, 2)" in run(36)
    np.testing.assert_array_equal(ns["im_stack"], expected_stack(sources[KIDNEY_ID], [1, 2], range(11, 16), [0],
                                                                 [50, 60]))
    run(37)  # the plot of slice 3 of both channels


def test_jsonb_queries_notebook(tmp_path, login_file, local_spec, notebook):
    sources = upload_jsonb_lab(tmp_path, login_file, local_spec)
    cells, ns = JSONB_QUERIES_CELLS, {"__name__": "__main__"}

    def run(number: int) -> str:
        return run_cell(cells[number], ns, login_file)

    run(1)
    run(2)
    assert run(4) == f"Nbr of datasets imaging the TOPOR protein: 2\n{TOPOR_ID}\n{TOPOR_2_ID}\n"
    assert run(6) == "CCT7\nTOPOR\n"

    out = run(8)  # channel 0 of a TOPOR dataset
    assert ns["global_meta"]["metadata_json"]["protein_name"] == "TOPOR"
    assert f"'storage_dir': 'raw_frames/{TOPOR_ID}'" in out and "'protein_name': 'TOPOR'" in out
    assert list(ns["frames_meta"]["channel_idx"]) == [0] * 4
    assert run(10).endswith("Stack shape: (12, 10, 4)\nDimensions and order: XYZ\n")
    np.testing.assert_array_equal(ns["im_stack"], expected_stack(sources[TOPOR_ID], [0], range(4), [0], [0]))

    assert run(13) == "Nbr datasets of CCT7 protein: 1\n"
    out = run(15)  # the CCT7 dataset's frames and its child's file
    assert out == f"child dataset path: raw_files/{CHILD_ID}/mass_spec.tif\n"
    out = run(17)
    assert "Stack shape: (12, 10, 18, 2)\nDimensions and order: XYZC\nChild im shape: (20, 16, 3)\n" in out
    np.testing.assert_array_equal(ns["im_stack"], expected_stack(sources[CCT7_ID], [0, 1], range(18), [0], [0]))
    np.testing.assert_array_equal(ns["im_child"], sources[CHILD_ID])  # RGB, as in the file
    run(19)
    run(20)


# --------------------------------------------------------------------------- the layer itself
@pytest.fixture
def queries_lab(tmp_path, login_file, local_spec):
    """database_queries' datasets in a storage folder; the compat modules; the login; the source pixels."""
    sources = upload_queries_lab(tmp_path, login_file, local_spec)
    import imaging_db.database.db_operations as db_ops
    import imaging_db.utils.db_utils as db_utils

    return db_ops, db_utils.get_connection_str(login_file), sources


def test_get_datasets_search_keys(queries_lab):
    db_ops, credentials_str, _ = queries_lab
    with db_ops.session_scope(credentials_str) as session:
        def found(**search):
            return [dataset.dataset_serial for dataset in db_ops.get_datasets(session, search)]

        assert found() == [CHANNEL_1_ID, FITC_ID, KIDNEY_ID, NOTES_ID]  # by dataset id, as the original
        assert [d.dataset_serial for d in db_ops.get_datasets(session)] == found()
        assert found(project_id="ISP", microscope="leica") == [CHANNEL_1_ID, FITC_ID]
        assert found(start_date="2018-06-08", end_date="2018-06-08") == [FITC_ID]  # the end day included
        assert found(description="KIDNEY") == [KIDNEY_ID]
        assert found(project_id="ML") == []
        assert found(meta={"ChNames": ["FITC"]}) == [FITC_ID]
        with pytest.raises(InputError, match=r"unknown search key\(s\) \['protein'\]; use \['project_id'"):
            found(protein="TOPOR")


def test_get_frames_meta_refusals(queries_lab):
    db_ops, credentials_str, _ = queries_lab
    with db_ops.session_scope(credentials_str) as session:
        with pytest.raises(SelectionError, match=rf"dataset {KIDNEY_ID}: no frames with position 51; it has .*"
                                                 r"positions \[50, 55, 60\]"):
            db_ops.DatabaseOperations(KIDNEY_ID).get_frames_meta(session, positions=[50, 51])
        with pytest.raises(InputError, match=rf"dataset {NOTES_ID} has not been split into frames"):
            db_ops.DatabaseOperations(NOTES_ID).get_frames_meta(session)
        with pytest.raises(NotFoundError, match="dataset ISP-2018-01-01-00-00-00-0009 is not in the database"):
            db_ops.DatabaseOperations("ISP-2018-01-01-00-00-00-0009").get_frames_meta(session)
        with pytest.raises(AttributeError, match="only reads; upload datasets with data_uploader"):
            db_ops.DatabaseOperations(FITC_ID).insert_frames
        # Integers are indices, also as numpy integers and tuples; get_filenames gives the same names.
        _, frames_meta = db_ops.DatabaseOperations(KIDNEY_ID).get_frames_meta(
            session, channels=np.int64(2), slices=(9, 16), positions=55)
        assert list(frames_meta["file_name"]) == ["im_c002_z009_t000_p055.png", "im_c002_z016_t000_p055.png"]
        assert db_ops.DatabaseOperations(KIDNEY_ID).get_filenames(
            session, channels="Transmission", slices=[9, 16], positions=[55]) == (
            f"raw_frames/{KIDNEY_ID}", list(frames_meta["file_name"]))
        assert db_ops.DatabaseOperations(NOTES_ID).get_filenames(session) == (f"raw_files/{NOTES_ID}",
                                                                                ["notes.txt"])


def test_session_scope_commits_rolls_back_and_accepts_the_originals_uri(queries_lab, login_file, db_url):
    db_ops, credentials_str, _ = queries_lab
    with pytest.raises(ZeroDivisionError):
        with db_ops.session_scope(credentials_str) as session:
            session.query(db_ops.DataSet).filter_by(dataset_serial=FITC_ID).one().description = "changed"
            session.flush()
            1 / 0
    with db_ops.session_scope(credentials_str) as session:
        dataset = session.query(db_ops.DataSet).filter_by(dataset_serial=FITC_ID).one()
        assert dataset.description == "DAPI and FITC"
        dataset.description = "changed"
    with db_ops.session_scope(credentials_str) as session:
        assert session.query(db_ops.DataSet).filter_by(dataset_serial=FITC_ID).one().description == "changed"
        db_ops.test_connection(session)
    if db_url.get_backend_name() == "postgresql":
        # The original's own URI form, "postgres://...", as a notebook may have it written out.
        original_uri = credentials_str.replace("postgresql+psycopg2://", "postgres://")
        with db_ops.session_scope(original_uri) as session:
            assert session.query(db_ops.Frames).count() == 6 + 16 + 72
    with pytest.raises(InputError, match="credentials_str is not a database URL") as caught:
        with db_ops.session_scope("user:secret@host/db"):
            pass
    assert "secret" not in str(caught.value)


def test_get_connection_str_reads_a_login_file(tmp_path):
    import imaging_db.utils.db_utils as db_utils

    login = tmp_path / "db_credentials.json"
    login.write_text(json.dumps({"drivername": "postgres", "username": "imaging_user", "password": "p@ss/word",
                                 "host": "localhost", "port": 5433, "dbname": "imaging_test"}))
    login.chmod(0o600)
    credentials_str = db_utils.get_connection_str(str(login))
    assert credentials_str == "postgresql+psycopg2://imaging_user:p%40ss%2Fword@localhost:5433/imaging_test"
    assert sa.engine.make_url(credentials_str).password == "p@ss/word"
    login.write_text(json.dumps({"drivername": "sqlite", "dbname": "lab.sqlite"}))
    assert db_utils.get_connection_str(login) == f"sqlite+pysqlite:///{tmp_path / 'lab.sqlite'}"
    login.write_text(json.dumps({"drivername": "mysql", "username": "u", "password": "secret", "host": "h",
                                 "port": 1, "dbname": "d"}))
    with pytest.raises(InputError, match="unknown drivername 'mysql'") as caught:
        db_utils.get_connection_str(login)
    assert "secret" not in str(caught.value)
    with pytest.raises(OSError, match="Can't connect to DB: "):
        db_utils.check_connection("postgresql+psycopg2://nobody@127.0.0.1:9/none?connect_timeout=2")


def test_storages_find_the_frames_and_check_them(queries_lab, tmp_path, imaging_home, caplog):
    db_ops, credentials_str, sources = queries_lab
    from imaging_db.filestorage import local_storage, s3_storage
    from imaging_db.filestorage.local_storage import LocalDataStorage

    storage_dir = f"raw_frames/{FITC_ID}"
    name = "im_c001_z002_t000_p000.png"
    # No database open: the embedded storage folder, which does not exist here.
    with pytest.raises(NotFoundError, match=rf"local storage folder {imaging_home / 'storage'} does not exist: "
                                            "mount it, or give access_point="):
        local_storage.LocalStorage(storage_dir)
    # A folder given, and no database: read, unchecked, and said so.
    loader = local_storage.LocalStorage(storage_dir=storage_dir, access_point=str(tmp_path / "storage"))
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(loader.get_im(name), sources[FITC_ID][1, 2, 0, 0])
    assert "1 of 1 object(s) read without a checksum check: no database is open" in caplog.text
    assert s3_storage.S3Storage(storage_dir).bucket_name == ORIGINAL_BUCKET
    # With the database open, where it records the dataset, and every frame checked.
    with db_ops.session_scope(credentials_str):
        pass
    loader = local_storage.LocalStorage(storage_dir)
    assert loader.mount_point == str(tmp_path / "storage")
    assert loader.id_storage_path == str(tmp_path / "storage" / "raw_frames" / FITC_ID)
    assert s3_storage.S3Storage(storage_dir, access_point="lab-bucket").bucket_name == "lab-bucket"
    LocalDataStorage(tmp_path / "storage").delete(f"{storage_dir}/{name}")
    LocalDataStorage(tmp_path / "storage").put(f"{storage_dir}/{name}",
                                                (tmp_path / "storage" / storage_dir / "im_c000_z002_t000_p000.png")
                                                .read_bytes())
    with pytest.raises(IntegrityError, match=rf"dataset {FITC_ID}: frame {name} in local:.* is corrupt"):
        loader.get_im(name)
    with pytest.raises(IntegrityError, match="is corrupt"):
        loader.get_stack([name])
    with pytest.raises(AttributeError, match="LocalStorage.upload_frames: the compatibility layer only reads"):
        loader.upload_frames
    with pytest.raises(InputError, match="invalid storage key 'raw_frames/../x'"):
        local_storage.LocalStorage("raw_frames/../x")


def test_get_stack_from_meta_of_a_frames_meta_of_ones_own(queries_lab, caplog):
    """As the original's own tests build frames_meta: object columns, the pixels' sha256, a partial grid."""
    import hashlib

    import pandas as pd

    from imaging_db.filestorage import local_storage

    db_ops, credentials_str, sources = queries_lab
    with db_ops.session_scope(credentials_str) as session:
        global_meta, frames_meta = db_ops.DatabaseOperations(KIDNEY_ID).get_frames_meta(
            session, channels=["568", "Transmission"], slices=[10])
    loader = local_storage.LocalStorage(global_meta["storage_dir"], nbr_workers=2)
    stack, dims = loader.get_stack_from_meta(global_meta, frames_meta)
    assert dims == "XYCP" and stack.shape == (12, 10, 2, 3)
    # Rows made by hand; frames checked against their pixels' sha256 (the original's rule); one place left out.
    rows = [[c, 12, 0, p, KIDNEY_CHANNELS[c], f"im_c{c:03d}_z012_t000_p{p:03d}.png",
             hashlib.sha256(sources[KIDNEY_ID][c, 12, 0, p].tobytes()).hexdigest()]
            for c, p in [(0, 50), (0, 60), (2, 50)]]
    own = pd.DataFrame(rows, columns=["channel_idx", "slice_idx", "time_idx", "pos_idx", "channel_name", "file_name",
                                      "sha256"], dtype=object)
    with caplog.at_level(logging.WARNING):
        stack, dims = loader.get_stack_from_meta(global_meta, own)
    assert dims == "XYCP" and stack.shape == (12, 10, 2, 2)
    assert "1 place(s) of the stack have no frame in frames_meta and are left zero" in caplog.text
    np.testing.assert_array_equal(stack[..., 1, 0], sources[KIDNEY_ID][2, 12, 0, 50])
    assert not stack[..., 1, 1].any()
    own.loc[1, "sha256"] = "0" * 64
    with pytest.raises(IntegrityError, match="im_c000_z012_t000_p060.png in local:.* is corrupt"):
        loader.get_stack_from_meta(global_meta, own)
    # Without a sha256 column, the database's checksums are used.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        stack, _ = loader.get_stack_from_meta(global_meta, own.drop(columns=["sha256"]))
    assert "without a checksum check" not in caplog.text
    stacked = loader.get_stack_with_shape(list(own["file_name"]), (12, 10, 1, 3), np.uint16)
    np.testing.assert_array_equal(stacked[:, :, 0, 2], sources[KIDNEY_ID][2, 12, 0, 50])


# --------------------------------------------------------------------------- an original lab's database
GREY_ID = "ML-2018-11-07-09-35-54-0010"
COLOUR_ID = "ML-2018-11-07-09-35-54-0011"
OLD_ID = "ML-2018-06-01-09-00-00-0001"
PLOT_ID = "ML-2018-06-01-09-00-00-0002"


def _grey() -> dict:
    rng = np.random.default_rng(3)
    return {(c, z, 0, 0): rng.integers(0, 65535, (7, 9), dtype=np.uint16) for c in range(2) for z in range(3)}


def _colour() -> dict:
    rng = np.random.default_rng(4)
    # Distinct channels, so that the BGR order cannot pass for RGB.
    return {(0, z, 0, 0): np.stack([rng.integers(0, 90, (6, 8)), rng.integers(90, 180, (6, 8)),
                                    rng.integers(180, 256, (6, 8))], axis=-1).astype(np.uint8) for z in range(2)}


def _plot() -> np.ndarray:
    return np.random.default_rng(6).integers(0, 256, (5, 4, 3), dtype=np.uint8)


@pytest.fixture
def original_lab(pg_url, tmp_path):
    """A database the original imagingDB made, and its NAS folder, adopted with imaging_db_migrate."""
    nas = make_storage("local", str(tmp_path / "nas"))
    engine = sa.create_engine(pg_url)
    create_original_tables(engine, stamped=True)
    with engine.begin() as conn:
        insert_frames_dataset(conn, GREY_ID, _grey(), ["GFP", "RFP"], metadata={"protein_name": "TOPOR"},
                              store=nas.put)
        insert_frames_dataset(conn, COLOUR_ID, _colour(), ["BF"], store=nas.put)
        insert_frames_dataset(conn, OLD_ID, _grey(), ["GFP", "RFP"], checksums="none", store=nas.put)
        # A PNG as the original stored a file: as is, its sha256 that of the file.
        insert_file_dataset(conn, PLOT_ID, "plot.png", encode_as_original(_plot()[..., ::-1]), store=nas.put)
    engine.dispose()
    login = tmp_path / "login.json"
    login.write_text(json.dumps(_login_dict(pg_url)))
    return login, nas


@pytest.mark.postgresql
def test_an_original_labs_database_loads_through_the_layer(original_lab, tmp_path, caplog):
    import imaging_db.database.db_operations as db_ops
    import imaging_db.filestorage.local_storage as local_storage
    import imaging_db.utils.db_utils as db_utils

    login, nas = original_lab
    credentials_str = db_utils.get_connection_str(login)
    with pytest.raises(DatabaseError, match="imaging_db_migrate"):
        with db_ops.session_scope(credentials_str):
            pass
    assert imaging_db_migrate.main(["--login", str(login), "--default-storage", "local",
                                    "--default-storage-access", str(tmp_path / "nas")]) == 0
    with db_ops.session_scope(credentials_str) as session:
        found = db_ops.get_datasets(session, {"project_id": "ML", "start_date": "2018-11-01"})
        assert [dataset.dataset_serial for dataset in found] == [GREY_ID, COLOUR_ID]
        topor = session.query(db_ops.DataSet).join(db_ops.FramesGlobal) \
            .filter(db_ops.FramesGlobal.metadata_json.contains({"protein_name": "TOPOR"})).all()
        assert [dataset.dataset_serial for dataset in topor] == [GREY_ID]
        grey_meta, grey_frames = db_ops.DatabaseOperations(GREY_ID).get_frames_meta(session, channels="RFP")
        colour_meta, colour_frames = db_ops.DatabaseOperations(COLOUR_ID).get_frames_meta(session)
        old_meta, old_frames = db_ops.DatabaseOperations(OLD_ID).get_frames_meta(session, slices=[0, 2])
    assert grey_meta["metadata_json"] == {"protein_name": "TOPOR"} and grey_meta["bit_depth"] == "uint16"
    assert list(grey_frames["sha256"]) == [hashlib_pixels(_grey()[1, z, 0, 0]) for z in range(3)]

    # No access point: the database's default storage, the lab's NAS.
    loader = local_storage.LocalStorage(storage_dir=grey_meta["storage_dir"])
    assert loader.mount_point == str(tmp_path / "nas")
    stack, dims = loader.get_stack_from_meta(grey_meta, grey_frames)
    assert dims == "XYZ"
    np.testing.assert_array_equal(stack, expected_stack(_grey(), [1], range(3), [0], [0]))

    # Colour frames the original stored in BGR order come back as the RGB frames it was given.
    loader = local_storage.LocalStorage(storage_dir=colour_meta["storage_dir"])
    stack, dims = loader.get_stack_from_meta(colour_meta, colour_frames)
    assert dims == "XYGZ" and stack.shape == (6, 8, 3, 2)
    np.testing.assert_array_equal(stack, expected_stack(_colour(), [0], range(2), [0], [0]))
    np.testing.assert_array_equal(loader.get_im("im_c000_z001_t000_p000.png"), _colour()[0, 1, 0, 0])

    # Frames from before checksums: read, and said to be unchecked.
    with caplog.at_level(logging.WARNING):
        stack, dims = local_storage.LocalStorage(old_meta["storage_dir"]).get_stack_from_meta(old_meta, old_frames)
    assert dims == "XYZC"
    np.testing.assert_array_equal(stack, expected_stack(_grey(), [0, 1], [0, 2], [0], [0]))
    assert f"{OLD_ID}: 4 of 4 object(s) read without a checksum check: the database records no checksum" \
        in caplog.text

    # A file dataset's image, checked against the file's sha256.
    plot = local_storage.LocalStorage(f"raw_files/{PLOT_ID}").get_im("plot.png")
    np.testing.assert_array_equal(plot, _plot())

    # A damaged frame is caught, through frames_meta's checksums and through the database's.
    damaged = _grey()[1, 2, 0, 0].copy()
    damaged[0, 0] ^= 1
    key = f"raw_frames/{GREY_ID}/im_c001_z002_t000_p000.png"
    nas.delete(key)
    nas.put(key, encode_as_original(damaged))
    loader = local_storage.LocalStorage(storage_dir=grey_meta["storage_dir"])
    with pytest.raises(IntegrityError, match=rf"dataset {GREY_ID}: frame im_c001_z002_t000_p000.png .* is corrupt"):
        loader.get_stack_from_meta(grey_meta, grey_frames)
    with pytest.raises(IntegrityError, match="is corrupt"):
        loader.get_im("im_c001_z002_t000_p000.png")


def hashlib_pixels(pixels: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(pixels.tobytes()).hexdigest()


# --------------------------------------------------------------------------- start-up stays light
def test_the_layer_loads_only_when_asked_for():
    script = (
        "import sys\n"
        "import imaging_db\n"
        "from imaging_db.cli import data_downloader, data_uploader, data_verify, imaging_db_migrate, query_data\n"
        "import imaging_db.filestorage.local_storage as local_storage\n"
        "import imaging_db.filestorage.s3_storage as s3_storage\n"
        "from imaging_db.filestorage import make_storage\n"
        "make_storage('local', 'unused')\n"
        "print(sorted(m for m in ('pandas', 'imaging_db.compat', 'imaging_db.compat.storage') if m in sys.modules))\n"
        "assert local_storage.LocalStorage.__module__ == 'imaging_db.compat.storage'\n"
        "assert s3_storage.S3Storage.__module__ == 'imaging_db.compat.storage'\n"
        "assert local_storage.LocalDataStorage.__module__ == 'imaging_db.filestorage.local_storage'\n"
        "print(sorted(m for m in ('pandas', 'imaging_db.compat.db_operations') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[]", "[]"]
