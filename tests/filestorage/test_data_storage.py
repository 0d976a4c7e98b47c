"""Conformance tests every DataStorage backend must pass, run on local and S3 (moto over HTTP).

Backend-specific behaviour lives in test_local_storage.py and test_s3_storage.py.
"""

import hashlib
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from imaging_db.errors import InputError, NotFoundError, ObjectExistsError, StorageError
from imaging_db.filestorage import STORAGES, DataStorage, make_storage, storage_class, storage_names
from imaging_db.filestorage.data_storage import check_key
from imaging_db.filestorage.local_storage import LocalDataStorage
from imaging_db.filestorage.object_writer import QueuedObjectWriter

INVALID_KEYS = ["../x", "/abs", "a//b", "a/../b", "a/./b", "a/", "", "a\\b"]

BIG_FILE_SIZE = 3 * 1024 * 1024 + 17  # multi-MB, not a multiple of any buffer size


def _payload(size: int, seed: int = 0) -> bytes:
    """Incompressible, reproducible bytes."""
    return hashlib.shake_256(f"payload-{seed}".encode()).digest(size)


class TestDataStorageConformance:
    """What every backend promises: bytes in, the same bytes out, by key."""

    def test_is_a_data_storage(self, storage):
        assert isinstance(storage, DataStorage)
        assert storage.describe()

    def test_check_passes_on_a_fresh_storage(self, storage):
        storage.check()

    def test_put_get_round_trip(self, storage):
        data = _payload(1000)
        storage.put("raw_frames/ML-2018-11-07-09-35-54-0010/im_c000_z000_t000_p000.png", data)
        assert storage.get("raw_frames/ML-2018-11-07-09-35-54-0010/im_c000_z000_t000_p000.png") == data

    def test_put_get_empty_object(self, storage):
        storage.put("raw_files/empty.txt", b"")
        assert storage.get("raw_files/empty.txt") == b""
        listed = storage.list("raw_files/")
        assert set(listed) == {"raw_files/empty.txt"}
        assert listed["raw_files/empty.txt"].size == 0

    def test_put_stream_stores_the_pieces_joined(self, storage):
        pieces = [_payload(100_000, seed) for seed in range(5)] + [b"", b"end"]
        key = "raw_frames/ML-2018-11-07-09-35-54-0010/im_c000_z001_t000_p000.png"
        assert storage.put_stream(key, iter(pieces)) == sum(len(p) for p in pieces)
        assert storage.get(key) == b"".join(pieces)
        assert storage.list("raw_frames/")[key].size == sum(len(p) for p in pieces)

    def test_put_stream_failing_midway_stores_nothing(self, storage):
        def pieces():
            yield _payload(50_000)
            raise InputError("page 3: cannot read pixels")

        with pytest.raises(InputError, match="page 3"):
            storage.put_stream("raw_frames/DS/im.png", pieces())
        assert storage.list("raw_frames/") == {}

    @pytest.mark.parametrize("how", ["put", "put_stream", "put_file"])
    def test_a_new_object_never_replaces_one(self, storage, how, tmp_path):
        first = b"first version, longer than the second"
        storage.put("a/key", first)
        source = tmp_path / "second.bin"
        source.write_bytes(b"second")
        write = {
            "put": lambda: storage.put("a/key", b"second"),
            "put_stream": lambda: storage.put_stream("a/key", iter([b"sec", b"ond"])),
            "put_file": lambda: storage.put_file("a/key", source),
        }[how]
        with pytest.raises(ObjectExistsError, match="'a/key' already exists .*not replaced"):
            write()
        assert storage.get("a/key") == first
        assert set(storage.list("a/")) == {"a/key"}
        assert storage.partials("a/") == []

    def test_object_exists_error_is_a_storage_and_file_exists_error(self, storage):
        storage.put("a/key", b"1")
        with pytest.raises(StorageError):
            storage.put("a/key", b"2")
        with pytest.raises(FileExistsError):
            storage.put("a/key", b"2")

    def test_delete_then_put_stores_new_content(self, storage):
        storage.put("a/key", b"first")
        storage.delete("a/key")
        storage.put("a/key", b"second")
        assert storage.get("a/key") == b"second"

    def test_concurrent_writers_of_one_key_exactly_one_wins(self, storage):
        """Many threads write different content to one key at once: one succeeds, the object is whole."""
        writers = 8
        barrier = threading.Barrier(writers)
        payloads = [_payload(200_000, seed) for seed in range(writers)]
        outcomes: list = [None] * writers

        def write(i):
            barrier.wait()
            try:
                storage.put("race/key", payloads[i])
                outcomes[i] = "ok"
            except ObjectExistsError:
                outcomes[i] = "exists"

        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count("ok") == 1, outcomes
        assert outcomes.count("exists") == writers - 1
        assert storage.get("race/key") == payloads[outcomes.index("ok")]
        assert storage.partials("race/") == []

    def test_writer_stores_every_object_bit_exact(self, storage):
        """The writer's puts, from several workers at once, as the upload makes them."""
        objects = {f"raw_frames/DS-1/im_c000_z{i:03d}_t000_p000.png": _payload(20_000 + i, i) for i in range(24)}

        def store(writer, i, key):
            data = objects[key]
            if i % 2:
                assert writer.put_stream(key, iter([data[:5000], data[5000:]])) == len(data)
            else:
                writer.put(key, data)

        with storage.writer() as writer:
            assert isinstance(writer, QueuedObjectWriter) == (storage.parallel_requests > 1)
            with ThreadPoolExecutor(4) as workers:
                list(workers.map(store, [writer] * len(objects), range(len(objects)), objects))
            writer.raise_failures()
            writer.finish()
        assert sorted(writer.written) == sorted(objects)
        assert {key: obj.size for key, obj in storage.list("raw_frames/").items()} == {
            key: len(data) for key, data in objects.items()}
        for key, data in objects.items():
            assert storage.get(key) == data

    def test_writer_reports_a_put_that_failed(self, storage):
        storage.put("a/key", b"first")
        with storage.writer() as writer:
            writer.put("a/other", b"other")
            with pytest.raises(ObjectExistsError, match="'a/key' already exists .*not replaced"):
                writer.put("a/key", b"second")  # raises here when stored inline,
                writer.finish()  # here when queued
            writer.finish()
        assert writer.written == ["a/other"]
        assert storage.get("a/key") == b"first" and storage.get("a/other") == b"other"

    def test_no_partials_on_a_fresh_prefix(self, storage):
        assert storage.partials("raw_frames/DS/") == []
        assert storage.discard_partials("raw_frames/DS/") == 0

    def test_put_file_get_file_multi_mb_bit_exact(self, storage, tmp_path):
        data = _payload(BIG_FILE_SIZE)
        source = tmp_path / "source.tif"
        source.write_bytes(data)
        storage.put_file("raw_files/ML-2018-11-07-09-35-54-0010/source.tif", source)

        dest = tmp_path / "dest.tif"
        storage.get_file("raw_files/ML-2018-11-07-09-35-54-0010/source.tif", dest)
        assert dest.stat().st_size == BIG_FILE_SIZE
        assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert storage.get("raw_files/ML-2018-11-07-09-35-54-0010/source.tif") == data

    def test_list_returns_keys_and_sizes_under_prefix(self, storage):
        objects = {
            "raw_frames/DS-1/im_c000_z000_t000_p000.png": _payload(10, 1),
            "raw_frames/DS-1/im_c001_z000_t000_p000.png": _payload(2000, 2),
            "raw_frames/DS-1/sub/deeper.png": _payload(33, 3),
            "raw_frames/DS-10/im_c000_z000_t000_p000.png": _payload(5, 4),
            "raw_files/DS-1/file.tif": _payload(7, 5),
        }
        for key, data in objects.items():
            storage.put(key, data)

        listed = storage.list("raw_frames/DS-1/")
        assert {k: v.size for k, v in listed.items()} == {
            k: len(v) for k, v in objects.items() if k.startswith("raw_frames/DS-1/")
        }
        # A prefix is a string prefix, not a folder: DS-1 also matches DS-10.
        assert set(storage.list("raw_frames/DS-1")) == {k for k in objects if k.startswith("raw_frames/DS-1")}
        assert set(storage.list("")) == set(objects)
        for key, obj in listed.items():
            # md5 is optional, but when a backend gives one it must be right.
            assert obj.md5 is None or obj.md5 == hashlib.md5(objects[key]).hexdigest()

    def test_list_of_missing_prefix_is_empty(self, storage):
        assert storage.list("raw_frames/nothing-here/") == {}
        storage.put("raw_frames/DS-1/a.png", b"x")
        assert storage.list("raw_frames/nothing-here/") == {}
        assert storage.list("raw_frames/DS-2") == {}

    def test_listing_a_key_tells_whether_it_holds_an_object(self, storage):
        """``key in storage.list(key)``: how callers ask whether one object is stored."""
        assert "raw_frames/DS-1/a.png" not in storage.list("raw_frames/DS-1/a.png")
        storage.put("raw_frames/DS-1/a.png", b"x")
        assert set(storage.list("raw_frames/DS-1/a.png")) == {"raw_frames/DS-1/a.png"}
        # A "folder" or a key prefix is not an object.
        assert "raw_frames/DS-1" not in storage.list("raw_frames/DS-1")
        assert "raw_frames/DS-1/a.pn" not in storage.list("raw_frames/DS-1/a.pn")

    def test_delete(self, storage):
        storage.put("raw_frames/DS-1/a.png", b"x")
        storage.put("raw_frames/DS-1/b.png", b"y")
        storage.delete("raw_frames/DS-1/a.png")
        assert set(storage.list("raw_frames/")) == {"raw_frames/DS-1/b.png"}
        with pytest.raises(NotFoundError):
            storage.get("raw_frames/DS-1/a.png")

    def test_delete_missing_key_is_fine(self, storage):
        storage.delete("raw_frames/DS-1/never-stored.png")
        storage.put("raw_frames/DS-1/a.png", b"x")
        storage.delete("raw_frames/DS-1/a.png")
        storage.delete("raw_frames/DS-1/a.png")
        assert storage.list("raw_frames/") == {}

    def test_get_missing_key_raises_not_found_naming_the_key(self, storage):
        with pytest.raises(NotFoundError, match="raw_frames/DS-1/missing.png"):
            storage.get("raw_frames/DS-1/missing.png")
        storage.put("raw_frames/DS-1/other.png", b"x")
        with pytest.raises(NotFoundError, match="raw_frames/DS-1/missing.png"):
            storage.get("raw_frames/DS-1/missing.png")

    def test_get_file_missing_key_raises_not_found(self, storage, tmp_path):
        dest = tmp_path / "dest.png"
        with pytest.raises(NotFoundError, match="raw_files/DS-1/missing.tif"):
            storage.get_file("raw_files/DS-1/missing.tif", dest)
        assert not dest.exists()

    def test_get_file_into_a_missing_folder_is_a_storage_error(self, storage, tmp_path):
        storage.put("raw_files/DS-1/f.tif", b"data")
        with pytest.raises(StorageError, match="raw_files/DS-1/f.tif"):
            storage.get_file("raw_files/DS-1/f.tif", tmp_path / "no" / "such" / "folder" / "f.tif")

    def test_not_found_is_also_a_lookup_error(self, storage):
        with pytest.raises(LookupError):
            storage.get("nope")

    @pytest.mark.parametrize("key", INVALID_KEYS)
    def test_invalid_keys_are_rejected(self, storage, key, tmp_path):
        source = tmp_path / "f"
        source.write_bytes(b"x")
        with pytest.raises(InputError, match="invalid storage key"):
            storage.put(key, b"x")
        with pytest.raises(InputError, match="invalid storage key"):
            storage.put_file(key, source)
        with pytest.raises(InputError, match="invalid storage key"):
            storage.get(key)
        with pytest.raises(InputError, match="invalid storage key"):
            storage.get_file(key, tmp_path / "g")
        with pytest.raises(InputError, match="invalid storage key"):
            storage.delete(key)
        assert storage.list("") == {}

    def test_climbing_key_writes_nothing_outside(self, storage, tmp_path):
        before = sorted(os.listdir(tmp_path))
        with pytest.raises(InputError):
            storage.put("../escaped.png", b"x")
        assert sorted(os.listdir(tmp_path)) == before


