"""Turn a login JSON file into a SQLAlchemy engine, never exposing the password."""

import logging
import os
import shlex
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from imaging_db.defaults import default_sqlite_path
from imaging_db.errors import DatabaseError, InputError, NotFoundError
from imaging_db.json_files import load_json_file
from imaging_db.json_text import text_problem, to_json_text

LOGIN_KEYS = ("drivername", "username", "password", "host", "port", "dbname")
# The seed's examples say "postgres", which SQLAlchemy 1.4+ no longer accepts.
_POSTGRES_NAMES = {"postgres", "postgresql", "postgresql+psycopg2", "psycopg2"}
_SQLITE_NAMES = {"sqlite", "sqlite3", "sqlite+pysqlite"}


def url_from_login(login: dict, source: str = "<login>") -> URL:
    """Build a database URL from a login dict.

    Parameters
    ----------
    login : dict
        Keys ``drivername``, ``username``, ``password``, ``host``, ``port``,
        ``dbname``. For ``drivername: sqlite`` only ``dbname`` (a file path) is used.
    source : str
        Where the login came from, for error messages.

    Raises
    ------
    InputError
        On an unknown or missing key, a value that is not a string (the port
        may be an integer), a NUL or lone surrogate in a value, an unknown
        driver or a port outside 1..65535. The message never contains a value
        but the port and the driver.
    """
    if not isinstance(login, dict):
        raise InputError(f"login file {source!r} must hold a JSON object")
    unknown = sorted(set(login) - set(LOGIN_KEYS))
    if unknown:
        raise InputError(f"login file {source!r}: unknown key(s) {unknown}; allowed keys are {list(LOGIN_KEYS)}")
    for key, value in login.items():
        # Values are named, never shown: one of them is the password.
        if key == "port" or value is None:
            continue
        if not isinstance(value, str):
            raise InputError(f"login file {source!r}: {key} must be a string, not {type(value).__name__}")
        problem = text_problem(value)
        if problem:
            raise InputError(f"login file {source!r}: {key} {problem}")
    driver = (login.get("drivername") or "").strip().lower()
    if driver in _SQLITE_NAMES:
        dbname = login.get("dbname")
        if not dbname:
            raise InputError(f"login file {source!r}: drivername sqlite needs dbname, the database file path")
        path = Path(dbname).expanduser()
        if not path.is_absolute() and source != "<login>":
            path = Path(source).parent / path
        return URL.create("sqlite+pysqlite", database=str(path))
    if driver in _POSTGRES_NAMES:
        missing = [k for k in ("username", "host", "dbname") if not login.get(k)]
        if missing:
            raise InputError(f"login file {source!r}: drivername {driver!r} needs key(s) {missing}")
        port = login.get("port")
        if port in (None, ""):
            port = None
        else:
            text = port.strip() if isinstance(port, str) else None
            if not ((isinstance(port, int) and not isinstance(port, bool))
                    or (text and text.isascii() and text.isdecimal())):
                raise InputError(f"login file {source!r}: port {port!r} is not an integer")
            if not 1 <= int(port) <= 65535:
                raise InputError(f"login file {source!r}: port {port!r} is not within 1..65535")
            port = int(port)
        return URL.create(
            "postgresql+psycopg2",
            username=login["username"],
            password=login.get("password") or None,
            host=login["host"],
            port=port,
            database=login["dbname"],
        )
    raise InputError(
        f"login file {source!r}: unknown drivername {login.get('drivername')!r}; use 'postgres' or 'sqlite'"
    )


def load_login(path: str | Path | None) -> URL:
    """Read a login file; with no path, return the embedded SQLite database's URL.

    A login file that holds a password and that other users may read or change
    (any group or other permission bit) gets a warning, not an error: shared
    lab machines often start that way.

    Raises
    ------
    InputError
        If the file is missing, not JSON, or not a valid login.
    """
    if path is None:
        return URL.create("sqlite+pysqlite", database=str(default_sqlite_path()))
    url = url_from_login(load_json_file(path, "login"), str(path))
    if url.password and os.name == "posix":
        try:
            mode = os.stat(path).st_mode
        except OSError:  # it was just read; whatever happened since, the permissions are not the error
            mode = 0
        if mode & 0o077:
            logging.getLogger(__name__).warning(
                "login file %r holds a database password and other users can access it (mode %04o): "
                "run chmod 600 %s", str(path), mode & 0o7777, shlex.quote(str(path)))
    return url


def first_line(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's long tail: what a user is shown."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def safe_url(url: URL) -> str:
    """Return the URL as text with the password hidden."""
    return url.render_as_string(hide_password=True)


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: URL, create: bool = True) -> Engine:
    """Create an engine for the URL; for SQLite, create the file's folder.

    With ``create=False`` (readers) a missing SQLite file is an error instead:
    connecting would leave an empty database file behind.

    Raises
    ------
    DatabaseError
        If the SQLite folder cannot be created.
    NotFoundError
        If ``create`` is False and the SQLite file does not exist.
    """
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not create and not Path(url.database).is_file():
            raise NotFoundError(f"the SQLite database {url.database!r} does not exist: nothing has been uploaded "
                                "to it (check --login or $IMAGING_DB_HOME)")
        if url.database and url.database != ":memory:":
            folder = Path(url.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create database folder {str(folder)!r}: {exc.strerror}") from None
        engine = sa.create_engine(url, json_serializer=to_json_text)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10}, json_serializer=to_json_text)
