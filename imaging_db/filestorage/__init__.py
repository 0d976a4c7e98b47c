"""Storage backends that move bytes by key: a local folder or an S3 bucket.

Every backend is one line of :data:`STORAGES`; the names users may choose
(command-line ``--storage``, the upload config's ``storage``) and the error
naming them come from it.
"""

import importlib
from dataclasses import dataclass

from imaging_db.errors import InputError
from imaging_db.filestorage.data_storage import DataStorage, StoredObject
from imaging_db.filestorage.object_writer import ObjectWriter

# Name -> the DataStorage subclass, or "module:Class" to import it when the name is
# first used: choosing the local folder never imports an S3 client (boto3 takes
# longer to import than the rest of the package).
STORAGES: dict[str, type[DataStorage] | str] = {
    "local": "imaging_db.filestorage.local_storage:LocalDataStorage",
    "s3": "imaging_db.filestorage.s3_storage:S3DataStorage",
}


def storage_names() -> list[str]:
    """Return the names of the storage backends, in the order of :data:`STORAGES`."""
    return list(STORAGES)


def _one_of(names: list[str]) -> str:
    """``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    quoted = [repr(name) for name in names]
    if len(quoted) < 2:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def storage_class(kind: str) -> type[DataStorage]:
    """Return the DataStorage subclass registered as ``kind``, importing its module if needed.

    Raises
    ------
    InputError
        If no storage is registered as ``kind``.
    """
    try:
        entry = STORAGES[kind]
    except KeyError:
        raise InputError(f"unknown storage {kind!r}; use {_one_of(storage_names())}") from None
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        entry = getattr(importlib.import_module(module), name)
    return entry


def make_storage(kind: str, access: str | None = None, *, s3_endpoint_url: str | None = None,
                 max_connections: int = 10) -> DataStorage:
    """Create the storage backend named by ``kind``.

    Parameters
    ----------
    kind : str
        The backend, one of :func:`storage_names` ("local", "s3").
    access : str, optional
        The root folder (local; default ``$IMAGING_DB_HOME/storage``) or the
        bucket name (s3; required).
    s3_endpoint_url : str, optional
        S3 endpoint; default ``$AWS_ENDPOINT_URL`` or AWS itself.
    max_connections : int
        The callers' worker threads that may make requests at once (sizes the S3 connection pool).

    Raises
    ------
    InputError
        On an unknown kind or a missing bucket name.
    """
    storage = storage_class(kind).from_settings(access, s3_endpoint_url=s3_endpoint_url,
                                                max_connections=max_connections)
    storage.kind = kind
    return storage


@dataclass(frozen=True)
class StorageLocation:
    """Where a dataset's objects live: a backend name, its folder or bucket, and its S3 endpoint.

    Recorded with every dataset at upload; small and picklable, so that a
    process (a dask worker) can open the storage again by itself.

    Attributes
    ----------
    kind : str
        The backend, a name in :data:`STORAGES`.
    access : str or None
        The folder or bucket (None: the backend's default).
    s3_endpoint_url : str or None
        The S3 endpoint (None: ``$AWS_ENDPOINT_URL``, else AWS).
    """

    kind: str
    access: str | None = None
    s3_endpoint_url: str | None = None

    @classmethod
    def of(cls, storage: DataStorage) -> "StorageLocation | None":
        """The location of an open storage; None if it was not made by :func:`make_storage` (no registered name)."""
        if storage.kind is None:
            return None
        return cls(storage.kind, *storage.settings())

    def overridden(self, storage: str | None = None, storage_access: str | None = None,
                   s3_endpoint_url: str | None = None) -> "StorageLocation":
        """This location with the settings a user gave (``--storage``, ``--storage_access``, ``--s3_endpoint_url``).

        Each setting given wins. Naming another backend than this one's drops
        this folder or bucket and endpoint, which belong to this backend.
        """
        base = self if storage in (None, self.kind) else StorageLocation(storage)
        return StorageLocation(base.kind, storage_access or base.access, s3_endpoint_url or base.s3_endpoint_url)

    def open(self, max_connections: int = 10) -> DataStorage:
        """Create the storage backend of this location (see :func:`make_storage`)."""
        return make_storage(self.kind, self.access, s3_endpoint_url=self.s3_endpoint_url,
                            max_connections=max_connections)


def resolve_location(recorded: StorageLocation | None, storage: str | None = None,
                     storage_access: str | None = None, s3_endpoint_url: str | None = None) -> StorageLocation:
    """Where to read a dataset: its recorded location with the user's settings applied.

    A dataset recorded without a location (uploaded before locations were
    recorded) is read from the settings given, else the embedded local storage.
    """
    return (recorded or StorageLocation(storage or "local")).overridden(storage, storage_access, s3_endpoint_url)


__all__ = ["DataStorage", "ObjectWriter", "STORAGES", "StorageLocation", "StoredObject", "make_storage",
           "resolve_location", "storage_class", "storage_names"]
