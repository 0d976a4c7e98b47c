"""How many requests get_stack keeps in flight: enough for its decoders, not every one a remote storage could."""

import threading
import time

import numpy as np
import pytest

import imaging_db
from imaging_db.filestorage import storage_class
from tests.api.conftest import ID, upload


@pytest.mark.parametrize("nbr_workers", [1, 2, 3])
def test_requests_in_flight_follow_the_decoders(tmp_path, login_file, storage_spec, acquisition, monkeypatch,
                                                nbr_workers):
    """S3 keeps 16 requests in flight for a download; get_stack max(8, 4 per decoder); a folder one per worker."""
    folder, pages = acquisition
    upload(tmp_path, login_file, storage_spec, [{"dataset_id": ID, "file_name": str(folder)}],
           upload_type="frames", frames_format="ome_tiff")
    cls = storage_class(storage_spec["storage"])
    active, most, lock = [0], [0], threading.Lock()
    real_get = cls.get

    def slow_get(self, key):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.05)  # a remote storage's latency: requests pile up to the limit
            return real_get(self, key)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(cls, "get", slow_get)
    db = imaging_db.connect(login_file, nbr_workers=nbr_workers)
    try:
        stack = db.get_stack(ID)
    finally:
        db.close()
    for (c, z, t, p), pixels in pages.items():
        assert np.array_equal(stack.sel(c=c, z=z, t=t, p=p).values, pixels)
    expected = min(16, max(8, 4 * nbr_workers)) if storage_spec["storage"] == "s3" else nbr_workers
    assert most[0] == min(expected, len(pages))
