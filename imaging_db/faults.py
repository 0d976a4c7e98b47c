"""Fault points: named places in the pipelines where a test can kill the process, deterministically.

``IMAGING_DB_FAULT=<point>[:<n>]`` in the environment makes the process kill
itself with SIGKILL (as ``kill -9`` would; nothing is cleaned up) the n-th
time (default the first) it reaches ``fault_point("<point>")``. The crash
tests use it to stop an upload at exact places: while reading, mid-encode,
mid-put, just before and during the commit. Unset, ``fault_point`` does
nothing and costs one function call.

Points (``grep -rn fault_point imaging_db`` finds them all):

- ``upload.claimed``: the dataset id is claimed, nothing written yet.
- ``upload.frame_read``: a frame was read, before it goes to a worker.
- ``upload.encoded_piece``: a piece of a frame's PNG was encoded (mid-encode).
- ``storage.piece_written``: a piece was written into a local temporary file (mid-write).
- ``storage.before_link``: a local object is written whole, not yet in place.
- ``storage.s3_put`` / ``storage.s3_stored``: just before and just after an S3 write.
- ``upload.before_commit``: every object is stored, no row written.
- ``db.frames_batch``: a batch of frames rows is about to go to the database (mid-commit).
- ``upload.committed``: the dataset is registered.
- ``download.frame_written`` / ``download.before_rename`` / ``download.renamed``: a frame
  written into the hidden download folder; the folder complete, not yet renamed into
  place; renamed into place, the command not yet finished.
"""

import os
import signal
import threading

FAULT_ENV = "IMAGING_DB_FAULT"


def _parse(spec: str) -> tuple[str, int]:
    name, _, count = spec.partition(":")
    try:
        return name.strip(), max(1, int(count)) if count else 1
    except ValueError:
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected <point>[:<n>], n an integer") from None


def _no_fault(name: str) -> None:
    """No fault asked for: nothing to do."""


def _make_fault_point(spec: str):
    target, nth = _parse(spec)
    lock = threading.Lock()
    seen = 0

    def fault_point(name: str) -> None:
        nonlocal seen
        if name != target:
            return
        with lock:
            seen += 1
            hit = seen == nth
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)

    return fault_point


fault_point = _make_fault_point(os.environ[FAULT_ENV]) if os.environ.get(FAULT_ENV) else _no_fault
