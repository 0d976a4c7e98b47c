"""Writers that store many new objects for one caller: inline, or queued on I/O threads.

A storage hands one out with :meth:`DataStorage.writer`; which kind depends
on its ``parallel_requests``, so callers store objects the same way whatever
the backend.
"""

import collections
import concurrent.futures
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # data_storage imports this module to hand writers out
    from imaging_db.filestorage.data_storage import DataStorage

# Bytes of objects waiting for a queued put, whatever their size: memory stays bounded.
QUEUED_PUT_BYTES = 48 * 2**20


class ObjectWriter:
    """Stores each object inline, in the calling thread.

    For a storage where a put costs CPU rather than waiting (a local folder),
    the callers' own worker threads are the concurrency. Safe to use from
    several threads at once.

    Parameters
    ----------
    storage : DataStorage
        Where the objects go.

    Attributes
    ----------
    written : list of str
        Keys stored by this writer, each appended once its put succeeded.
    """

    def __init__(self, storage: "DataStorage"):
        self.storage = storage
        self.written: list[str] = []

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` as a new object under ``key`` (see :meth:`DataStorage.put`)."""
        self.storage.put(key, data)
        self.written.append(key)

    def put_stream(self, key: str, pieces: Iterable[bytes]) -> int:
        """Store the new object made of ``pieces``; return its size.

        The storage writes the pieces as they come: a local file never holds
        the whole object in memory.
        """
        size = self.storage.put_stream(key, pieces)
        self.written.append(key)
        return size

    def raise_failures(self) -> None:
        """Raise the error of the first finished put that failed, if any (inline puts raise at once)."""

    def finish(self) -> None:
        """Wait for every put; raise the first error (inline puts are done when they return)."""

    def close(self) -> None:
        """Drop puts not started and wait for the running ones (inline: none)."""

    def __enter__(self) -> "ObjectWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class QueuedObjectWriter(ObjectWriter):
    """Stores objects on a pool of I/O threads, so that many requests stay in flight.

    For a storage whose put mostly waits on the network (S3): the callers go
    on with their work while ``threads`` puts run. Objects waiting for a put
    are bounded by count (twice the threads) and by bytes
    (``max_queued_bytes``; one object larger than that is still queued, alone),
    so memory stays bounded whatever the object size.

    Parameters
    ----------
    storage : DataStorage
        Where the objects go.
    threads : int
        Puts run at once.
    max_queued_bytes : int, optional
        Bytes of objects queued or being put, at most; default QUEUED_PUT_BYTES.
    """

    def __init__(self, storage: "DataStorage", threads: int, max_queued_bytes: int | None = None):
        super().__init__(storage)
        threads = max(1, int(threads))
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="imaging_db-put")
        self.max_queued = 2 * threads
        # Read when the writer is made, so that a test may shrink the module's budget.
        self.max_queued_bytes = QUEUED_PUT_BYTES if max_queued_bytes is None else max_queued_bytes
        self.queued = 0
        self.queued_bytes = 0
        self.room = threading.Condition()
        self.pending: collections.deque = collections.deque()
        self.lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        """Queue ``data`` for a put under ``key``, first waiting for room in the queue.

        Its error, if any, comes from :meth:`raise_failures` or :meth:`finish`.
        """
        with self.room:
            while self.queued and (self.queued >= self.max_queued
                                   or self.queued_bytes + len(data) > self.max_queued_bytes):
                self.room.wait()
            self.queued += 1
            self.queued_bytes += len(data)
        try:
            future = self.pool.submit(self._put_queued, key, data)
        except BaseException:
            self._release(len(data))
            raise
        with self.lock:
            self.pending.append(future)

    def put_stream(self, key: str, pieces: Iterable[bytes]) -> int:
        """Join ``pieces`` and queue them as :meth:`put` does; return the object's size."""
        data = b"".join(pieces)
        self.put(key, data)
        return len(data)

    def _release(self, size: int) -> None:
        with self.room:
            self.queued -= 1
            self.queued_bytes -= size
            self.room.notify_all()

    def _put_queued(self, key: str, data: bytes) -> None:
        try:
            self.storage.put(key, data)
            self.written.append(key)
        finally:
            self._release(len(data))

    def raise_failures(self) -> None:
        with self.lock:
            done = []
            while self.pending and self.pending[0].done():
                done.append(self.pending.popleft())
        for future in done:
            future.result()

    def finish(self) -> None:
        while True:
            with self.lock:
                if not self.pending:
                    return
                future = self.pending.popleft()
            future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self.room:
            # Nothing runs any more: the puts still counted were cancelled. A caller waiting
            # for room wakes up and is refused by the closed pool, instead of waiting forever.
            self.queued = 0
            self.queued_bytes = 0
            self.room.notify_all()
