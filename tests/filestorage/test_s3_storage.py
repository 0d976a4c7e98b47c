"""What is special about S3DataStorage, against a real moto server over HTTP."""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from imaging_db.errors import ObjectExistsError, StorageError
from imaging_db.filestorage import make_storage
from imaging_db.filestorage.s3_storage import S3DataStorage

pytestmark = pytest.mark.s3


@pytest.fixture
def s3(moto_endpoint, s3_bucket) -> S3DataStorage:
    return make_storage("s3", s3_bucket, s3_endpoint_url=moto_endpoint)


def _no_aws_credentials(monkeypatch, tmp_path) -> None:
    """Hide every credential source boto3 knows: environment, profile files, instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-such-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-such-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no wait on a metadata endpoint
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


class TestS3Listing:
    def test_md5_is_etag_of_single_part_uploads(self, s3, tmp_path):
        data = os.urandom(100_000)
        s3.put("raw_frames/DS-1/a.png", data)
        source = tmp_path / "f.tif"
        source.write_bytes(data[:5000])
        s3.put_file("raw_files/DS-1/f.tif", source)

        listed = s3.list("raw_")
        assert listed["raw_frames/DS-1/a.png"].md5 == hashlib.md5(data).hexdigest()
        assert listed["raw_files/DS-1/f.tif"].md5 == hashlib.md5(data[:5000]).hexdigest()
        assert listed["raw_files/DS-1/f.tif"].size == 5000

    def test_multipart_upload_has_no_md5(self, s3, tmp_path):
        # Above boto3's 8 MB multipart threshold the ETag is "<hex>-<parts>", not an MD5.
        data = os.urandom(9 * 1024 * 1024)
        source = tmp_path / "big.tif"
        source.write_bytes(data)
        s3.put_file("raw_files/DS-1/big.tif", source)
        obj = s3.list("raw_files/")["raw_files/DS-1/big.tif"]
        assert obj.size == len(data)
        assert obj.md5 is None
        dest = tmp_path / "back.tif"
        s3.get_file("raw_files/DS-1/big.tif", dest)
        assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()

    def test_list_merges_every_page(self, s3, monkeypatch):
        # S3 lists at most 1000 keys per call; shrink the page size so 5 keys take 3 pages.
        real_get_paginator = s3.client.get_paginator
        pages_seen = []

        class SmallPages:
            def __init__(self, name):
                self.paginator = real_get_paginator(name)

            def paginate(self, **kwargs):
                for page in self.paginator.paginate(**kwargs, PaginationConfig={"PageSize": 2}):
                    pages_seen.append(page.get("KeyCount"))
                    yield page

        monkeypatch.setattr(s3.client, "get_paginator", SmallPages)
        for i in range(5):
            s3.put(f"raw_frames/DS-1/im_{i}.png", b"x" * i)
        listed = s3.list("raw_frames/DS-1/")
        assert pages_seen == [2, 2, 1]
        assert {k: v.size for k, v in listed.items()} == {f"raw_frames/DS-1/im_{i}.png": i for i in range(5)}


class TestS3Errors:
    def test_check_on_missing_bucket_names_it(self, moto_endpoint):
        storage = make_storage("s3", "no-such-bucket-here", s3_endpoint_url=moto_endpoint)
        with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist"):
            storage.check()

    def test_put_to_missing_bucket_names_it(self, moto_endpoint):
        storage = make_storage("s3", "no-such-bucket-here", s3_endpoint_url=moto_endpoint)
        with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist"):
            storage.put("a/b", b"x")

    def test_check_on_existing_bucket(self, s3):
        s3.check()

    def test_no_credentials_gives_a_clear_storage_error(self, moto_endpoint, s3_bucket, monkeypatch, tmp_path):
        _no_aws_credentials(monkeypatch, tmp_path)
        storage = make_storage("s3", s3_bucket, s3_endpoint_url=moto_endpoint)
        with pytest.raises(StorageError, match="no AWS credentials found.*AWS_ACCESS_KEY_ID"):
            storage.check()
        with pytest.raises(StorageError, match=f"writing s3://{s3_bucket}/a/b failed: no AWS credentials"):
            storage.put("a/b", b"x")
        with pytest.raises(StorageError, match="no AWS credentials found"):
            storage.get("a/b")

    def test_error_messages_do_not_leak_credentials(self, moto_endpoint):
        storage = make_storage("s3", "no-such-bucket-here", s3_endpoint_url=moto_endpoint)
        with pytest.raises(StorageError) as info:
            storage.get("a/b")
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in str(info.value)


class TestS3Endpoint:
    def test_endpoint_from_environment(self, moto_endpoint, s3_bucket, monkeypatch):
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        storage = make_storage("s3", s3_bucket)
        assert storage.endpoint_url == moto_endpoint
        assert moto_endpoint in storage.describe()
        storage.check()
        storage.put("a/b", b"through the env endpoint")
        assert storage.get("a/b") == b"through the env endpoint"
        explicit = make_storage("s3", s3_bucket, s3_endpoint_url=moto_endpoint)
        assert explicit.get("a/b") == b"through the env endpoint"

    def test_explicit_endpoint_wins_over_environment(self, moto_endpoint, s3_bucket, monkeypatch):
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
        storage = make_storage("s3", s3_bucket, s3_endpoint_url=moto_endpoint)
        storage.put("a/b", b"x")
        assert storage.get("a/b") == b"x"


class TestS3Concurrency:
    def test_concurrent_puts_through_one_client_all_land(self, s3):
        payloads = {f"raw_frames/DS-1/im_c{i:03d}_z000_t000_p000.png": os.urandom(20_000 + i) for i in range(32)}
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(s3.put, key, data) for key, data in payloads.items()]
            for future in futures:
                future.result()

        listed = s3.list("raw_frames/DS-1/")
        assert set(listed) == set(payloads)
        for key, data in payloads.items():
            assert listed[key].size == len(data)
            assert listed[key].md5 == hashlib.md5(data).hexdigest()
        with ThreadPoolExecutor(max_workers=8) as pool:
            fetched = dict(zip(payloads, pool.map(s3.get, payloads), strict=True))
        assert fetched == payloads


class TestS3NeverReplaces:
    def test_multipart_put_file_does_not_replace_an_object(self, s3, tmp_path):
        """Above the multipart threshold boto3's transfer manager writes in parts; the completion is conditional too."""
        s3.put("raw_files/DS-1/big.tif", b"the object already there")
        source = tmp_path / "big.tif"
        source.write_bytes(os.urandom(9 * 1024 * 1024))
        with pytest.raises(ObjectExistsError, match="big.tif' already exists"):
            s3.put_file("raw_files/DS-1/big.tif", source)
        assert s3.get("raw_files/DS-1/big.tif") == b"the object already there"

    def test_every_write_is_sent_with_if_none_match(self, s3, tmp_path):
        sent = []
        s3.client.meta.events.register("before-send.s3.PutObject",
                                       lambda request, **_: sent.append(request.headers.get("If-None-Match")))
        s3.put("raw_frames/DS-1/a.png", b"a")
        s3.put_stream("raw_frames/DS-1/b.png", iter([b"b"]))
        source = tmp_path / "f.tif"
        source.write_bytes(b"small file")
        s3.put_file("raw_files/DS-1/f.tif", source)
        assert sent == [b"*", b"*", b"*"] or sent == ["*", "*", "*"]

    def test_unfinished_multipart_uploads_are_partials(self, s3):
        """A killed large-file upload leaves a multipart upload behind: listed as a partial, aborted on discard."""
        s3.client.create_multipart_upload(Bucket=s3.bucket, Key="raw_files/DS-1/big.tif")
        s3.client.create_multipart_upload(Bucket=s3.bucket, Key="raw_files/DS-2/other.tif")
        assert s3.partials("raw_files/DS-1/") == ["raw_files/DS-1/big.tif"]
        assert s3.list("raw_files/DS-1/") == {}
        assert s3.discard_partials("raw_files/DS-1/") == 1
        assert s3.partials("raw_files/DS-1/") == []
        assert s3.partials("raw_files/DS-2/") == ["raw_files/DS-2/other.tif"]
