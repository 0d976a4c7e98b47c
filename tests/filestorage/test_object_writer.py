"""The writers DataStorage.writer() hands out, on an in-memory storage that can be slowed, gated or made to fail.

What every real backend's writer does is in the conformance suite (test_data_storage.py).
"""

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from imaging_db.errors import NotFoundError, StorageError
from imaging_db.filestorage import DataStorage, StoredObject, object_writer
from imaging_db.filestorage.object_writer import QUEUED_PUT_BYTES, ObjectWriter, QueuedObjectWriter

WAIT = 10  # seconds before a test that waits for a thread gives up


class MemoryStorage(DataStorage):
    """Objects in a dict; each put first waits for ``gate`` and fails for the keys in ``failing``."""

    def __init__(self, parallel_requests: int = 1):
        self.parallel_requests = parallel_requests
        self.objects: dict[str, bytes] = {}
        self.failing: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.started: list[str] = []
        self.on_put = None  # called with the key as each put starts
        self.lock = threading.Lock()

    @classmethod
    def from_settings(cls, access, *, s3_endpoint_url=None, max_connections=10):
        return cls()

    def describe(self) -> str:
        return "memory:"

    def check(self) -> None:
        pass

    def put(self, key: str, data: bytes) -> None:
        with self.lock:
            self.started.append(key)
        if self.on_put is not None:
            self.on_put(key)
        if not self.gate.wait(WAIT):
            raise TimeoutError("the test never opened the gate")
        if key in self.failing:
            raise StorageError(f"writing {key} failed: disk on fire")
        with self.lock:
            self.objects[key] = bytes(data)

    def put_file(self, key, path) -> None:
        self.put(key, path.read_bytes())

    def get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise NotFoundError(key) from None

    def get_file(self, key, path) -> None:
        path.write_bytes(self.get(key))

    def list(self, prefix: str) -> dict[str, StoredObject]:
        return {k: StoredObject(len(v)) for k, v in self.objects.items() if k.startswith(prefix)}

    def partials(self, prefix: str) -> "list[str]":
        return []

    def discard_partials(self, prefix: str) -> int:
        return 0

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


def _payload(size: int, seed: int) -> bytes:
    return hashlib.shake_256(f"object-{seed}".encode()).digest(size)


def _wait_until(condition) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


@pytest.fixture(params=[1, 4], ids=["inline", "queued"])
def memory(request) -> MemoryStorage:
    """A storage whose writer stores inline (parallel_requests 1), then one whose writer queues (4)."""
    return MemoryStorage(parallel_requests=request.param)


def test_the_storage_chooses_the_writer_by_its_parallel_requests():
    assert type(MemoryStorage(parallel_requests=1).writer()) is ObjectWriter
    with MemoryStorage(parallel_requests=5).writer() as writer:
        assert type(writer) is QueuedObjectWriter
        assert writer.pool._max_workers == 5 and writer.max_queued == 10
        assert writer.max_queued_bytes == QUEUED_PUT_BYTES == 48 * 2**20


def test_the_byte_budget_is_read_when_the_writer_is_made(monkeypatch):
    """So a test of a pipeline can shrink it for every writer a storage hands out."""
    monkeypatch.setattr(object_writer, "QUEUED_PUT_BYTES", 1)
    with MemoryStorage(parallel_requests=2).writer() as writer:
        assert writer.max_queued_bytes == 1


def test_every_object_is_stored_bit_exact_from_many_threads(memory):
    objects = {f"raw_frames/DS/im_{i:03d}.png": _payload(1000 + i, i) for i in range(60)}

    with memory.writer() as writer:
        def store(key):
            data = objects[key]
            if int(key[-7:-4]) % 2:
                assert writer.put_stream(key, iter([data[:10], b"", data[10:]])) == len(data)
            else:
                writer.put(key, data)

        with ThreadPoolExecutor(6) as workers:
            list(workers.map(store, objects))
        writer.finish()
        assert memory.objects == objects
        assert sorted(writer.written) == sorted(objects)


def test_a_failed_put_is_raised_and_not_recorded(memory):
    memory.failing.add("raw_frames/DS/bad.png")
    with memory.writer() as writer:
        writer.put("raw_frames/DS/good.png", b"good")
        with pytest.raises(StorageError, match="bad.png failed: disk on fire"):
            writer.put("raw_frames/DS/bad.png", b"bad")  # inline: here
            writer.finish()  # queued: here
        writer.finish()
    assert writer.written == ["raw_frames/DS/good.png"]
    assert memory.objects == {"raw_frames/DS/good.png": b"good"}


def test_a_failing_stream_stores_nothing(memory):
    def pieces():
        yield b"start"
        raise StorageError("page 3: cannot read pixels")

    with memory.writer() as writer:
        with pytest.raises(StorageError, match="page 3"):
            writer.put_stream("raw_frames/DS/im.png", pieces())
        writer.finish()
    assert writer.written == [] and memory.objects == {}


