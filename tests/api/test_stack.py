"""get_stack into memory: pixels bit for bit against the source TIFF, dims and coordinates, selections and errors."""

import hashlib
import shutil

import numpy as np
import pytest
import sqlalchemy as sa

import imaging_db
from imaging_db.errors import InputError, IntegrityError, NotFoundError
from imaging_db.example_data import frame_pixels, write_imagej_stack, write_tif_folder
from imaging_db.filestorage import make_storage
from imaging_db.pipeline.download import download_dataset
from imaging_db.pipeline.selection import FrameSelection
from tests.api.conftest import CHANNELS, ID, NBR_POSITIONS, NBR_SLICES, NBR_TIMES, SHAPE, upload


def check_stack(stack, pages, positions, times, channels, slices):
    """``stack`` holds exactly the source pages of these indices, in this order, with matching coordinates."""
    assert stack.dims == ("p", "t", "c", "z", "y", "x")
    assert stack.shape == (len(positions), len(times), len(channels), len(slices), *SHAPE)
    assert stack.dtype == np.uint16
    assert stack.name == ID
    for dim, values in (("p", positions), ("t", times), ("c", channels), ("z", slices)):
        assert stack.coords[dim].values.tolist() == values
    assert stack.coords["channel_name"].dims == ("c",)
    assert stack.coords["channel_name"].values.tolist() == [CHANNELS[c] for c in channels]
    for i, p in enumerate(positions):
        for j, t in enumerate(times):
            for k, c in enumerate(channels):
                for m, z in enumerate(slices):
                    assert np.array_equal(stack.values[i, j, k, m], pages[(c, z, t, p)]), (p, t, c, z)


def test_whole_stack_is_bit_exact(db, acquisition):
    _, pages = acquisition
    stack = db.get_stack(ID)
    check_stack(stack, pages, list(range(NBR_POSITIONS)), list(range(NBR_TIMES)), [0, 1], list(range(NBR_SLICES)))
    # The example data's pixels are a pure function of the indices: the source pages are what was written.
    assert np.array_equal(stack.values[1, 0, 1, 2], frame_pixels(1, 2, 0, 1, SHAPE))
    assert stack.attrs["dataset_id"] == ID


@pytest.mark.parametrize("selection, expected", [
    ({"channels": ["Cy5 far red"]}, ([0, 1], [0, 1], [1], [0, 1, 2])),
    ({"channels": "GFP"}, ([0, 1], [0, 1], [0], [0, 1, 2])),
    ({"channels": [1, 0]}, ([0, 1], [0, 1], [0, 1], [0, 1, 2])),
    ({"channels": ["1"]}, ([0, 1], [0, 1], [1], [0, 1, 2])),
    ({"slices": [2, 0]}, ([0, 1], [0, 1], [0, 1], [0, 2])),
    ({"times": [1]}, ([0, 1], [1], [0, 1], [0, 1, 2])),
    ({"positions": np.array([1])}, ([1], [0, 1], [0, 1], [0, 1, 2])),
    ({"channels": ["GFP"], "slices": [1], "times": [0], "positions": [1]}, ([1], [0], [0], [1])),
], ids=["channel-name", "one-name", "indices", "index-as-text", "slices", "times", "positions", "all"])
def test_selections(local_db, acquisition, selection, expected):
    _, pages = acquisition
    check_stack(local_db.get_stack(ID, **selection), pages, *expected)


def test_rgb_and_uint8(tmp_path, login_file, storage_spec):
    shape = (*SHAPE, 3)
    write_imagej_stack(tmp_path / "rgb.tif", nbr_channels=2, nbr_slices=2, nbr_times=1, shape=shape, dtype="uint8",
                       channel_names=["BF", "GFP"])
    upload(tmp_path, login_file, storage_spec, [{"dataset_id": ID, "file_name": str(tmp_path / "rgb.tif")}],
           upload_type="frames", frames_format="tif_id")
    with imaging_db.connect(login_file) as db:
        stack = db.get_stack(ID, slices=[1])
    assert stack.dims == ("p", "t", "c", "z", "y", "x", "s")
    assert stack.shape == (1, 1, 2, 1, *shape) and stack.dtype == np.uint8
    assert stack.coords["channel_name"].values.tolist() == ["BF", "GFP"]
    for c in range(2):
        # RGB order as written (the example's three samples differ), not OpenCV's BGR.
        assert np.array_equal(stack.values[0, 0, c, 0], frame_pixels(c, 1, 0, 0, shape, "uint8"))


