"""Open the database and the storage that a command works on, from its login file and storage settings.

Readers (download, verify) import this module: it imports nothing that only uploads need (the upload
config pulls in the image readers), so that their start-up stays short.
"""

from pathlib import Path
from typing import TYPE_CHECKING

from imaging_db.database.connection import load_login
from imaging_db.database.db_ops import Database
from imaging_db.defaults import DEFAULT_NBR_WORKERS
from imaging_db.errors import InputError, NotFoundError
from imaging_db.filestorage import DataStorage, make_storage

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


def open_for_reading(login: str | Path | None, storage: str, storage_access: str | None,
                     s3_endpoint_url: str | None, nbr_workers: int | None,
                     missing: str, doing: str) -> tuple[Database, DataStorage, int]:
    """The database, storage and worker count of a command that reads datasets (download, verify).

    The database is opened without creating it: a missing SQLite file is a
    NotFoundError whose message starts with ``missing``. ``doing`` names what
    the command does, in the error if the database cannot be reached.

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
    data_storage = make_storage(storage, storage_access, s3_endpoint_url=s3_endpoint_url,
                                max_connections=2 * workers)
    try:
        database = Database(url, create=False)
    except NotFoundError as exc:
        raise NotFoundError(f"{missing}: {exc}") from None
    try:
        database.check_schema(doing)
    except BaseException:
        database.dispose()
        raise
    return database, data_storage, workers


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
