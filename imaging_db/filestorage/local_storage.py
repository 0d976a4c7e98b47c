"""A DataStorage in a local folder, e.g. a laptop directory or a mounted lab NAS: :class:`LocalDataStorage`.

``LocalStorage`` from this module is the original imagingDB's notebook class
(:class:`imaging_db.compat.storage.LocalStorage`), loaded when first asked for.
"""

import contextlib
import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from imaging_db.defaults import default_storage_dir
from imaging_db.errors import NotFoundError, ObjectExistsError, StorageError
from imaging_db.faults import fault_point as _fault_point
from imaging_db.filestorage.data_storage import DataStorage, StoredObject, check_key

_PARTIAL = ".partial"
# The temporary files of unfinished writes: ".<16 hex>.partial", and ".<name>.<32 hex>.partial" as
# versions before 2026-11-28 named them. Only these are partials: "scan.partial" is an object like any other.
_PARTIAL_NAME = re.compile(r"\.(?:[0-9a-f]{16}|.+\.[0-9a-f]{32})\.partial")
# os.link's errors on file systems without hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}


class LocalDataStorage(DataStorage):
    """Objects are files under ``root``; every write goes to a temporary file then is renamed.

    Parameters
    ----------
    root : str or Path
        The folder holding the objects; created on first write if missing.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().absolute()

    @classmethod
    def from_settings(cls, access: str | None, *, s3_endpoint_url: str | None = None,
                      max_connections: int = 10) -> "LocalDataStorage":
        """The folder ``access``, else ``$IMAGING_DB_HOME/storage``; the other settings do not apply."""
        return cls(access or default_storage_dir())

    def settings(self) -> tuple[str | None, str | None]:
        return str(self.root), None

    def describe(self) -> str:
        return f"local:{self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create storage folder {str(self.root)!r}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"storage folder {str(self.root)!r} is not writable")

    @staticmethod
    def _temp_path(path: Path) -> Path:
        # Short whatever the object's name, so that a name near the file system's limit still fits.
        return path.with_name(f".{secrets.token_hex(8)}{_PARTIAL}")

    @staticmethod
    def _discard(temp: Path) -> None:
        # Cleanup after a failed write: the write's own error is the one to report,
        # e.g. when the parent is not a folder, unlinking the temp fails too.
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)

    def _write_new(self, key: str, write) -> None:
        """Write the object into a temporary file with ``write(temp)``, then put it in place if ``key`` is free.

        A hard link is how a file is put in place without ever replacing one:
        it fails if the name is taken, atomically, on every local or NFS file
        system. Where hard links are not supported (some SMB/FAT mounts), the
        name is first taken with an exclusive create, then the temporary file
        renamed over that empty placeholder.
        """
        path = self._path(key)
        temp = self._temp_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(temp)
            _fault_point("storage.before_link")
            self._link_new(temp, path)
        except FileExistsError as exc:
            self._discard(temp)
            if exc.filename2 is not None or exc.filename == str(path):  # the name was taken, not its folder
                raise ObjectExistsError(f"object {key!r} already exists in {self.describe()}; not replaced") from None
            raise StorageError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
        except OSError as exc:
            self._discard(temp)
            raise StorageError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
        except BaseException:
            self._discard(temp)
            raise
        self._discard(temp)

    @staticmethod
    def _link_new(temp: Path, path: Path) -> None:
        """Give the written ``temp`` the name ``path`` if nothing has it; FileExistsError if something has."""
        try:
            os.link(temp, path)
            return
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.replace(temp, path)

    def put(self, key: str, data: bytes) -> None:
        self._write_new(key, lambda temp: temp.write_bytes(data))

    def put_stream(self, key: str, pieces: Iterable[bytes]) -> int:
        size = 0

        def write(temp: Path) -> None:
            nonlocal size
            with open(temp, "wb") as handle:
                for piece in pieces:
                    handle.write(piece)
                    _fault_point("storage.piece_written")
                    size += len(piece)

        self._write_new(key, write)
        return size

    def put_file(self, key: str, path: Path) -> None:
        self._write_new(key, lambda temp: shutil.copyfile(path, temp))

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"object {key!r} is missing from {self.describe()}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None

    def get_file(self, key: str, path: Path) -> None:
        source = self._path(key)
        try:
            shutil.copyfile(source, path)
        except OSError as exc:
            if not source.exists():
                raise NotFoundError(f"object {key!r} is missing from {self.describe()}") from None
            raise StorageError(f"cannot copy {str(source)!r} to {str(path)!r}: {exc.strerror or exc}") from None

    def _walk(self, prefix: str) -> Iterator[tuple[str, str, bool]]:
        """Yield (key, full path, is a partial) for every file whose key starts with ``prefix``."""
        folder_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        folder = self._path(folder_key) if folder_key else self.root
        if not folder.is_dir():
            return
        for dirpath, _dirnames, filenames in os.walk(folder):
            for name in filenames:
                full = os.path.join(dirpath, name)
                key = Path(full).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key, full, _PARTIAL_NAME.fullmatch(name) is not None

    def list(self, prefix: str) -> dict[str, StoredObject]:
        found: dict[str, StoredObject] = {}
        for key, full, partial in self._walk(prefix):
            if not partial:
                with contextlib.suppress(FileNotFoundError):  # removed meanwhile: not there
                    found[key] = StoredObject(size=os.stat(full).st_size)
        return found

    def partials(self, prefix: str) -> "list[str]":
        return sorted(key for key, _full, partial in self._walk(prefix) if partial)

    def discard_partials(self, prefix: str) -> int:
        removed = 0
        for key, full, partial in list(self._walk(prefix)):
            if partial:
                try:
                    os.unlink(full)
                    removed += 1
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StorageError(f"cannot remove leftover {str(full)!r}: {exc.strerror or exc}") from None
        return removed

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {str(path)!r}: {exc.strerror or exc}") from None


def __getattr__(name: str):
    # LocalStorage is the original imagingDB's class of this name (storage_dir, nbr_workers, access_point), which its
    # notebooks import from here: the compatibility layer's, imported on first use, so that importing the
    # backend (LocalDataStorage) loads neither that layer nor pandas.
    if name == "LocalStorage":
        from imaging_db.compat.storage import LocalStorage

        return LocalStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
