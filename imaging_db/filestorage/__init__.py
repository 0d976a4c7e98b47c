"""Storage backends that move bytes by key: a local folder or an S3 bucket."""

from imaging_db.filestorage.data_storage import DataStorage, StoredObject


def make_storage(kind: str, access: str | None = None, *, s3_endpoint_url: str | None = None,
                 max_connections: int = 10) -> DataStorage:
    """Create the storage backend named by ``kind``.

    Parameters
    ----------
    kind : {"local", "s3"}
        The backend.
    access : str, optional
        The root folder (local; default ``$IMAGING_DB_HOME/storage``) or the
        bucket name (s3; required).
    s3_endpoint_url : str, optional
        S3 endpoint; default ``$AWS_ENDPOINT_URL`` or AWS itself.
    max_connections : int
        Size of the S3 connection pool.

    Raises
    ------
    InputError
        On an unknown kind or a missing bucket name.
    """
    from imaging_db.errors import InputError

    if kind == "local":
        from imaging_db.defaults import default_storage_dir
        from imaging_db.filestorage.local_storage import LocalStorage

        return LocalStorage(access or default_storage_dir())
    if kind == "s3":
        if not access:
            raise InputError("storage s3 needs a bucket name: pass --storage_access (or storage_access in the upload config)")
        from imaging_db.filestorage.s3_storage import S3Storage

        return S3Storage(access, endpoint_url=s3_endpoint_url, max_connections=max_connections)
    raise InputError(f"unknown storage {kind!r}; use 'local' or 's3'")


__all__ = ["DataStorage", "StoredObject", "make_storage"]