class TestCheckKey:
    @pytest.mark.parametrize("key", ["a", "raw_frames/DS-1/im_c000_z000_t000_p000.png", "a.b/c..d/.e"])
    def test_valid_keys_pass(self, key):
        assert check_key(key) == key

    @pytest.mark.parametrize("key", INVALID_KEYS)
    def test_invalid_keys_raise(self, key):
        with pytest.raises(InputError, match="invalid storage key"):
            check_key(key)


class TestMakeStorage:
    def test_unknown_kind(self):
        with pytest.raises(InputError, match="unknown storage 'ftp'; use 'local' or 's3'"):
            make_storage("ftp", "somewhere")

    def test_names_come_from_the_registry(self):
        assert storage_names() == list(STORAGES) == ["local", "s3"]
        assert storage_class("local") is LocalDataStorage

    def test_a_registered_class_is_built_and_named_in_errors(self, monkeypatch, tmp_path):
        class FolderStorage(LocalDataStorage):
            @classmethod
            def from_settings(cls, access, *, s3_endpoint_url=None, max_connections=10):
                return cls(f"{access}-{max_connections}")

        monkeypatch.setitem(STORAGES, "folder", FolderStorage)
        assert storage_names() == ["local", "s3", "folder"]
        storage = make_storage("folder", str(tmp_path / "f"), max_connections=3)
        assert type(storage) is FolderStorage and storage.root == tmp_path / "f-3"
        with pytest.raises(InputError, match=r"^unknown storage 'ftp'; use 'local', 's3' or 'folder'$"):
            make_storage("ftp")

    def test_local_storage_never_imports_boto3(self, tmp_path):
        code = ("import sys; from imaging_db.filestorage import make_storage; "
                f"make_storage('local', {str(tmp_path)!r}).writer().put('a/b', b'x'); "
                "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'")
        subprocess.run([sys.executable, "-c", code], check=True)
        assert (tmp_path / "a" / "b").read_bytes() == b"x"

    @pytest.mark.parametrize("bucket", [None, ""])
    def test_s3_without_bucket(self, bucket):
        with pytest.raises(InputError, match="storage s3 needs a bucket name"):
            make_storage("s3", bucket)

    def test_local_default_root_is_under_imaging_db_home(self, imaging_home):
        storage = make_storage("local")
        storage.put("a/b", b"x")
        assert (imaging_home / "storage" / "a" / "b").read_bytes() == b"x"

    def test_local_explicit_root(self, tmp_path):
        storage = make_storage("local", str(tmp_path / "nas"))
        storage.put("a/b", b"x")
        assert (tmp_path / "nas" / "a" / "b").read_bytes() == b"x"
        assert storage.describe() == f"local:{tmp_path / 'nas'}"

    @pytest.mark.s3
    def test_s3_describe_names_bucket_and_endpoint(self, moto_endpoint, s3_bucket):
        storage = make_storage("s3", s3_bucket, s3_endpoint_url=moto_endpoint)
        assert storage.describe() == f"s3://{s3_bucket} at {moto_endpoint}"
