"""Where the embedded defaults live: ``$IMAGING_DB_HOME`` (default ``~/.imaging_db``)."""

import os
from pathlib import Path

DEFAULT_NBR_WORKERS = max(1, os.cpu_count() or 1)


def imaging_db_home() -> Path:
    """Return the folder holding the embedded database and storage."""
    home = os.environ.get("IMAGING_DB_HOME")
    if home:
        return Path(home).expanduser()
    return Path.home() / ".imaging_db"


def default_sqlite_path() -> Path:
    """Return the path of the embedded SQLite database."""
    return imaging_db_home() / "imaging_db.sqlite"


def default_storage_dir() -> Path:
    """Return the root folder of the embedded local storage."""
    return imaging_db_home() / "storage"
