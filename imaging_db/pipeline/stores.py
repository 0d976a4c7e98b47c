"""Open the database and the storage that a command works on, from its login file and storage settings.

Readers (download, verify) import this module: it imports nothing that only uploads need (the upload
config pulls in the image readers), so that their start-up stays short.
"""

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from imaging_db.database.connection import load_login
from imaging_db.database.db_ops import Database
from imaging_db.defaults import DEFAULT_NBR_WORKERS
from imaging_db.errors import InputError, NotFoundError
from imaging_db.filestorage import DataStorage, StorageLocation, make_storage, resolve_location, storage_class

if TYPE_CHECKING:
    from imaging_db.metadata.upload_config import UploadConfig


def worker_count(nbr_workers: int | None) -> int:
    """The worker threads of a run: as asked, else one per CPU.

    Raises
    ------
    InputError
        If fewer than one is asked for.
    """
    workers = nbr_workers or DEFAULT_NBR_WORKERS
    if workers < 1:
        raise InputError(f"nbr_workers must be at least 1, not {workers}")
    return workers


class DatasetStorages:
    """The storage each dataset is read from: where its record says, with the user's settings applied.

    Each location is opened once and reused. Settings given (``--storage``,
    ``--storage_access``, ``--s3_endpoint_url``) override the record, as
    :meth:`StorageLocation.overridden` says; a dataset recorded without a
    location is read from those settings, else the embedded local storage.

    Parameters
    ----------
    storage, storage_access, s3_endpoint_url : str, optional
        The user's settings (None: not given).
    max_connections : int
        Worker threads that may make requests at once (sizes S3 connection pools).
    """

    def __init__(self, storage: str | None = None, storage_access: str | None = None,
                 s3_endpoint_url: str | None = None, max_connections: int = 10):
        self.settings = {"storage": storage, "storage_access": storage_access, "s3_endpoint_url": s3_endpoint_url}
        self.max_connections = max_connections
        self._opened: dict[StorageLocation, DataStorage] = {}
        self._lock = threading.Lock()
        self._fixed: DataStorage | None = None

    @classmethod
    def fixed(cls, storage: DataStorage) -> "DatasetStorages":
        """Read every dataset from ``storage``, whatever its record says."""
        storages = cls()
        storages._fixed = storage
        return storages

    def given(self) -> bool:
        """Whether the user named a storage or its folder or bucket."""
        return self.settings["storage"] is not None or self.settings["storage_access"] is not None

    def location(self, recorded: StorageLocation | None) -> StorageLocation:
        """Where a dataset recorded at ``recorded`` is read."""
        return resolve_location(recorded, **self.settings)

    def open(self, location: StorageLocation) -> DataStorage:
        """The storage at ``location`` (a value :meth:`location` returned), opened on first use."""
        if self._fixed is not None:
            return self._fixed
        with self._lock:
            if location not in self._opened:
                self._opened[location] = location.open(max_connections=self.max_connections)
            return self._opened[location]

    def for_dataset(self, recorded: StorageLocation | None) -> DataStorage:
        """The storage of a dataset whose record says ``recorded``.

        Raises
        ------
        InputError
            If the location or the settings name no usable storage (e.g. S3 without a bucket).
        """
        return self.open(self.location(recorded))


def open_for_reading(login: str | Path | None, storage: str | None, storage_access: str | None,
                     s3_endpoint_url: str | None, nbr_workers: int | None,
                     missing: str, doing: str) -> tuple[Database, DatasetStorages, int]:
    """The database, storages and worker count of a command that reads datasets (download, verify).

    The database is opened without creating it: a missing SQLite file is a
    NotFoundError whose message starts with ``missing``. ``doing`` names what
    the command does, in the error if the database cannot be reached. Storages
    are opened per dataset, from its record and the given settings.

    Raises
    ------
    InputError
        On a bad login, storage or worker count.
    NotFoundError
        If the SQLite database file does not exist.
    DatabaseError
        If the database is at another schema revision than this code's.
    """
    workers = worker_count(nbr_workers)
    url = load_login(login)
    storages = DatasetStorages(storage, storage_access, s3_endpoint_url, max_connections=2 * workers)
    if storage is not None:
        storage_class(storage)  # an unknown backend is an error before the database is opened
    try:
        database = Database(url, create=False)
    except NotFoundError as exc:
        raise NotFoundError(f"{missing}: {exc}") from None
    try:
        database.check_schema(doing)
    except BaseException:
        database.dispose()
        raise
    return database, storages, workers


def open_for_upload(login: str | Path | None, config: "UploadConfig") -> tuple[Database, DataStorage, int]:
    """The database, storage and worker count of an upload run (``config`` with its overrides applied).

    The embedded SQLite database is created if it does not exist yet.

    Raises
    ------
    InputError
        On a bad login, storage or worker count.
    """
    workers = worker_count(config.nbr_workers)
    url = load_login(login)
    data_storage = make_storage(config.storage, config.storage_access, s3_endpoint_url=config.s3_endpoint_url,
                                max_connections=2 * workers)
    return Database(url), data_storage, workers