def test_raise_failures_raises_a_finished_failure_without_waiting_for_the_rest():
    memory = MemoryStorage(parallel_requests=2)
    memory.failing.add("k/bad")
    with memory.writer() as writer:
        writer.put("k/bad", b"x")
        _wait_until(lambda: writer.pending[0].done())
        memory.gate.clear()
        writer.put("k/slow", b"y")  # still running while the failure is raised
        with pytest.raises(StorageError, match="k/bad failed"):
            writer.raise_failures()
        writer.raise_failures()  # a failure is raised once; the running put is not waited for
        memory.gate.set()
        writer.finish()
    assert writer.written == ["k/slow"]


def test_queued_bytes_and_count_stay_within_the_bounds():
    """A slow storage: the callers wait for room instead of queueing more than the limits."""
    memory = MemoryStorage(parallel_requests=3)
    limit = 1_000_000
    seen = []
    writer = QueuedObjectWriter(memory, threads=3, max_queued_bytes=limit)

    def on_put(_key):
        with writer.room:
            seen.append((writer.queued, writer.queued_bytes))
        time.sleep(0.01)

    memory.on_put = on_put
    objects = {f"k/{i}": _payload(300_000 + 997 * i, i) for i in range(30)}  # 3 fit in the limit, 6 by count
    with writer:
        with ThreadPoolExecutor(4) as workers:
            list(workers.map(lambda key: writer.put(key, objects[key]), objects))
        writer.finish()
    assert memory.objects == objects
    assert max(count for count, _ in seen) <= writer.max_queued == 6
    assert max(queued for _, queued in seen) <= limit
    assert max(queued for _, queued in seen) > limit // 2  # the queue was used, not bypassed
    assert (writer.queued, writer.queued_bytes) == (0, 0)


def test_a_caller_waits_for_room_while_the_storage_is_stuck():
    memory = MemoryStorage(parallel_requests=2)
    memory.gate.clear()
    writer = QueuedObjectWriter(memory, threads=2, max_queued_bytes=250)
    with writer:
        writer.put("k/0", b"x" * 100)
        writer.put("k/1", b"x" * 100)
        caller = threading.Thread(target=writer.put, args=("k/2", b"x" * 100))
        caller.start()
        caller.join(0.2)
        assert caller.is_alive() and writer.queued_bytes == 200  # 300 would pass the limit
        memory.gate.set()
        caller.join(WAIT)
        writer.finish()
    assert sorted(writer.written) == ["k/0", "k/1", "k/2"]


def test_an_object_larger_than_the_limit_is_stored_alone():
    memory = MemoryStorage(parallel_requests=2)
    with QueuedObjectWriter(memory, threads=2, max_queued_bytes=100) as writer:
        writer.put("k/big", b"b" * 1000)
        writer.put("k/small", b"s")
        writer.finish()
    assert memory.objects == {"k/big": b"b" * 1000, "k/small": b"s"}


def test_close_drops_the_queued_puts_and_waits_for_the_running_one():
    memory = MemoryStorage(parallel_requests=1)
    memory.gate.clear()
    writer = QueuedObjectWriter(memory, threads=1)
    writer.put("k/running", b"1")
    _wait_until(lambda: memory.started == ["k/running"])
    writer.put("k/queued", b"2")
    closer = threading.Thread(target=writer.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # waits for the running put
    memory.gate.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert memory.started == ["k/running"] and writer.written == ["k/running"]
    assert set(memory.objects) == {"k/running"}
    with pytest.raises(RuntimeError, match="after shutdown"):
        writer.put("k/late", b"3")


def test_close_refuses_a_caller_waiting_for_room():
    """A caller waiting for room that only dropped puts hold is refused by close(), not left waiting."""
    memory = MemoryStorage(parallel_requests=1)
    memory.gate.clear()
    writer = QueuedObjectWriter(memory, threads=1, max_queued_bytes=250)
    writer.put("k/running", b"0" * 10)
    _wait_until(lambda: memory.started == ["k/running"])
    writer.put("k/dropped", b"1" * 200)
    errors = []

    def late_put():
        try:
            writer.put("k/late", b"2" * 100)  # 310 bytes: waits, and still would once k/running is done
        except RuntimeError as exc:
            errors.append(exc)

    caller = threading.Thread(target=late_put)
    caller.start()
    closer = threading.Thread(target=writer.close)
    closer.start()
    caller.join(0.2)
    assert caller.is_alive()
    memory.gate.set()
    closer.join(WAIT)
    caller.join(WAIT)
    assert not caller.is_alive() and not closer.is_alive()
    assert len(errors) == 1 and "after shutdown" in str(errors[0])
    assert memory.started == ["k/running"] and writer.written == ["k/running"]
