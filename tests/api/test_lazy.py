"""get_stack(lazy=True): the same array backed by dask, one frame per chunk, reading only what a computation touches."""

import pickle
import threading

import numpy as np
import pytest

from imaging_db.filestorage import DataStorage, StorageLocation, storage_class
from tests.api.conftest import ID, NBR_POSITIONS, NBR_SLICES, NBR_TIMES, SHAPE


@pytest.fixture
def reads(monkeypatch, storage_spec):
    """The keys the storage backend is asked for, in this process (every instance, however opened)."""
    backend = storage_class(storage_spec["storage"])
    keys, lock = [], threading.Lock()
    real_get = backend.get

    def counting_get(self, key):
        with lock:
            keys.append(key)
        return real_get(self, key)

    monkeypatch.setattr(backend, "get", counting_get)
    return keys


def test_lazy_is_the_eager_array(db, reads):
    lazy = db.get_stack(ID, lazy=True)
    assert reads == []  # nothing is read until computed
    import dask.array as da

    assert isinstance(lazy.data, da.Array)
    assert lazy.dims == ("p", "t", "c", "z", "y", "x") and lazy.dtype == np.uint16
    assert lazy.data.chunks == ((1,) * NBR_POSITIONS, (1,) * NBR_TIMES, (1, 1), (1,) * NBR_SLICES, (SHAPE[0],),
                                (SHAPE[1],))
    assert lazy.data.npartitions == 24
    eager = db.get_stack(ID)
    del reads[:]
    assert lazy.coords.to_dataset().identical(eager.coords.to_dataset())
    computed = lazy.compute()
    assert len(reads) == 24
    assert computed.dtype == np.uint16 and np.array_equal(computed.values, eager.values)
    assert computed.identical(eager)


def test_a_max_projection_reads_only_its_frames(db, reads, acquisition):
    _, pages = acquisition
    lazy = db.get_stack(ID, lazy=True)
    projection = lazy.sel(p=1, t=0).isel(c=1).max("z").compute()
    assert sorted(reads) == [f"raw_frames/{ID}/im_c001_z{z:03d}_t000_p001.png" for z in range(NBR_SLICES)]
    expected = np.max([pages[(1, z, 0, 1)] for z in range(NBR_SLICES)], axis=0)
    assert np.array_equal(projection.values, expected)
    assert projection.coords["channel_name"].item() == "Cy5 far red"
    del reads[:]
    # A filtered lazy stack: its chunks are only the frames selected.
    some = db.get_stack(ID, channels=["GFP"], slices=[2], lazy=True)
    assert some.data.npartitions == NBR_POSITIONS * NBR_TIMES
    assert np.array_equal(some.sel(p=0, t=1).squeeze().values, pages[(0, 2, 1, 0)])
    assert reads == [f"raw_frames/{ID}/im_c000_z002_t001_p000.png"]


def test_rgb_lazy(tmp_path, login_file, local_spec):
    import imaging_db
    from imaging_db.example_data import write_imagej_stack
    from tests.api.conftest import upload

    write_imagej_stack(tmp_path / "rgb.tif", nbr_channels=1, nbr_slices=2, shape=(*SHAPE, 3), dtype="uint8")
    upload(tmp_path, login_file, local_spec, [{"dataset_id": ID, "file_name": str(tmp_path / "rgb.tif")}],
           upload_type="frames", frames_format="tif_id")
    with imaging_db.connect(login_file) as db:
        lazy = db.get_stack(ID, lazy=True)
        assert lazy.dims[-1] == "s" and lazy.data.chunksize == (1, 1, 1, 1, *SHAPE, 3)
        assert lazy.dtype == np.uint8
        assert np.array_equal(lazy.values, db.get_stack(ID).values)


def _task_arguments(graph) -> list:
    found = []
    for task in dict(graph).values():
        args = getattr(task, "args", None)
        if args is None and isinstance(task, tuple):
            args = task[1:]
        for arg in args or ():
            found.append(getattr(arg, "value", arg))
    return found


def test_the_graph_holds_only_small_picklable_values(db):
    lazy = db.get_stack(ID, lazy=True)
    graph = lazy.data.__dask_graph__()
    pickled = pickle.dumps(dict(graph))  # the standard pickle: no locks, clients or sessions inside
    assert len(pickled) < 400 * 24  # a frame's key, name and checksum each, not a storage or a connection
    arguments = _task_arguments(graph)
    assert arguments, "no task arguments found in the graph"
    assert not any(isinstance(arg, DataStorage) for arg in arguments)
    assert b"Database" not in pickled and b"Storage\n" not in pickled


# --------------------------------------------------------------------------- dask.distributed, worker processes
@pytest.fixture(scope="module")
def cluster_client(moto_endpoint):
    """A dask.distributed client of two worker processes (one thread each), or skip if one cannot start here.

    The workers inherit this process's environment when they start: after moto_endpoint has set the S3
    credentials, as a user's would be set.
    """
    try:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                               silence_logs=50)
    except Exception as exc:  # e.g. no permission to spawn processes or open sockets in this sandbox
        pytest.skip(f"dask.distributed cannot start a LocalCluster of worker processes here: {exc}")
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def _opened_storages() -> list[str]:
    from imaging_db.api import stack

    return sorted(repr(location) for location in stack._process_storages)


@pytest.mark.timeout(240)
def test_under_distributed_worker_processes(db, cluster_client):
    client = cluster_client
    lazy = db.get_stack(ID, lazy=True)
    eager = db.get_stack(ID)
    workers = sorted(client.scheduler_info()["workers"])
    assert len(workers) == 2
    before = client.run(_opened_storages)  # the cluster serves each test of the module
    # One frame on each worker process: each opens the storage itself.
    for position, worker in enumerate(workers):
        future = client.compute(lazy.data[position, 0, 0, 0], workers=[worker], allow_other_workers=False)
        assert np.array_equal(future.result(), eager.values[position, 0, 0, 0])
    locations = {repr(arg) for arg in _task_arguments(lazy.data.__dask_graph__()) if isinstance(arg, StorageLocation)}
    assert len(locations) == 1
    opened = client.run(_opened_storages)
    assert opened == {worker: sorted(set(before[worker]) | locations) for worker in workers}
    # The whole stack and a projection, computed on the workers.
    computed = lazy.compute(scheduler=client)
    assert np.array_equal(computed.values, eager.values)
    projection = client.compute(lazy.max(dim="z").data).result()
    assert np.array_equal(projection, eager.values.max(axis=3))
    opened_after = client.run(_opened_storages)
    assert opened_after == opened  # still one storage per process, opened once
