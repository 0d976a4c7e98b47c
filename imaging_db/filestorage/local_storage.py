"""A DataStorage in a local folder, e.g. a laptop directory or a mounted lab NAS."""

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from imaging_db.errors import NotFoundError, StorageError
from imaging_db.filestorage.data_storage import DataStorage, StoredObject, check_key

_PARTIAL = ".partial"


class LocalStorage(DataStorage):
    """Objects are files under ``root``; every write goes to a temporary file then is renamed.

    Parameters
    ----------
    root : str or Path
        The folder holding the objects; created on first write if missing.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().absolute()

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

    def _temp_path(self, path: Path) -> Path:
        return path.with_name(f".{path.name}.{uuid.uuid4().hex}{_PARTIAL}")

    @staticmethod
    def _discard(temp: Path) -> None:
        # Cleanup after a failed write: the write's own error is the one to report,
        # e.g. when the parent is not a folder, unlinking the temp fails too.
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)

    def _write_atomically(self, key: str, write) -> None:
        path = self._path(key)
        temp = self._temp_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(temp)
            os.replace(temp, path)
        except OSError as exc:
            self._discard(temp)
            raise StorageError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
        except BaseException:
            self._discard(temp)
            raise

    def put(self, key: str, data: bytes) -> None:
        self._write_atomically(key, lambda temp: temp.write_bytes(data))

    def put_stream(self, key: str, pieces: Iterable[bytes]) -> int:
        size = 0

        def write(temp: Path) -> None:
            nonlocal size
            with open(temp, "wb") as handle:
                for piece in pieces:
                    handle.write(piece)
                    size += len(piece)

        self._write_atomically(key, write)
        return size

    def put_file(self, key: str, path: Path) -> None:
        self._write_atomically(key, lambda temp: shutil.copyfile(path, temp))

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

    def list(self, prefix: str) -> dict[str, StoredObject]:
        folder_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        folder = self._path(folder_key) if folder_key else self.root
        found: dict[str, StoredObject] = {}
        if not folder.is_dir():
            return found
        for dirpath, _dirnames, filenames in os.walk(folder):
            for name in filenames:
                if name.endswith(_PARTIAL):
                    continue
                full = os.path.join(dirpath, name)
                key = Path(full).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found[key] = StoredObject(size=os.stat(full).st_size)
        return found

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {str(path)!r}: {exc.strerror or exc}") from None