def test_a_channel_named_like_an_integer_is_a_name(tmp_path, login_file, local_spec):
    """As the downloader's -c: integers are indices unless one of them is a channel's name."""
    write_tif_folder(tmp_path / "tifs", ["488", "GFP"], nbr_slices=1, shape=SHAPE, dtype="uint8")
    upload(tmp_path, login_file, local_spec, [{"dataset_id": ID, "file_name": str(tmp_path / "tifs")}],
           upload_type="frames", frames_format="tif_folder")
    with imaging_db.connect(login_file) as db:
        assert db.get_stack(ID, channels=["488"]).coords["channel_name"].values.tolist() == ["488"]
        assert db.get_stack(ID, channels=[1]).coords["channel_name"].values.tolist() == ["GFP"]
        assert db.get_stack(ID, channels=["0", "1"]).coords["channel_name"].values.tolist() == ["488", "GFP"]
        with pytest.raises(NotFoundError, match="no frames with channel '1';"):
            db.get_stack(ID, channels=["488", "1"])
        with pytest.raises(InputError, match="no frames with channel 'RFP';"):  # DESIGN: an InputError too
            db.get_stack(ID, channels=["RFP"])


def test_a_frame_missing_from_the_grid_is_named(local_db, db_url):
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM frames WHERE file_name = 'im_c001_z002_t000_p001.png'"))
    engine.dispose()
    with pytest.raises(NotFoundError, match=rf"dataset {ID}: the frames selected are not a full grid .*"
                                            r"1 frame\(s\) missing: \(p 1, t 0, c 1, z 2\); select fewer"):
        local_db.get_stack(ID)
    with pytest.raises(NotFoundError, match=r"\(p 1, t 0, c 1, z 2\)"):
        local_db.get_stack(ID, lazy=True)
    # Each value exists, but not together.
    with pytest.raises(NotFoundError, match=rf"^dataset {ID}: no frames with channels \[1\], slices \[2\], "
                                            r"times \[0\], positions \[1\]; it has channels"):
        local_db.get_stack(ID, channels=[1], slices=[2], times=[0], positions=[1])
    # Any full grid around the hole still reads.
    assert local_db.get_stack(ID, slices=[0, 1]).shape[:4] == (2, 2, 2, 2)
    assert local_db.get_stack(ID, positions=[1], times=[0], channels=["Cy5 far red"]).shape[:4] == (1, 1, 1, 2)


@pytest.mark.parametrize("selection, message", [
    ({"channels": ["DAPI"]}, r"no frames with channel 'DAPI'; it has channels \['Cy5 far red', 'GFP'\] "
                             r"\(indices \[0, 1\]\), slices \[0, 1, 2\], times \[0, 1\], positions \[0, 1\]"),
    ({"channels": [5]}, r"no frames with channel 5;"),
    ({"slices": [0, 9], "times": [7]}, r"no frames with slice 9, time 7;"),
    ({"positions": [3]}, r"no frames with position 3;"),
])
def test_a_value_the_dataset_lacks_gets_the_downloaders_message(local_db, login_file, tmp_path, selection, message):
    with pytest.raises(NotFoundError, match=rf"^dataset {ID}: {message}") as api_error:
        local_db.get_stack(ID, **selection)
    with pytest.raises(NotFoundError) as download_error:
        download_dataset(ID, tmp_path / "dl", login=login_file, selection=FrameSelection(**selection))
    assert str(api_error.value) == str(download_error.value)
    with pytest.raises(NotFoundError, match=message):
        local_db.frames_meta(ID, **selection)
    with pytest.raises(NotFoundError, match=message):
        local_db.get_stack(ID, lazy=True, **selection)


