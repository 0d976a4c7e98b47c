"""``session_scope``, as the original's notebooks open their database, and the databases it has opened.

Each database is opened once per process and kept (the original made a new
engine, and a new pool of connections, for every ``session_scope``). The
storage classes of :mod:`imaging_db.compat.storage` ask :func:`known_database`
where a dataset's objects are and what their checksums are: the database a
notebook opened last.
"""

import contextlib
import threading
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from imaging_db.database.connection import first_line
from imaging_db.database.db_ops import Database
from imaging_db.errors import InputError

# The key under which a session made by session_scope holds its Database, in ``session.info``.
_DATABASE = "imaging_db.database"
# The original's login files say "postgres", which SQLAlchemy 1.4+ rejects; its URLs kept that name.
_POSTGRES_NAMES = {"postgres", "postgresql", "psycopg2"}

_lock = threading.Lock()
_databases: dict[str, Database] = {}  # by URL (password included, so never shown)
_last: Database | None = None


def database_url(credentials: str | URL) -> URL:
    """The URL of a ``credentials_str`` (what ``db_utils.get_connection_str`` returns, or the original's URI).

    Raises
    ------
    InputError
        If it is not a database URL. The message never shows it: it holds the password.
    """
    if isinstance(credentials, URL):
        url = credentials
    elif isinstance(credentials, str):
        try:
            url = make_url(credentials.strip())
        except sa.exc.ArgumentError:
            raise InputError("credentials_str is not a database URL (drivername://user:password@host:port/dbname); "
                             "make it with db_utils.get_connection_str('db_credentials.json')") from None
    else:
        raise InputError(f"credentials_str must be a database URL (text), not {type(credentials).__name__}")
    if url.drivername in _POSTGRES_NAMES:
        url = url.set(drivername="postgresql+psycopg2")
    elif url.drivername == "sqlite":
        url = url.set(drivername="sqlite+pysqlite")
    return url


def open_database(credentials: str | URL, echo_sql: bool = False) -> Database:
    """The Database at ``credentials``, opened on first use (then kept), with the current schema.

    As the original's ``session_scope`` created its tables in an empty
    database, an empty one gets imaging_db's schema (through its migrations);
    one at another schema revision is refused with what to run. It becomes
    the :func:`known_database`.

    Raises
    ------
    InputError
        If ``credentials`` is not a database URL.
    DatabaseError
        If the database cannot be reached or is at another schema revision.
    """
    global _last
    url = database_url(credentials)
    key = url.render_as_string(hide_password=False)
    with _lock:
        database = _databases.get(key)
        if database is None:
            database = Database(url)
            try:
                database.create_tables()
            except BaseException:
                database.dispose()
                raise
            _databases[key] = database
        _last = database
    database.engine.echo = echo_sql
    return database


def known_database() -> Database | None:
    """The database opened last by :func:`session_scope` in this process; None before the first."""
    return _last


def database_of(session: Session) -> Database:
    """The Database a session reads: the one session_scope opened it on, else the one its engine connects to.

    Raises
    ------
    DatabaseError
        If that database cannot be reached or is at another schema revision.
    """
    database = session.info.get(_DATABASE)
    if database is None:
        database = open_database(session.get_bind().url)
        session.info[_DATABASE] = database
    return database


def dispose_all() -> None:
    """Close every database opened here and forget them (the next session_scope opens its database again)."""
    global _last
    with _lock:
        for database in _databases.values():
            database.dispose()
        _databases.clear()
        _last = None


@contextlib.contextmanager
def session_scope(credentials_str: str | URL, echo_sql: bool = False) -> Iterator[Session]:
    """A SQLAlchemy session on the database at ``credentials_str``: committed at the end, rolled back on an error.

    The original's notebook entry point (``db_ops.session_scope``). The
    session's queries use the ORM classes of :mod:`imaging_db.database.models`.

    Parameters
    ----------
    credentials_str : str
        The database URL, from ``db_utils.get_connection_str("db_credentials.json")``.
    echo_sql : bool
        Log every SQL statement (SQLAlchemy's ``echo``).

    Raises
    ------
    InputError
        If ``credentials_str`` is not a database URL.
    DatabaseError
        If the database cannot be reached or is at another schema revision
        (the message says what to run). An error inside the block is raised
        as it is, after the rollback (the original raised a bare ``Exception``
        with its text).
    """
    database = open_database(credentials_str, echo_sql)
    session = Session(bind=database.engine, info={_DATABASE: database})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def test_connection(session: Session) -> None:
    """Run ``SELECT 1`` on the session's database.

    Raises
    ------
    ConnectionError
        If the database cannot be reached.
    """
    try:
        session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        raise ConnectionError(f"Can't connect to database: {first_line(exc)}") from exc


test_connection.__test__ = False  # a library function, not a test, wherever pytest finds it imported


__all__ = ["database_of", "database_url", "dispose_all", "known_database", "open_database", "session_scope",
           "test_connection"]
