"""Claims on dataset ids, so that only one run at a time writes a dataset's objects.

An upload claims its dataset id before its first write and keeps the claim
until it has committed (or failed). The claim lives where every uploader of
the database can see it, and ends with the process, also when it is killed:

- PostgreSQL: a session-level advisory lock on a connection of its own. The
  server drops it when that connection closes, which the kernel does for a
  killed process. The connection's ``application_name`` names the host and
  pid, so a second run can say who holds the id.
- SQLite: an exclusive ``flock`` on a file beside the database file
  (``<database>.locks/<id>.lock``), released by the kernel when the process
  ends. The file holds the holder's host and pid. SQLite is one machine's
  database, so this covers every process that can write it (the lock folder
  must be on a file system with working ``flock``, as local disks are).

The schema is created under the same kind of lock (:func:`schema_lock`), so
that several first uploads into an empty database do not race.
"""

import contextlib
import errno
import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from imaging_db.database.connection import first_line
from imaging_db.errors import DatabaseError, DatasetClaimedError

logger = logging.getLogger(__name__)

_SCHEMA_LOCK_NAME = "imaging_db schema"
_APPLICATION_NAME_MAX = 63  # PostgreSQL truncates longer names (NAMEDATALEN - 1)


def lock_key(name: str) -> int:
    """Return the signed 64-bit advisory-lock key of ``name`` (a dataset id or a fixed lock name)."""
    digest = hashlib.sha256(f"imaging_db:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def holder_label() -> str:
    """Return ``host <hostname> pid <pid>``: who holds a claim, as told to the other runs."""
    return f"host {socket.gethostname()} pid {os.getpid()}"


class Claim:
    """A held claim on a dataset id; release it with :meth:`release` or by leaving the ``with`` block."""

    def __init__(self, serial: str, release):
        self.serial = serial
        self._release = release

    def release(self) -> None:
        """End the claim; calling it again does nothing."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_dataset(engine: Engine, serial: str, describe: str) -> Claim:
    """Claim dataset id ``serial`` in the database behind ``engine``, or fail at once.

    Parameters
    ----------
    engine : Engine
        The database all uploaders share.
    serial : str
        The dataset id.
    describe : str
        The database, for messages (password hidden).

    Raises
    ------
    DatasetClaimedError
        If another run holds the claim; the message names it when known.
    DatabaseError
        If the claim cannot be taken for another reason.
    """
    if engine.dialect.name == "postgresql":
        return _claim_postgresql(engine, serial, describe)
    return _claim_file(_lock_folder(engine), serial, describe)


@contextlib.contextmanager
def schema_lock(engine: Engine, describe: str) -> Iterator[sa.Connection | None]:
    """Hold the database's schema lock: schema changes made under it never race.

    On PostgreSQL it yields the connection holding the lock (a transaction
    that commits on exit), on which the schema must be changed; elsewhere it
    yields None and the caller uses the engine.
    """
    if engine.dialect.name == "postgresql":
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(_SCHEMA_LOCK_NAME)})
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(f"database {describe}: creating tables failed: {first_line(exc)}") from exc
        return
    folder = _lock_folder(engine)
    if folder is None:
        with _PROCESS_LOCK:
            yield None
        return
    handle = _open_lock_file(folder / ".schema.lock", describe)
    try:
        _flock(handle, blocking=True)
        yield None
    finally:
        handle.close()


# --------------------------------------------------------------------------- PostgreSQL
def _claim_postgresql(engine: Engine, serial: str, describe: str) -> Claim:
    label = f"imaging_db upload {holder_label()}"[:_APPLICATION_NAME_MAX]
    key = lock_key(serial)
    # A connection of its own, outside the pool: closing it is what ends the claim, and its
    # application_name must not stay on a pooled connection. TCP keepalives let the server
    # notice a vanished machine within minutes (a killed process closes its socket at once).
    claim_engine = sa.create_engine(
        engine.url, poolclass=NullPool,
        connect_args={"connect_timeout": 10, "application_name": label, "keepalives": 1,
                      "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3},
    )
    conn = None
    try:
        conn = claim_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        holder = None
        for _attempt in range(3):
            if conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
                break
            holder = _postgresql_holder(conn, key)
            if holder is not None:
                break
            # Not held any more: its holder finished between our two queries. Try again.
        else:
            holder = "holder unknown"
        if holder is not None:
            raise DatasetClaimedError(
                f"dataset {serial} is being uploaded by another run ({holder}); not touched: "
                "wait for it to finish, or rerun this one later"
            )
    except sa.exc.SQLAlchemyError as exc:
        _close_quietly(conn, claim_engine)
        raise DatabaseError(f"database {describe}: claiming dataset {serial} failed: {first_line(exc)}") from exc
    except BaseException:
        _close_quietly(conn, claim_engine)
        raise

    def release() -> None:
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        except sa.exc.SQLAlchemyError as exc:  # closing the connection below ends the claim anyway
            logger.debug("unlocking dataset %s: %s", serial, first_line(exc))
        _close_quietly(conn, claim_engine)

    logger.debug("claimed dataset %s in %s", serial, describe)
    return Claim(serial, release)


def _postgresql_holder(conn: sa.Connection, key: int) -> str | None:
    """Say who holds advisory lock ``key``, from pg_locks and pg_stat_activity; None if nobody does now."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    try:
        row = conn.execute(sa.text(
            "SELECT a.application_name, host(a.client_addr) AS client, a.pid FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = :hi AND l.objid::bigint = :lo LIMIT 1"
        ), {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF}).mappings().first()
    except sa.exc.SQLAlchemyError:
        return "holder unknown"
    if row is None:
        return None
    name = row["application_name"] or ""
    if name.startswith("imaging_db upload "):
        return name[len("imaging_db upload "):]
    client = f" from {row['client']}" if row["client"] else ""
    return f"server process {row['pid']}{client}"


def _close_quietly(conn: sa.Connection | None, engine: Engine) -> None:
    with contextlib.suppress(Exception):
        if conn is not None:
            conn.close()
    engine.dispose()


# --------------------------------------------------------------------------- SQLite (and other file databases)
_PROCESS_LOCK = threading.Lock()
_IN_MEMORY_CLAIMS: set[str] = set()


def _lock_folder(engine: Engine) -> Path | None:
    """``<database file>.locks``, or None for an in-memory database (one process: a process lock will do)."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    path = Path(database)
    return path.with_name(path.name + ".locks")


def _open_lock_file(path: Path, describe: str):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+b")
    except OSError as exc:
        raise DatabaseError(f"database {describe}: cannot open lock file {str(path)!r}: {exc.strerror}") from None


def _flock(handle, blocking: bool) -> bool:
    """Lock the whole open file exclusively; return False if another process holds it (non-blocking)."""
    if os.name == "nt":  # pragma: no cover - Windows
        import msvcrt

        mode = msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), mode, 1)
        except OSError:
            if blocking:
                raise
            return False
        return True
    import fcntl

    flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
    try:
        fcntl.flock(handle.fileno(), flags)
    except OSError as exc:
        if not blocking and exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _file_holder(handle) -> str:
    """The label the holder of a claim file wrote into it.

    The holder writes it just after taking the lock: a run that finds the lock
    taken in between reads an empty file, so it looks again for a moment.
    """
    for _attempt in range(50):
        handle.seek(0)
        label = handle.read(200).decode("utf-8", errors="replace").strip()
        if label:
            return label
        time.sleep(0.002)
    return "holder unknown"


def _claim_file(folder: Path | None, serial: str, describe: str) -> Claim:
    if folder is None:
        with _PROCESS_LOCK:
            if serial in _IN_MEMORY_CLAIMS:
                raise DatasetClaimedError(f"dataset {serial} is being uploaded by another run ({holder_label()}); "
                                          "not touched")
            _IN_MEMORY_CLAIMS.add(serial)

        def release_memory() -> None:
            with _PROCESS_LOCK:
                _IN_MEMORY_CLAIMS.discard(serial)

        return Claim(serial, release_memory)

    path = folder / f"{serial}.lock"
    for _attempt in range(20):
        handle = _open_lock_file(path, describe)
        try:
            if not _flock(handle, blocking=False):
                holder = _file_holder(handle)
                raise DatasetClaimedError(
                    f"dataset {serial} is being uploaded by another run ({holder}); not touched: "
                    "wait for it to finish, or rerun this one later"
                )
            # The holder before us may have removed the file as it released it: then our lock is
            # on a file nobody else will open. Lock the one that is at the path now.
            try:
                same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
            except FileNotFoundError:
                same = False
            if not same:
                handle.close()
                time.sleep(0.001)
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{holder_label()}\n".encode())
            handle.flush()
        except OSError as exc:
            handle.close()
            raise DatabaseError(f"database {describe}: claiming dataset {serial} with {str(path)!r} failed: "
                                f"{exc.strerror or exc}") from None
        except BaseException:
            handle.close()
            raise

        def release_file(handle=handle) -> None:
            # Remove the file while still holding the lock, so it does not pile up; a run that
            # opened it meanwhile sees that it is gone and locks a new one (above).
            with contextlib.suppress(OSError):
                path.unlink()
            handle.close()

        logger.debug("claimed dataset %s with %s", serial, path)
        return Claim(serial, release_file)
    raise DatabaseError(f"database {describe}: could not claim dataset {serial}: {str(path)!r} keeps changing")