@pytest.mark.parametrize("call, error, message", [
    (lambda db: db.get_stack("ML-2018-11-07-09-35-54"), InputError, "invalid dataset id"),
    (lambda db: db.get_stack(10), InputError, "a dataset id is text"),
    (lambda db: db.get_stack("ML-2018-11-07-09-35-54-0099"), NotFoundError,
     "dataset ML-2018-11-07-09-35-54-0099 is not in the database"),
    (lambda db: db.get_stack(ID, slices=["a"]), InputError, "slices must be integers, not 'a'"),
    (lambda db: db.get_stack(ID, channels=[1.5]), InputError, "channels must be names or indices, not 1.5"),
    (lambda db: db.get_stack(ID, storage="ftp"), InputError, "unknown storage 'ftp'; use 'local' or 's3'"),
    (lambda db: db.get_stack(ID, storage="s3"), InputError, "storage s3 needs a bucket name"),
])
def test_bad_requests(local_db, call, error, message):
    with pytest.raises(error, match=message):
        call(local_db)


def test_a_corrupt_frame_is_an_integrity_error(db, storage_spec):
    storage = make_storage(storage_spec["storage"], storage_spec["storage_access"],
                           s3_endpoint_url=storage_spec["s3_endpoint_url"])
    key = f"raw_frames/{ID}/im_c000_z001_t001_p000.png"
    data = bytearray(storage.get(key))
    data[-20] ^= 0xFF
    storage.delete(key)
    storage.put(key, bytes(data))
    digest = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(IntegrityError, match=rf"dataset {ID}: frame im_c000_z001_t001_p000.png in .* is corrupt: "
                                             rf"sha256 {digest} does not match the recorded"):
        db.get_stack(ID)
    lazy = db.get_stack(ID, lazy=True)
    with pytest.raises(IntegrityError, match="im_c000_z001_t001_p000.png .* is corrupt"):
        lazy.sel(p=0, t=1, c=0).max("z").compute()
    # Frames that are intact still read, eagerly and lazily.
    assert db.get_stack(ID, times=[0]).shape[1] == 1
    assert lazy.sel(t=0).sum().compute() == db.get_stack(ID, times=[0]).sum()


def test_a_frame_that_is_not_the_datasets_type_is_an_integrity_error(local_db, local_spec, db_url):
    from imaging_db.images.png import encode_png

    storage = make_storage("local", local_spec["storage_access"])
    key = f"raw_frames/{ID}/im_c001_z000_t000_p000.png"
    data = encode_png(np.zeros(SHAPE, dtype=np.uint8))  # a valid PNG, of uint8 pixels
    storage.delete(key)
    storage.put(key, data)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE frames SET sha256 = :s WHERE file_name = 'im_c001_z000_t000_p000.png'"),
                     {"s": hashlib.sha256(data).hexdigest()})
    engine.dispose()
    with pytest.raises(IntegrityError, match=r"frame im_c001_z000_t000_p000.png in local:.* holds uint8 pixels of "
                                             r"shape \(40, 56\), not the dataset's uint16 of shape \(40, 56\)"):
        local_db.get_stack(ID, channels=[1])


def test_storage_overrides_after_the_data_moved(tmp_path, local_db, login_file, local_spec, acquisition):
    _, pages = acquisition
    moved = tmp_path / "moved"
    shutil.move(local_spec["storage_access"], moved)
    with pytest.raises(NotFoundError, match="im_c000_z000_t000_p000.png' is missing from local:"):
        local_db.get_stack(ID)
    stack = local_db.get_stack(ID, times=[1], storage_access=str(moved))
    assert np.array_equal(stack.values[0, 0, 0, 0], pages[(0, 0, 1, 0)])
    with imaging_db.connect(login_file, storage_access=str(moved)) as db:
        assert np.array_equal(db.get_stack(ID).values, local_db.get_stack(ID, storage_access=str(moved)).values)
        lazy = db.get_stack(ID, lazy=True, positions=[1])
        assert np.array_equal(lazy.values, db.get_stack(ID, positions=[1]).values)


def test_connect_errors(tmp_path):
    with pytest.raises(NotFoundError, match=r"imaging_db.connect: no database to read: the SQLite database .* "
                                            "does not exist"):
        imaging_db.connect()
    with pytest.raises(InputError, match="nbr_workers must be at least 1"):
        imaging_db.connect(nbr_workers=-1)
    with pytest.raises(InputError, match="unknown storage 'ftp'"):
        imaging_db.connect(storage="ftp")
