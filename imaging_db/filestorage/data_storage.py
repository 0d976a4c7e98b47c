"""The DataStorage interface: put, get, list and delete objects by key."""

import abc
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from imaging_db.errors import InputError
from imaging_db.filestorage.object_writer import ObjectWriter, QueuedObjectWriter


@dataclass(frozen=True)
class StoredObject:
    """What a listing tells about an object without reading it.

    Attributes
    ----------
    size : int
        Size in bytes.
    md5 : str or None
        Hex MD5 of the content when the backend knows it for free (an S3 ETag
        of a single-part upload), else None.
    """

    size: int
    md5: str | None = None


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative ``/``-separated key.

    Raises
    ------
    InputError
        If the key is empty, absolute, not UTF-8, holds a backslash or NUL, or climbs out with ``..``.
    """
    if not key or key.startswith("/") or "\\" in key or "\0" in key:
        raise InputError(f"invalid storage key {key!r}")
    try:
        key.encode("utf-8")  # S3 keys are UTF-8; a name that is not (surrogate escapes) has no key
    except UnicodeEncodeError:
        raise InputError(f"invalid storage key {key!r}: not valid UTF-8") from None
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts) or posixpath.normpath(key) != key:
        raise InputError(f"invalid storage key {key!r}")
    return key


class DataStorage(abc.ABC):
    """Moves bytes by key. Backends differ only inside their own module.

    Attributes
    ----------
    parallel_requests : int
        How many requests are worth keeping in flight at once. 1 means a
        request costs CPU rather than waiting (a local folder): callers then
        store and fetch from their own worker threads. A remote store says
        more, and callers keep that many requests running on I/O threads
        (:meth:`writer` does so for puts).

    A new backend is one module with a subclass, and one line in
    ``imaging_db.filestorage.STORAGES``.
    """

    parallel_requests: int = 1
    # The name the backend is registered under in STORAGES; set by make_storage.
    kind: str | None = None

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, access: str | None, *, s3_endpoint_url: str | None = None,
                      max_connections: int = 10) -> "DataStorage":
        """Build the storage from the settings a user gives (command line or upload config).

        This is how :func:`imaging_db.filestorage.make_storage` creates every backend.

        Parameters
        ----------
        access : str, optional
            Where the objects live: a folder, a bucket name; each backend says
            whether it is required and what it defaults to.
        s3_endpoint_url : str, optional
            S3 endpoint, for the backends that speak S3.
        max_connections : int
            The callers' own worker threads that may make requests at once.

        Raises
        ------
        InputError
            If a setting the backend needs is missing.
        """
        raise NotImplementedError(f"{cls.__name__} does not say how to build itself from settings")

    def settings(self) -> tuple[str | None, str | None]:
        """Return ``(access, s3_endpoint_url)``: what :meth:`from_settings` needs to open these objects again.

        Recorded with each dataset uploaded, so readers find it without flags.
        A backend that keeps nothing outside the process returns ``(None, None)``.
        """
        return None, None

    @abc.abstractmethod
    def describe(self) -> str:
        """Return where the objects live, e.g. ``local:/data/store`` or ``s3://bucket``."""

    @abc.abstractmethod
    def check(self) -> None:
        """Make sure the storage can be written, before any upload starts.

        Raises
        ------
        StorageError
            If the folder or bucket is missing, unreachable or not writable.
        """

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` as a new object under ``key``; readers never see a partial object.

        An object already under ``key`` is never replaced, whoever stored it
        and however the writes interleave: to store other content there, a
        caller must :meth:`delete` it first (as a resumed upload does under
        its claim on the dataset id).

        Raises
        ------
        ObjectExistsError
            If ``key`` already holds an object (it is left as it was).
        StorageError
            If the object cannot be stored.
        """

    def put_stream(self, key: str, pieces: Iterable[bytes]) -> int:
        """Store the new object made of ``pieces`` joined; return its size.

        Storages that can write pieces as they come (local files) hold no
        whole object; the default joins them and calls ``put``. If the
        iterator raises, nothing is stored under ``key``. Never replaces an
        object, as :meth:`put`.
        """
        data = b"".join(pieces)
        self.put(key, data)
        return len(data)

    @abc.abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the content of the file at ``path`` as a new object under ``key``, streaming it.

        Never replaces an object, as :meth:`put`.
        """

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the object's bytes.

        Raises
        ------
        NotFoundError
            If there is no object under ``key``.
        StorageError
            If it cannot be read.
        """

    @abc.abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Write the object into the file at ``path``, streaming it."""

    @abc.abstractmethod
    def list(self, prefix: str) -> dict[str, StoredObject]:
        """Return every object whose key starts with ``prefix``, in one listing.

        Unfinished writes (see :meth:`partials`) are not objects and are not listed.
        """

    @abc.abstractmethod
    def partials(self, prefix: str) -> "list[str]":
        """Return the unfinished writes under ``prefix`` that a killed process may have left.

        Each is named by the key it was being written to when the backend
        knows it (S3 multipart uploads), else by its own temporary key (local
        ``.partial`` files). They are never objects; only
        :meth:`discard_partials` removes them.
        """

    @abc.abstractmethod
    def discard_partials(self, prefix: str) -> int:
        """Remove the unfinished writes under ``prefix``; return how many were removed.

        Only call it for a prefix that no running writer uses (under the
        dataset's claim): a write in progress there would fail.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object under ``key``; a missing object is not an error."""

    def writer(self) -> ObjectWriter:
        """Return a writer that stores many new objects, with the concurrency this storage wants.

        With ``parallel_requests`` above 1, puts run on that many I/O threads,
        their queue bounded by count and bytes; else each put runs inline in
        the caller's thread. Use it as a context manager, and call
        ``finish()`` before relying on the objects.
        """
        if self.parallel_requests > 1:
            return QueuedObjectWriter(self, self.parallel_requests)
        return ObjectWriter(self)
