"""A DataStorage in an S3 bucket (AWS or any S3-compatible store): :class:`S3DataStorage`.

``S3Storage`` from this module is the original imagingDB's notebook class
(:class:`imaging_db.compat.storage.S3Storage`), loaded when first asked for.
"""

import logging
import os
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from imaging_db.errors import InputError, NotFoundError, ObjectExistsError, StorageError
from imaging_db.faults import fault_point
from imaging_db.filestorage.data_storage import DataStorage, StoredObject, check_key

logger = logging.getLogger(__name__)

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
# A conditional write (If-None-Match: *) found an object under the key; 409 when another
# conditional write to the same key was in progress at the same moment.
_EXISTS_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


def _only_if_new(params: dict, **_kwargs) -> None:
    """botocore hook: every object this client writes is new, so no write may replace one.

    Also reaches the multipart uploads that boto3's transfer manager makes for
    large files, which do not take ``IfNoneMatch`` among their arguments.
    """
    params.setdefault("IfNoneMatch", "*")


class S3DataStorage(DataStorage):
    """Objects live in one bucket; one client, with a pool sized for the workers, is reused.

    Credentials come from boto3's default chain (environment, profile, instance role).

    Parameters
    ----------
    bucket : str
        The bucket name.
    endpoint_url : str, optional
        The S3 endpoint; default ``$AWS_ENDPOINT_URL``, else AWS.
    max_connections : int
        The callers' own worker threads that may also make requests.
    parallel_requests : int
        Requests worth keeping in flight: S3 latency, not CPU, limits one request.
    """

    def __init__(self, bucket: str, endpoint_url: str | None = None, max_connections: int = 10,
                 parallel_requests: int = 16):
        self.bucket = bucket
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.parallel_requests = max(1, parallel_requests)
        config = botocore.config.Config(
            # One pooled connection for every thread that may make a request, so none waits for a socket.
            max_pool_connections=max(10, max_connections + self.parallel_requests),
            retries={"max_attempts": 5, "mode": "standard"},
            tcp_keepalive=True,
        )
        session = boto3.session.Session()
        self.client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
        for operation in ("PutObject", "CompleteMultipartUpload"):
            self.client.meta.events.register(f"before-parameter-build.s3.{operation}", _only_if_new)
        self._transfer = TransferConfig(max_concurrency=max(4, max_connections), use_threads=True)

    @classmethod
    def from_settings(cls, access: str | None, *, s3_endpoint_url: str | None = None,
                      max_connections: int = 10) -> "S3DataStorage":
        """The bucket ``access`` (required) at ``s3_endpoint_url``, with a pool for ``max_connections`` callers."""
        if not access:
            raise InputError("storage s3 needs a bucket name: pass --storage_access (or storage_access in the upload config)")
        return cls(access, endpoint_url=s3_endpoint_url, max_connections=max_connections)

    def settings(self) -> tuple[str | None, str | None]:
        return self.bucket, self.endpoint_url

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}{where}"

    def _error(self, doing: str, key: str | None, exc: Exception) -> Exception:
        target = f"s3://{self.bucket}/{key}" if key else self.describe()
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if key and doing == "writing" and code in _EXISTS_CODES:
                return ObjectExistsError(f"object {key!r} already exists in {self.describe()}; not replaced")
            if key and code in _NOT_FOUND_CODES:
                return NotFoundError(f"object {key!r} is missing from {self.describe()}")
            if code in ("NoSuchBucket",) or (not key and code in _NOT_FOUND_CODES):
                return StorageError(f"bucket {self.bucket!r} does not exist at {self.describe()}")
            return StorageError(f"{doing} {target} failed: {code} {error.get('Message', '')}".rstrip())
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StorageError(
                f"{doing} {target} failed: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            )
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return StorageError(f"{doing} {target} failed: {exc}")
        return exc

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error("reaching bucket", None, exc) from None

    def put(self, key: str, data: bytes) -> None:
        try:
            fault_point("storage.s3_put")
            self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data)
            fault_point("storage.s3_stored")
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error("writing", key, exc) from None

    def put_file(self, key: str, path: Path) -> None:
        try:
            fault_point("storage.s3_put")
            self.client.upload_file(str(path), self.bucket, check_key(key), Config=self._transfer)
        except boto3.exceptions.S3UploadFailedError as exc:
            if any(code in str(exc) for code in _EXISTS_CODES):
                raise ObjectExistsError(f"object {key!r} already exists in {self.describe()}; not replaced") from None
            raise StorageError(f"writing s3://{self.bucket}/{key} failed: {exc}") from None
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error("writing", key, exc) from None

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=check_key(key))
            return response["Body"].read()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error("reading", key, exc) from None

    def get_file(self, key: str, path: Path) -> None:
        try:
            self.client.download_file(self.bucket, check_key(key), str(path), Config=self._transfer)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error("reading", key, exc) from None
        except OSError as exc:
            raise StorageError(f"cannot write s3://{self.bucket}/{key} into {str(path)!r}: {exc.strerror or exc}") from None

    def list(self, prefix: str) -> dict[str, StoredObject]:
        found: dict[str, StoredObject] = {}
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    etag = item.get("ETag", "").strip('"')
                    # A multipart ETag ("<hex>-<parts>") is not an MD5 of the content.
                    md5 = etag if len(etag) == 32 and "-" not in etag else None
                    found[item["Key"]] = StoredObject(size=item["Size"], md5=md5)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error("listing", prefix, exc) from None
        return found

    def _multipart_uploads(self, prefix: str) -> "list[tuple[str, str]]":
        found = []
        try:
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                found += [(item["Key"], item["UploadId"]) for item in page.get("Uploads", [])]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error("listing unfinished uploads under", prefix, exc) from None
        return found

    def partials(self, prefix: str) -> "list[str]":
        return sorted(key for key, _upload in self._multipart_uploads(prefix))

    def discard_partials(self, prefix: str) -> int:
        removed = 0
        for key, upload_id in self._multipart_uploads(prefix):
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                removed += 1
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) != "NoSuchUpload":
                    raise self._error("aborting the unfinished upload of", key, exc) from None
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error("aborting the unfinished upload of", key, exc) from None
        return removed

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=check_key(key))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error("deleting", key, exc) from None


def __getattr__(name: str):
    # S3Storage is the original imagingDB's class of this name (storage_dir, nbr_workers, access_point), which its
    # notebooks import from here: the compatibility layer's, imported on first use, so that importing the
    # backend (S3DataStorage) loads neither that layer nor pandas.
    if name == "S3Storage":
        from imaging_db.compat.storage import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
